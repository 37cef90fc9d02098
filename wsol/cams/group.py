"""Group-CAM — Zhang et al., "Group-CAM: group score-weighted visual explanations for deep convolutional
networks" (arXiv 2103.13859), as the authors' code computes it.

Grad-CAM's weighted activations ``α_k A_k`` (``α_k = mean_ij g_k``) are split into ``groups`` runs of
consecutive channels; group ``j``'s map ``ReLU(Σ_{k∈j} α_k A_k)`` keeps only its values above its 70th
percentile (``percentile``), is upsampled to the input (bilinear) and min-max normalised to a mask ``M_j``. The
masked input keeps the image where ``M_j`` is 1 and a blurred copy where it is 0,
``X_j = X ⊙ M_j + blur(X) ⊙ (1 − M_j)`` (a 51 × 51 Gaussian of σ 50, borders reflected), and the group's score
is the gain of the target's probability over the blurred image, ``s_j = p_c(X_j) − p_c(blur(X))``. The map is
``ReLU(Σ_j s_j M_j)`` at the input resolution; a group whose mask is flat adds nothing. The ``B · groups``
masked inputs run in chunks under ``memory_budget_mb``.
"""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F

from ..schema import Range
from . import METHODS
from .core import CamMethod, LayerCapture, target_scores
from .perturb import chunk_size, chunked

__all__ = ["GroupCAM", "gaussian_blur", "group_masks"]


def gaussian_blur(images: torch.Tensor, size: int = 51, sigma: float = 50.0) -> torch.Tensor:
    """``[B, C, H, W]`` blurred by a ``size`` × ``size`` Gaussian of std ``sigma`` (separable, normalised to sum
    1, borders reflected; kornia's ``gaussian_blur2d``, which the authors use). An image smaller than the kernel
    (side ≤ ``size // 2``) gets the ``2·side − 1`` central taps, renormalised: reflection cannot pad more."""
    pad = min(size // 2, min(images.shape[-2:]) - 1)  # reflection needs pad < side: smaller images, fewer taps
    size = 2 * pad + 1
    x = torch.arange(size, dtype=torch.float64, device=images.device) - pad
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).to(images.dtype)
    channels = images.shape[1]
    out = F.pad(images, (pad, pad, pad, pad), mode="reflect")
    out = F.conv2d(out, kernel.view(1, 1, 1, size).expand(channels, 1, 1, size), groups=channels)
    return F.conv2d(out, kernel.view(1, 1, size, 1).expand(channels, 1, size, 1), groups=channels)


def group_masks(weighted: torch.Tensor, groups: int, size: tuple[int, int], percentile: float = 70.0
                ) -> torch.Tensor:
    """``[B, C, h, w]`` weighted activations → ``[B, G, H, W]`` masks in [0, 1] (all zeros where flat)."""
    maps = torch.stack([chunk.sum(1) for chunk in weighted.chunk(groups, 1)], 1).clamp_min(0)  # [B, G, h, w]
    cut = torch.quantile(maps.flatten(2).float(), percentile / 100, dim=2)[..., None, None].to(maps.dtype)
    maps = torch.where(maps > cut, maps, torch.zeros_like(maps))
    up = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
    lo, hi = up.amin((2, 3), keepdim=True), up.amax((2, 3), keepdim=True)
    return torch.where(hi > lo, (up - lo) / torch.where(hi > lo, hi - lo, torch.ones_like(hi)), 0.0)


@METHODS.register("groupcam")
class GroupCAM(CamMethod):
    weighs_activations = False

    def __init__(self, model, layer, *, groups: Annotated[int, Range(1)] = 32,
                 percentile: Annotated[float, Range(0, 100)] = 70.0,
                 memory_budget_mb: Annotated[float, Range(0, low_open=True)] = 1024, **kwargs) -> None:
        super().__init__(model, layer, **kwargs)
        self.groups, self.percentile, self.memory_budget_mb = int(groups), float(percentile), memory_budget_mb

    def compute(self, x: LayerCapture) -> torch.Tensor:
        alpha = x.gradients.mean((2, 3), keepdim=True)
        size = tuple(x.images.shape[-2:])
        masks = group_masks(alpha * x.activations, self.groups, size, self.percentile)  # [B, G, H, W]
        batch, groups = masks.shape[:2]
        blurred = gaussian_blur(x.images)
        base = target_scores(self.model(blurred), x.targets, "probability")
        pairs = torch.stack(torch.meshgrid(torch.arange(batch), torch.arange(groups), indexing="ij"), -1).view(-1, 2)
        pairs = pairs.to(x.images.device)
        scores = torch.zeros(batch, groups, device=x.images.device)
        for index in chunked(len(pairs), chunk_size(self.model, x.images, self.memory_budget_mb), x.images.device):
            b, j = pairs[index].unbind(1)
            mask = masks[b, j][:, None]
            kept = x.images[b] * mask + blurred[b] * (1 - mask)
            scores[b, j] = (target_scores(self.model(kept), x.targets[b], "probability") - base[b]).float()
        return torch.einsum("bg,bghw->bhw", scores.to(masks.dtype), masks).to(x.activations.dtype)
