"""Batched perturbation passes: many modified forwards of a batch, in chunks under a memory budget.

Score-CAM's family and Ablation-CAM score one modified input per (image, channel) pair, and more
with noise or integration samples. The pairs are flattened and evaluated ``chunk`` at a time:
the masked inputs of one chunk are built just before its forward, so at most ``chunk`` full-size
inputs exist at once, on CPU and GPU alike.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import WsolError
from ..ops import minmax_normalize
from .layout import NCHW, Layout

MASK_ORDERS = ("upsample_first", "normalize_first")

__all__ = [
    "MASK_ORDERS",
    "activation_masks",
    "active_channels",
    "chunk_size",
    "chunked",
    "forward_bytes",
    "replace_output",
    "zero_channels",
]


def forward_bytes(model: nn.Module, sample: torch.Tensor) -> int:
    """Bytes one input of ``sample``'s shape costs a no-grad forward: its size plus every leaf module's output.

    Summing all outputs bounds the live memory of an inference pass from above (most are freed
    as the pass goes), so chunks sized from it stay under the budget.
    """
    total = sample[:1].numel() * sample.element_size()

    def record(_module, _inputs, output) -> None:
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel() * output.element_size()

    handles = [m.register_forward_hook(record) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model(sample[:1])
    finally:
        for handle in handles:
            handle.remove()
    return total


def chunk_size(model: nn.Module, sample: torch.Tensor, budget_mb: float) -> int:
    """How many perturbed inputs one forward may take under ``budget_mb`` MiB (at least 1)."""
    if not budget_mb or budget_mb <= 0:
        raise WsolError(f"method.memory_budget_mb must be positive, got {budget_mb}")
    return max(1, int(budget_mb * 2**20) // forward_bytes(model, sample))


def chunked(total: int, chunk: int, device: torch.device) -> Iterator[torch.Tensor]:
    """Consecutive index ranges ``[start, start + chunk)`` covering ``range(total)``."""
    for start in range(0, total, chunk):
        yield torch.arange(start, min(start + chunk, total), device=device)


def active_channels(activations: torch.Tensor) -> torch.Tensor:
    """``[B, C]`` bool: channels with a non-zero activation. An all-zero channel adds nothing to
    ``Σ_k w_k A_k`` whatever its weight, so the perturbation methods skip its passes."""
    return activations.flatten(2).ne(0).any(-1)


def activation_masks(
    activations: torch.Tensor, size: tuple[int, int], order: str = "upsample_first", align_corners: bool = False
) -> torch.Tensor:
    """Score-CAM's masks ``[m, 1, H, W]`` in ``[0, 1]`` from activation maps ``[m, h, w]``.

    ``upsample_first`` (the Score-CAM paper and code, pytorch-grad-cam): bilinear upsampling to
    the input size, then per-map min-max. ``normalize_first`` (torchcam): min-max, then upsampling.
    ``align_corners``: the bilinear grid (pytorch-grad-cam's ``UpsamplingBilinear2d`` aligns corners;
    torchcam and the authors' ``F.interpolate`` calls do not). Flat maps give all-zero masks.
    """

    def up(maps: torch.Tensor) -> torch.Tensor:
        return F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=align_corners)[:, 0]

    if order == "upsample_first":
        return minmax_normalize(up(activations))[0][:, None]
    if order == "normalize_first":
        return up(minmax_normalize(activations.float())[0])[:, None]
    raise ValueError(f"mask order must be one of {MASK_ORDERS}, got {order!r}")  # the methods check it first


@contextlib.contextmanager
def replace_output(layer: nn.Module, transform: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Replace ``layer``'s output by ``transform(output)`` while the block runs."""
    handle = layer.register_forward_hook(lambda _m, _i, output: transform(output))
    try:
        yield
    finally:
        handle.remove()


def zero_channels(
    channels: torch.Tensor, layout: Layout = NCHW, input_hw: tuple[int, int] | None = None
) -> Callable[[torch.Tensor], torch.Tensor]:
    """An output transform that zeroes channel ``channels[i]`` of row ``i``'s map (for :func:`replace_output`);
    in a token layout the patch tokens' channel, the prefix tokens untouched."""
    rows = torch.arange(len(channels), device=channels.device)

    def transform(output: torch.Tensor) -> torch.Tensor:
        spatial, rebuild = layout.split(output, tuple(input_hw or (224, 224)))
        spatial = spatial.clone()
        spatial[rows, channels] = 0
        return rebuild(spatial)

    return transform
