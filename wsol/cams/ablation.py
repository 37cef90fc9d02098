"""Ablation-CAM — Desai & Ramaswamy, WACV 2020.

``w_k = (S − S_k) / S`` with ``S`` the target logit and ``S_k`` the logit with channel ``k`` of the
target layer set to zero; map ``ReLU(Σ_k w_k A_k)``. Dividing by a negative ``S`` would flip every
weight's sign (pytorch-grad-cam does), so the divisor here is ``|S|`` (1 when ``S = 0``): a
positive per-image scale that leaves the map's shape, and hence the min-max map, unchanged.
"""

from __future__ import annotations

from typing import Annotated

import torch

from ..schema import Range
from . import METHODS
from .core import CamMethod, LayerCapture, target_scores
from .perturb import active_channels, chunk_size, chunked, replace_output, zero_channels

__all__ = ["AblationCAM"]


@METHODS.register("ablationcam")
class AblationCAM(CamMethod):
    """Each (image, channel) pair is one forward with that channel zeroed; pairs run in chunks."""

    needs_grad = False

    def __init__(self, model, layer, *, memory_budget_mb: Annotated[float, Range(0, low_open=True)] = 1024,
                 **kwargs) -> None:
        super().__init__(model, layer, **kwargs)
        self.memory_budget_mb = memory_budget_mb

    def channel_weights(self, x: LayerCapture) -> torch.Tensor:
        activations = x.activations
        needed = active_channels(activations)  # zeroing an all-zero channel changes nothing: S_k = S, w_k = 0
        pairs = needed.nonzero()
        ablated = torch.zeros(len(pairs), device=activations.device)
        chunk = chunk_size(self.model, x.images, self.memory_budget_mb)
        for index in chunked(len(pairs), chunk, activations.device):
            b, k = pairs[index].unbind(1)
            with replace_output(x.layer, zero_channels(k, x.layout, x.images.shape[-2:])):
                ablated[index] = target_scores(self.model(x.images[b]), x.targets[b]).float()
        score = target_scores(x.logits, x.targets).float()
        drop = torch.zeros(activations.shape[:2], device=activations.device)
        drop[needed] = score[pairs[:, 0]] - ablated
        scale = torch.where(score != 0, score.abs(), torch.ones_like(score))
        return (drop / scale[:, None]).to(activations.dtype)
