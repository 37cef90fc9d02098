"""Recipro-CAM — Byun & Lee, "Recipro-CAM: fast gradient-free visual explanations for convolutional neural
networks" (arXiv 2209.14074; CVPR-W 2024), and its transformer variant (ViT-ReciproCAM, arXiv 2310.02588).

Gradient-free, one image's tail of the network per position: the layer's output ``F`` is replaced by ``h·w``
spatially masked copies — copy ``p`` keeps only position ``p``'s feature vector (``kernel="point"``, the
authors' default) or spreads it over ``p``'s 3×3 neighbourhood with the weights ``[1, 2, 1]ᵀ[1, 2, 1] / 16``
(``kernel="gaussian"``, cropped at the borders) — and the map at ``p`` is the target's softmax probability of
copy ``p``: ``M_p = softmax(f_tail(F ⊙ K_p))_c``. A transformer layer's prefix tokens (class, registers) stay
as they are in every copy; only the patch tokens are masked. The layers before the target run once per chunk
of images; the copies of ``chunk`` images go through the tail together (``memory_budget_mb``).
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch

from ..errors import WsolError
from ..schema import Range
from . import METHODS
from .core import CamMethod, LayerCapture, target_scores
from .perturb import chunk_size, chunked, replace_output

__all__ = ["ReciproCAM", "spatial_kernels"]

KERNELS = ("point", "gaussian")


def spatial_kernels(h: int, w: int, kernel: str = "point", device=None, dtype=torch.float32) -> torch.Tensor:
    """``[hw, hw]``: row ``p`` the weight each position ``q`` gets from ``p``'s feature vector (the identity for
    ``point``; the 3×3 binomial ``[1, 2, 1]ᵀ[1, 2, 1] / 16`` around ``p``, cropped at the borders, for
    ``gaussian``)."""
    if kernel == "point":
        return torch.eye(h * w, device=device, dtype=dtype)
    if kernel != "gaussian":
        raise WsolError(f"method.kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
    y, x = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    dy = (y.flatten()[:, None] - y.flatten()[None]).abs()
    dx = (x.flatten()[:, None] - x.flatten()[None]).abs()
    weight = {0: 2.0, 1: 1.0}
    wy = torch.where(dy <= 1, torch.where(dy == 0, weight[0], weight[1]), 0.0)
    wx = torch.where(dx <= 1, torch.where(dx == 0, weight[0], weight[1]), 0.0)
    return (wy * wx / 16).to(dtype)


@METHODS.register("reciprocam")
class ReciproCAM(CamMethod):
    needs_grad, weighs_activations = False, False

    def __init__(self, model, layer, *, kernel: Literal["point", "gaussian"] = "point",
                 memory_budget_mb: Annotated[float, Range(0, low_open=True)] = 1024, **kwargs) -> None:
        super().__init__(model, layer, **kwargs)
        if kernel not in KERNELS:
            raise WsolError(f"method.kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
        self.kernel, self.memory_budget_mb = kernel, memory_budget_mb

    def compute(self, x: LayerCapture) -> torch.Tensor:
        batch, _, h, w = x.activations.shape
        positions = h * w
        kernels = spatial_kernels(h, w, self.kernel, x.activations.device)
        hw = tuple(x.images.shape[-2:])

        def masked_copies(output: torch.Tensor) -> torch.Tensor:  # [n, …] → [n·hw, …], copy p keeps position p
            copies = output.repeat_interleave(positions, 0)
            spatial, rebuild = x.layout.split(copies, hw)
            centre = spatial.flatten(2).view(-1, positions, spatial.shape[1], positions)
            centre = centre.diagonal(dim1=1, dim2=3)  # [n, C, hw]: each copy's own position's feature vector
            masked = torch.einsum("ncp,pq->npcq", centre, kernels.to(centre.dtype))
            return rebuild(masked.reshape(spatial.shape).contiguous())

        images = max(1, chunk_size(self.model, x.images, self.memory_budget_mb) // positions)
        maps = torch.empty(batch, positions, device=x.activations.device)
        for index in chunked(batch, images, x.activations.device):
            with replace_output(x.layer, masked_copies):
                logits = self.model(x.images[index])
            targets = x.targets[index].repeat_interleave(positions)
            maps[index] = target_scores(logits, targets, "probability").float().view(len(index), positions)
        return maps.view(batch, h, w).to(x.activations.dtype)
