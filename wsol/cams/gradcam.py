"""Gradient-weighted CAMs; ``g = ∂S/∂A`` with ``S`` the target class's logit, ``A`` the layer's activations.

- Grad-CAM — Selvaraju et al., ICCV 2017: ``w_k = mean_ij g_k,ij``, map ``ReLU(Σ_k w_k A_k)``.
- Grad-CAM++ — Chattopadhay et al., WACV 2018, Eq. 19:
  ``α_k,ij = g_ij² / (2 g_ij² + Σ_ab A_k,ab · g_ij³)`` (0 where the denominator is 0),
  ``w_k = Σ_ij α_k,ij · ReLU(g_ij)``. ``alpha_norm=True`` divides α by its per-channel sum, as
  the authors' code does; ``eps`` is added to α's denominator (pytorch-grad-cam adds ``1e-6``, which
  visibly changes maps where ``g²`` is small, as in early layers and random networks).
- Smooth Grad-CAM++ — Omeiza et al., 2019: Grad-CAM++ weights averaged over ``n`` copies of
  the input with Gaussian noise (std ``σ`` on the normalised input); each copy's α and weights
  come from that copy's own activations and gradients, and the averaged weights multiply the
  clean activations.
- XGrad-CAM — Fu et al., BMVC 2020: ``w_k = Σ_ij g_k,ij · A_k,ij / Σ_ij A_k,ij`` (0 where
  ``Σ A_k = 0``).
- LayerCAM — Jiang et al., TIP 2021: ``M = Σ_k ReLU(g_k) ⊙ A_k`` (pixel-wise weights).
- HiResCAM — Draelos & Carin, 2020: ``M = Σ_k g_k ⊙ A_k``.
- Grad-CAM element-wise — pytorch-grad-cam: ``M = Σ_k ReLU(g_k ⊙ A_k)``.
- ShapleyCAM — Cai, arXiv 2501.06261 (2025): ``w_k = mean_ij (g − ½ H A)_k,ij`` with ``H A`` the Hessian of ``S``
  (w.r.t. ``A``) times ``A``, a second backward through the first one's graph (zero where ``S`` is piecewise
  linear in ``A``, as after ReLU, pooling and a linear head: then ShapleyCAM is Grad-CAM).
"""

from __future__ import annotations

from typing import Annotated

import torch

from ..schema import Range
from . import METHODS
from .core import CamMethod, LayerCapture, seeded_noise, target_scores

__all__ = [
    "GradCAM",
    "GradCAMElementWise",
    "GradCAMpp",
    "HiResCAM",
    "LayerCAM",
    "ShapleyCAM",
    "SmoothGradCAMpp",
    "XGradCAM",
    "BASES",
    "base_weights",
    "gradcampp_alpha",
    "gradcampp_weights",
]


@METHODS.register("gradcam")
class GradCAM(CamMethod):
    def channel_weights(self, x):
        return x.gradients.mean(dim=(2, 3))


def gradcampp_alpha(
    activations: torch.Tensor, gradients: torch.Tensor, normalize: bool = False, eps: float = 0.0
) -> torch.Tensor:
    """Grad-CAM++ ``α = g² / (2 g² + Σ_ab A_ab · g³ + eps)`` ``[B, C, h, w]`` (paper Eq. 19 with ``eps = 0``);
    0 where the denominator vanishes or ``g = 0``.

    ``normalize``: divide by ``Σ_ij α_k,ij`` per channel (where non-zero), as the authors' code does.
    """
    g2 = gradients.pow(2)
    denominator = 2 * g2 + activations.sum(dim=(2, 3), keepdim=True) * gradients.pow(3) + eps
    safe = torch.where(denominator != 0, denominator, torch.ones_like(denominator))
    alpha = torch.where(denominator != 0, g2 / safe, torch.zeros_like(g2))
    if normalize:
        total = alpha.sum(dim=(2, 3), keepdim=True)
        alpha = alpha / torch.where(total != 0, total, torch.ones_like(total))
    return alpha


def gradcampp_weights(
    activations: torch.Tensor, gradients: torch.Tensor, normalize: bool = False, eps: float = 0.0
) -> torch.Tensor:
    """Grad-CAM++ channel weights ``w_k = Σ_ij α_k,ij · ReLU(g_k,ij)`` ``[B, C]``."""
    alpha = gradcampp_alpha(activations, gradients, normalize, eps)
    return (alpha * gradients.clamp_min(0)).sum(dim=(2, 3))


