"""Gradient-free maps from a layer's activation statistics.

- FEM (Feature Explanation Method) — Fuad et al., IPTA 2020: a channel's weight is the share of its
  positions whose activation exceeds ``μ_k + k·σ_k`` (its mean and population standard deviation over the
  positions; the "k-sigma rule", ``k = 2``): ``w_k = mean_ij [A_k,ij > μ_k + k σ_k]``, ``M = Σ_k w_k A_k``.
  Class agnostic.
"""

from __future__ import annotations

from typing import Annotated

import torch

from ..schema import Range
from . import METHODS
from .core import CamMethod, LayerCapture

__all__ = ["FEM", "fem_weights"]


def fem_weights(activations: torch.Tensor, k: float = 2.0) -> torch.Tensor:
    """``[B, C, h, w]`` → ``[B, C]``: the share of each channel's positions above ``μ + k·σ`` (σ with ddof 0)."""
    flat = activations.flatten(2)
    threshold = flat.mean(2, keepdim=True) + k * flat.std(2, correction=0, keepdim=True)
    return (flat > threshold).to(activations.dtype).mean(2)


@METHODS.register("fem")
class FEM(CamMethod):
    needs_grad = False

    def __init__(self, model, layer, *, k: Annotated[float, Range(0)] = 2.0, **kwargs) -> None:
        super().__init__(model, layer, **kwargs)
        self.k = float(k)

    def channel_weights(self, x: LayerCapture) -> torch.Tensor:
        return fem_weights(x.activations, self.k)
