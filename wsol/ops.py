"""Small pure functions over tensors that several stages share (bottom layer)."""

from __future__ import annotations

import torch

__all__ = ["minmax_normalize"]


def minmax_normalize(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-map ``(x - min) / (max - min)`` of ``[B, H, W]``; returns ``(maps in [0, 1], flat [B])``.

    A map whose range is 0 or not finite is returned as zeros and flagged in ``flat``.
    """
    flat_maps = maps.flatten(1)
    lo, hi = flat_maps.min(1).values, flat_maps.max(1).values
    span = hi - lo
    flat = ~torch.isfinite(span) | (span <= 0)
    safe_span = torch.where(flat, torch.ones_like(span), span)
    out = (maps - lo[:, None, None]) / safe_span[:, None, None]
    out = torch.where(flat[:, None, None], torch.zeros_like(out), out)
    return out.clamp(0, 1), flat