BASES = ("gradcam", "gradcampp", "layercam")  # the bases Finer-CAM and RefineCAM build on


def base_weights(base: str, activations: torch.Tensor, gradients: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """The channel (or pixel) weights of Grad-CAM, Grad-CAM++ (with ``eps``) or LayerCAM."""
    if base == "gradcam":
        return gradients.mean(dim=(2, 3))
    if base == "gradcampp":
        return gradcampp_weights(activations, gradients, eps=eps)
    return gradients.clamp_min(0)


@METHODS.register("gradcampp")
class GradCAMpp(CamMethod):
    def __init__(self, model, layer, *, alpha_norm: bool = False, eps: Annotated[float, Range(0)] = 0.0,
                 **kwargs) -> None:
        super().__init__(model, layer, **kwargs)
        self.alpha_norm, self.eps = bool(alpha_norm), float(eps)

    def channel_weights(self, x):
        return gradcampp_weights(x.activations, x.gradients, self.alpha_norm, self.eps)


@METHODS.register("smoothgradcampp")
class SmoothGradCAMpp(CamMethod):
    """Smooth Grad-CAM++ with ``num_samples`` noisy copies (noise std ``std``, torchcam's defaults 4 and 0.3).

    Copy ``i`` adds the same noise field ``ε_i`` to every image of the batch, so a sample's map does
    not depend on its batch; each copy is one forward and backward of the whole batch.
    """

    def __init__(
        self, model, layer, *, num_samples: Annotated[int, Range(1)] = 4, std: Annotated[float, Range(0)] = 0.3,
        alpha_norm: bool = False, eps: Annotated[float, Range(0)] = 0.0, **kwargs,
    ):
        super().__init__(model, layer, **kwargs)
        self.num_samples, self.std, self.alpha_norm, self.eps = int(num_samples), float(std), bool(alpha_norm), eps

    def channel_weights(self, x: LayerCapture) -> torch.Tensor:
        noise = seeded_noise((self.num_samples, *x.images.shape[1:]), self.std, self.seed, x.images.device)
        total = torch.zeros(x.activations.shape[:2], device=x.activations.device, dtype=x.activations.dtype)
        for eps in noise:
            with x.capture(graph_from_here=True) as store, torch.no_grad():  # autograd from the layer on
                logits = self.model(x.images + eps)
                activations = store["activations"]
                (gradients,) = torch.autograd.grad(target_scores(logits, x.targets).sum(), activations)
            total += gradcampp_weights(activations.detach(), gradients, self.alpha_norm, self.eps)
        return total / self.num_samples


@METHODS.register("xgradcam")
class XGradCAM(CamMethod):
    def channel_weights(self, x):
        total = x.activations.sum(dim=(2, 3))
        weighted = (x.gradients * x.activations).sum(dim=(2, 3))
        return torch.where(total != 0, weighted / torch.where(total != 0, total, torch.ones_like(total)), 0.0)


@METHODS.register("layercam")
class LayerCAM(CamMethod):
    def channel_weights(self, x):
        return x.gradients.clamp_min(0)


@METHODS.register("hirescam")
class HiResCAM(CamMethod):
    def channel_weights(self, x):
        return x.gradients


@METHODS.register("gradcamelementwise")
class GradCAMElementWise(CamMethod):
    def weighted_activations(self, x):
        return (x.gradients * x.activations).clamp_min(0)

    def compute(self, x):
        if self.eigen_smooth:
            return super().compute(x)
        return self.weighted_activations(x).sum(1)


@METHODS.register("shapleycam")
class ShapleyCAM(CamMethod):
    keeps_graph = True

    def forward_with_captures(self, images, targets_from):
        # fused attention kernels have no second derivative: attention runs on the math path while this one does
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with sdpa_kernel([SDPBackend.MATH]):
            return super().forward_with_captures(images, targets_from)

    def channel_weights(self, x):
        activations, gradients = x.graph
        hvp = None
        if gradients.requires_grad:  # g does not depend on A where S is linear in it (no graph to go back through)
            (hvp,) = torch.autograd.grad(gradients, activations, grad_outputs=activations.detach(), allow_unused=True)
        weights = x.gradients if hvp is None else x.gradients - 0.5 * hvp
        return weights.mean(dim=(2, 3))
