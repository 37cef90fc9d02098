"""The principal-component family: a map from the first principal component of a layer's (weighted) features.

Each image's ``(hw, C)`` feature matrix ``X`` is centred over positions (as pytorch-grad-cam does) and
projected on its first principal direction ``v₁``, all images of the batch in one batched ``torch.linalg.eigh``
of the smaller Gram matrix (``X Xᵀ`` or ``XᵀX``: ``X v₁ = σ₁ u₁``, the SVD's projection). A principal
direction's sign is arbitrary (it differs between LAPACK and cuSOLVER), so each map's sign is fixed by a rule,
the option ``sign``:

- ``activation`` (wsol's default): the map correlates non-negatively with the features' channel sum ``Σ_k X_k``;
- ``largest``: the map's entry of largest magnitude is positive (Seg-Eigen-CAM's Eq. 13, "flip when
  |min| > |max|", and scikit-learn's ``svd_flip``, which fixes KernelPCA's sign).

Methods:

- Eigen-CAM — Muhammad & Yeasin, IJCNN 2020: ``X = A``. Class agnostic.
- Eigen-Grad-CAM — pytorch-grad-cam: ``X = g ⊙ A`` (``g = ∂S_c/∂A``).
- Seg-Eigen-CAM — Chung & Ying, Appl. Sci. 2025 (Eqs. 10–13): ``X = |g| ⊙ A``, sign ``largest``.
- KPCA-CAM — Karmani et al., 2024: kernel PCA of ``A``: the centred kernel matrix
  ``K̃ = (I − 1/n) K (I − 1/n)`` of ``K_ij = k(x_i, x_j)`` over the ``n = hw`` positions, map
  ``√λ₁ · u₁`` (its top eigenpair), as scikit-learn's ``KernelPCA(n_components=1).fit_transform``.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch

from ..errors import WsolError
from ..schema import Range
from . import METHODS
from .core import CamMethod, LayerCapture

__all__ = ["EigenCAM", "EigenGradCAM", "KPCACAM", "SegEigenCAM", "first_component_projection", "kernel_matrix",
           "kernel_pca_projection", "orient"]

SIGNS = ("activation", "largest")
KERNELS = ("sigmoid", "rbf", "poly", "linear", "cosine")


def orient(projection: torch.Tensor, reference: torch.Tensor, sign: str = "activation") -> torch.Tensor:
    """Each row of ``projection [B, n]`` times ±1: ``activation``: non-negative correlation with ``reference``
    ``[B, n]``; ``largest``: its entry of largest magnitude positive."""
    if sign == "activation":
        agreement = (projection * (reference - reference.mean(1, keepdim=True))).sum(1)
        flip = agreement < 0
    elif sign == "largest":
        flip = projection.amin(1).abs() > projection.amax(1).abs()
    else:
        raise WsolError(f"method.sign must be one of {', '.join(SIGNS)}, got {sign!r}")
    return torch.where(flip[:, None], -projection, projection)


def _positions(features: torch.Tensor) -> torch.Tensor:
    """``[B, C, h, w]`` → the centred ``[B, hw, C]`` matrix, in float64 (NaNs as 0, as pytorch-grad-cam)."""
    matrix = torch.nan_to_num(features.double(), nan=0.0).flatten(2).transpose(1, 2)
    return matrix - matrix.mean(1, keepdim=True)


def _first_component(centred: torch.Tensor) -> torch.Tensor:
    """``[B, n, C]`` centred rows → ``[B, n]``, their projection ``X v₁`` on the first right singular vector
    (up to sign): ``σ₁ u₁`` from a batched ``eigh`` of the smaller Gram matrix, ``X Xᵀ`` (n × n) or ``XᵀX``
    (C × C), in float64 (the SVD's result, without the full decomposition)."""
    n, channels = centred.shape[-2:]
    if n <= channels:
        values, vectors = torch.linalg.eigh(centred @ centred.transpose(1, 2))
        return vectors[..., -1] * values[:, -1:].clamp_min(0).sqrt()
    _, vectors = torch.linalg.eigh(centred.transpose(1, 2) @ centred)
    return (centred @ vectors[..., -1:])[..., 0]


def first_component_projection(features: torch.Tensor, sign: str = "activation") -> torch.Tensor:
    """``[B, C, h, w]`` → ``[B, h, w]``: the centred features projected on their first principal direction."""
    batch, _, h, w = features.shape
    projection = _first_component(_positions(features))
    total = torch.nan_to_num(features.double(), nan=0.0).sum(1).flatten(1)
    return orient(projection, total, sign).view(batch, h, w).to(features.dtype)


def kernel_matrix(x: torch.Tensor, kernel: str = "sigmoid", gamma: float | None = None, coef0: float = 1.0,
                  degree: int = 3) -> torch.Tensor:
    """``[B, n, C]`` → ``[B, n, n]``, scikit-learn's pairwise kernels (``gamma=None``: ``1 / C``):
    sigmoid ``tanh(γ xᵀy + c₀)``, rbf ``exp(−γ‖x − y‖²)``, poly ``(γ xᵀy + c₀)^d``, linear ``xᵀy``,
    cosine ``xᵀy / (‖x‖‖y‖)``."""
    gamma = 1.0 / x.shape[-1] if gamma is None else float(gamma)
    dot = x @ x.transpose(1, 2)
    if kernel == "sigmoid":
        return torch.tanh(gamma * dot + coef0)
    if kernel == "poly":
        return (gamma * dot + coef0).pow(degree)
    if kernel == "linear":
        return dot
    if kernel == "rbf":
        squared = x.pow(2).sum(-1)
        return torch.exp(-gamma * (squared[:, :, None] + squared[:, None, :] - 2 * dot).clamp_min(0))
    if kernel == "cosine":
        norm = x.norm(dim=-1).clamp_min(1e-300)
        return dot / (norm[:, :, None] * norm[:, None, :])
    raise WsolError(f"method.kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")


def kernel_pca_projection(features: torch.Tensor, kernel: str = "sigmoid", gamma: float | None = None,
                          sign: str = "activation") -> torch.Tensor:
    """``[B, C, h, w]`` → ``[B, h, w]``: each image's first kernel principal component ``√λ₁ u₁`` over its
    positions (the centred features' kernel matrix, double-centred, top eigenpair by a batched ``eigh``)."""
    batch, _, h, w = features.shape
    k = kernel_matrix(_positions(features), kernel, gamma)
    scale = k.abs().flatten(1).amax(1)
    k = k - k.mean(1, keepdim=True) - k.mean(2, keepdim=True) + k.mean((1, 2), keepdim=True)
    values, vectors = torch.linalg.eigh(k)
    top = values[:, -1:]
    # a centred kernel of rounding errors alone (flat features): no component, a flat map
    top = torch.where(top > k.shape[-1] * torch.finfo(k.dtype).eps * scale[:, None], top, torch.zeros_like(top))
    projection = vectors[..., -1] * top.sqrt()  # [B, hw]
    total = torch.nan_to_num(features.double(), nan=0.0).sum(1).flatten(1)
    return orient(projection, total, sign).view(batch, h, w).to(features.dtype)


Sign = Literal["activation", "largest"]


@METHODS.register("eigencam")
class EigenCAM(CamMethod):
    needs_grad = False
    weighs_activations = False  # its map is a projection already

    def __init__(self, model, layer, *, sign: Sign = "activation", **kwargs) -> None:
        super().__init__(model, layer, **kwargs)
        if sign not in SIGNS:
            raise WsolError(f"method.sign must be one of {', '.join(SIGNS)}, got {sign!r}")
        self.sign = sign

    def features(self, x: LayerCapture) -> torch.Tensor:
        return x.activations

    def compute(self, x: LayerCapture) -> torch.Tensor:
        return first_component_projection(self.features(x), self.sign)


@METHODS.register("eigengradcam")
class EigenGradCAM(EigenCAM):
    needs_grad = True

    def features(self, x):
        return x.gradients * x.activations


@METHODS.register("segeigencam")
class SegEigenCAM(EigenCAM):
    needs_grad = True

    def __init__(self, model, layer, *, sign: Sign = "largest", **kwargs) -> None:
        super().__init__(model, layer, sign=sign, **kwargs)

    def features(self, x):
        return x.gradients.abs() * x.activations


@METHODS.register("kpcacam")
class KPCACAM(EigenCAM):
    """KPCA-CAM with pytorch-grad-cam's defaults: the sigmoid kernel, ``gamma = 1 / C``."""

    def __init__(self, model, layer, *, kernel: Literal["sigmoid", "rbf", "poly", "linear", "cosine"] = "sigmoid",
                 gamma: Annotated[float, Range(0)] | None = None, **kwargs) -> None:
        super().__init__(model, layer, **kwargs)
        if kernel not in KERNELS:
            raise WsolError(f"method.kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
        self.kernel, self.gamma = kernel, gamma

    def compute(self, x):
        return kernel_pca_projection(x.activations, self.kernel, self.gamma, self.sign)
