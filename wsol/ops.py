"""Small pure functions over tensors that several stages share (bottom layer)."""

from __future__ import annotations

import torch

__all__ = ["InputNormalization", "minmax_normalize"]


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


class InputNormalization:
    """A model's input normalisation on a device: uint8 images ``[B, 3, H, W]`` → pixels in [0, 1] →
    ``(pixels − mean) / std``."""

    def __init__(self, mean, std, device: torch.device) -> None:
        self.device = device
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1)

    def pixels(self, images_u8: torch.Tensor, memory_format: torch.memory_format = torch.contiguous_format
               ) -> torch.Tensor:
        """Pixels in [0, 1], a new float tensor on the device in ``memory_format``."""
        images = images_u8.to(self.device, non_blocking=True).contiguous(memory_format=memory_format)
        return images.to(torch.float32, copy=True).div_(255)

    def inputs(self, pixels: torch.Tensor, in_place: bool = False) -> torch.Tensor:
        """``(pixels − mean) / std``; ``in_place`` writes it over ``pixels``."""
        return (pixels if in_place else pixels.clone()).sub_(self.mean).div_(self.std)

    def __call__(self, images_u8: torch.Tensor, memory_format: torch.memory_format = torch.contiguous_format
                 ) -> torch.Tensor:
        """``inputs(pixels(images_u8))`` in ``memory_format``, in one float buffer: no separate layout copy."""
        return self.inputs(self.pixels(images_u8, memory_format), in_place=True)
