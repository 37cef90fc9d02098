"""Gradient-weighted CAMs.

Grad-CAM — Selvaraju et al., ICCV 2017: ``w_k = mean_ij ∂S/∂A_k,ij``, map ``ReLU(Σ_k w_k A_k)``.

Grad-CAM++ — Chattopadhay et al., WACV 2018, Eq. 19 with ``g = ∂S/∂A`` (S the target logit):
``α_k,ij = g_ij² / (2 g_ij² + Σ_ab A_k,ab · g_ij³)`` (0 where the denominator is 0),
``w_k = Σ_ij α_k,ij · ReLU(g_ij)``.
"""

from __future__ import annotations

import torch

from . import METHODS
from .core import CamMethod

__all__ = ["GradCAM", "GradCAMpp", "gradcampp_alpha"]


@METHODS.register("gradcam")
class GradCAM(CamMethod):
    def channel_weights(self, activations, gradients, targets):
        return gradients.mean(dim=(2, 3))


def gradcampp_alpha(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ ``α`` ``[B, C, h, w]`` (paper Eq. 19); 0 where the denominator vanishes."""
    g2 = gradients.pow(2)
    denominator = 2 * g2 + activations.sum(dim=(2, 3), keepdim=True) * gradients.pow(3)
    safe = torch.where(denominator != 0, denominator, torch.ones_like(denominator))
    return torch.where(denominator != 0, g2 / safe, torch.zeros_like(g2))


@METHODS.register("gradcampp")
class GradCAMpp(CamMethod):
    def channel_weights(self, activations, gradients, targets):
        alpha = gradcampp_alpha(activations, gradients)
        return (alpha * gradients.clamp_min(0)).sum(dim=(2, 3))
