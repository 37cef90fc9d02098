"""FullGrad — Srinivas & Fleuret, "Full-gradient representation for neural network visualization", NeurIPS 2019.

A ReLU network's output is exactly the sum of its *full gradients* (the completeness of §3):
``S(x) = Σ (∇ₓS ⊙ x) + Σ_layers Σ (∇_{z_l}S ⊙ b_l)``, with ``z_l`` the output of a layer with bias ``b_l``:
every ``Conv2d`` with a bias and every ``BatchNorm2d``, whose bias in eval mode is ``β − μ γ / √(σ² + ε)``. The
map (Eq. 6) is the sum of the post-processed terms ``ψ(|∇ₓS ⊙ x|)`` and ``ψ(|∇_{z_l}S ⊙ b_l|)``, each summed over
its channels and bilinearly upsampled to the input, all layers together; ``model.layer`` is not used.

``ψ``, the min-max rescaling, is where the two codes differ: the authors' (idiap/fullgrad-saliency,
``FullGrad._postProcess``) rescales each term over the whole image (all its channels at once,
``(t − min) / (max − min + 10⁻⁶)``) and upsamples with ``align_corners=True``: ``normalize=image`` (the
default) and ``align_corners=true``. pytorch-grad-cam's ``FullGrad`` rescales each channel on its own
(``(t − min) / (max − min + 10⁻⁷)``) and resizes with OpenCV's half-pixel bilinear: ``normalize=channel
align_corners=false``. Since the upsampling is linear, each term is summed over its channels at its own
resolution and then upsampled, which is the same map at a C-th of the memory.

Batch norms must stay as they are (a fold would merge a convolution's bias into the norm's): every bias layer is
a target layer, so ``speed.fold_batchnorm`` leaves them unfolded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from ..errors import WsolError
from . import METHODS
from .core import CamMethod, CamOutput, capture_activations, resize_maps

__all__ = ["FullGrad", "bias_layers", "effective_bias", "rescale_terms"]

_EPS = {"image": 1e-6, "channel": 1e-7}  # the authors' _postProcess; pytorch-grad-cam's scale_cam_image


def effective_bias(layer: nn.Module) -> torch.Tensor:
    """The bias ``[C]`` a layer adds to its output in eval mode: a convolution's ``b``; a batch norm's
    ``β − μ γ / √(σ² + ε)``."""
    if isinstance(layer, nn.BatchNorm2d):
        return layer.bias - layer.running_mean * layer.weight / torch.sqrt(layer.running_var + layer.eps)
    return layer.bias


def bias_layers(model: nn.Module) -> list[str]:
    """The layers FullGrad reads, in module order: every ``Conv2d`` with a bias and every ``BatchNorm2d`` with an
    affine bias and running statistics (exactly that class: a subclass may fold an activation into its output)."""
    return [name for name, m in model.named_modules() if (
        (isinstance(m, nn.Conv2d) and m.bias is not None)
        or (type(m) is nn.BatchNorm2d and m.bias is not None and m.running_mean is not None))]


def rescale_terms(terms: torch.Tensor, normalize: str = "image") -> torch.Tensor:
    """``ψ(|t|)`` of terms ``[B, C, h, w]``, min-max rescaled over each image (``image``) or each image's channel
    (``channel``), with that source's ε (10⁻⁶, 10⁻⁷)."""
    terms = terms.float().abs()
    dims = (1, 2, 3) if normalize == "image" else (2, 3)
    terms = terms - terms.amin(dims, keepdim=True)
    return terms / (terms.amax(dims, keepdim=True) + _EPS[normalize])


@METHODS.register("fullgrad")
class FullGrad(CamMethod):
    weighs_activations = False

    def __init__(self, model, layer=None, *, normalize: Literal["image", "channel"] = "image",
                 align_corners: bool = True, **kwargs) -> None:
        if normalize not in _EPS:
            raise WsolError(f"method.normalize must be image or channel, got {normalize!r}")
        super().__init__(model, self.target_layers(model, []), **kwargs)
        self.normalize, self.align_corners = normalize, bool(align_corners)

    @classmethod
    def target_layers(cls, model, layers, input_size: int = 224, **options) -> list[str]:
        names = bias_layers(model)
        if not names:
            raise WsolError("fullgrad needs a Conv2d or BatchNorm2d with a bias; this model has none")
        return names

    @property
    def layer_label(self) -> str:
        return f"bias layers ({len(self.layer_names)})"

    def decompose(self, images: torch.Tensor, targets_from: Callable[[torch.Tensor], torch.Tensor]):
        """The full-gradient decomposition of one pass: logits, targets, ``∇ₓS ⊙ x`` ``[B, 3, H, W]`` and each bias
        layer's ``∇_z S ⊙ b`` ``[B, C, h, w]`` (the layers the forward ran), signed, before ``ψ``."""
        with contextlib.ExitStack() as stack, torch.enable_grad():
            hw = tuple(images.shape[-2:])
            stores = [stack.enter_context(capture_activations(layer, self._layout(i), hw))
                      for i, layer in enumerate(self.layers)]
            x = images.detach().requires_grad_(True)
            logits = self.model(x)
            targets = targets_from(logits)
            ran = [(layer, store["activations"]) for layer, store in zip(self.layers, stores, strict=True)
                   if "activations" in store]
            grads = torch.autograd.grad(self.objective(logits, targets).sum(), [x] + [z for _, z in ran],
                                        allow_unused=True)
        with torch.no_grad():
            bias_terms = [g * effective_bias(layer).to(g.dtype)[None, :, None, None]
                          for (layer, _), g in zip(ran, grads[1:], strict=True) if g is not None]
            return logits.detach(), targets, grads[0] * x.detach(), bias_terms

    def one_pass(self, images, targets_from) -> CamOutput:
        logits, targets, input_term, bias_terms = self.decompose(images, targets_from)
        size = tuple(images.shape[-2:])
        with torch.no_grad():
            maps = rescale_terms(input_term, self.normalize).sum(1)
            for term in bias_terms:
                maps = maps + resize_maps(rescale_terms(term, self.normalize).sum(1), size, self.align_corners)
        return CamOutput(maps.clamp_min(0) if self.relu else maps, logits, targets)
