"""Eigen-CAM — Muhammad & Yeasin, IJCNN 2020: the activations' first principal component.

The ``(hw, C)`` activation matrix of each image is centred over positions (as pytorch-grad-cam
does) and projected on its first right singular vector ``v₁``: ``M = (A − mean) v₁``. The sign of
a singular vector is arbitrary (it differs between LAPACK and cuSOLVER), so it is fixed here: the
map is made to correlate non-negatively with the channel-summed activation ``Σ_k A_k``. Class
agnostic: the same map for every target.
"""

from __future__ import annotations

import torch

from . import METHODS
from .core import CamMethod, LayerCapture

__all__ = ["EigenCAM", "first_component_projection"]


def first_component_projection(activations: torch.Tensor) -> torch.Tensor:
    """``[B, C, h, w]`` → ``[B, h, w]``: centred activations projected on their first principal direction."""
    batch, _, h, w = activations.shape
    matrix = activations.flatten(2).transpose(1, 2).double()  # [B, hw, C]
    centred = matrix - matrix.mean(1, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    projection = (centred @ vh[:, 0, :, None])[..., 0]  # [B, hw]
    total = matrix.sum(2)
    agreement = (projection * (total - total.mean(1, keepdim=True))).sum(1)
    sign = torch.where(agreement < 0, -1.0, 1.0).to(projection.dtype)
    return (projection * sign[:, None]).view(batch, h, w).to(activations.dtype)


@METHODS.register("eigencam")
class EigenCAM(CamMethod):
    needs_grad = False

    def compute(self, x: LayerCapture) -> torch.Tensor:
        return first_component_projection(x.activations)
