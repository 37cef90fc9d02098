"""Sanity baselines: maps that know nothing of the class (or of the network), so that every table can show
what a method gains over them (Adebayo et al., NeurIPS 2018; the WSOL papers' center baseline).

- Random-CAM — pytorch-grad-cam: channel weights drawn uniformly from ``[−1, 1]``, ``M = Σ_k w_k A_k``. One
  weight vector, drawn on the CPU from ``seed``, for every image (pytorch-grad-cam draws one per image from
  NumPy's global generator), so a map depends neither on its batch nor on its device.
- Sobel — pytorch-grad-cam's ``sobel_cam``: the image's edge map, ``½|∂x G| + ½|∂y G|`` of the grey image
  ``G = 0.299 R + 0.587 G + 0.114 B`` (in 0–255 pixels; the input normalisation undone with ``mean`` and
  ``std``: the model's in a run, ImageNet's by default when built alone),
  3×3 Sobel kernels, borders reflected without repeating the edge (OpenCV's default). ``uint8=True`` computes
  as OpenCV's 8-bit arithmetic does: the grey image in 15-bit fixed point, rounded; each ``|∂|`` and the mean
  rounded and saturated at 255.
- Center — an isotropic Gaussian centred on the image, ``exp(−r² / 2(σ·S)²)`` with ``r`` the distance of a
  pixel centre to the image centre and ``S`` the shorter side; its thresholded regions are centred discs, so
  the box metrics' sweep over thresholds picks the best centred box whatever ``σ`` (``σ`` only moves the
  threshold at which each disc appears).
"""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F

from ..schema import Range
from . import METHODS
from .core import CamMethod, LayerCapture, ReadsPixels

__all__ = ["CenterBaseline", "RandomCAM", "SobelCAM", "center_gaussian", "sobel_edges"]

_GREY = (0.299, 0.587, 0.114)  # ITU-R BT.601, OpenCV's RGB2GRAY
_GREY_FIXED = (9798, 19235, 3735)  # the same × 2¹⁵ (sum 2¹⁵), as OpenCV computes it on 8-bit images


def sobel_edges(pixels: torch.Tensor, uint8: bool = False) -> torch.Tensor:
    """``[B, 3, H, W]`` RGB in 0–255 → ``[B, H, W]``: ``½|∂x G| + ½|∂y G|`` (3×3 Sobel, reflect-101 borders)."""
    if uint8:  # OpenCV's 8-bit RGB2GRAY: 15-bit fixed-point weights, rounded
        fixed = torch.tensor(_GREY_FIXED, dtype=torch.int64, device=pixels.device)
        grey = ((torch.einsum("bchw,c->bhw", pixels.round().long(), fixed) + (1 << 14)) >> 15).float()
    else:  # float32: the 8-bit path's sums are whole numbers below 2²⁴, exact in it
        grey = torch.einsum("bchw,c->bhw", pixels.float(), torch.tensor(_GREY, device=pixels.device))
    padded = F.pad(grey[:, None], (1, 1, 1, 1), mode="reflect")  # reflect = OpenCV's BORDER_REFLECT_101
    smooth, diff = torch.tensor([1.0, 2.0, 1.0]), torch.tensor([-1.0, 0.0, 1.0])
    kx = torch.outer(smooth, diff).to(padded)[None, None]  # ∂x: [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]
    gx, gy = F.conv2d(padded, kx)[:, 0].abs(), F.conv2d(padded, kx.transpose(2, 3))[:, 0].abs()
    if uint8:
        gx, gy = gx.round().clamp(max=255), gy.round().clamp(max=255)
        return (0.5 * gx + 0.5 * gy).round().clamp(max=255)
    return 0.5 * gx + 0.5 * gy


def center_gaussian(batch: int, size: tuple[int, int], sigma: float, device=None) -> torch.Tensor:
    """``[B, H, W]``: ``exp(−r² / 2(σ·min(H, W))²)``, ``r`` from each pixel centre to the image centre."""
    h, w = size
    y = torch.arange(h, device=device, dtype=torch.float64) + 0.5 - h / 2
    x = torch.arange(w, device=device, dtype=torch.float64) + 0.5 - w / 2
    r2 = y[:, None] ** 2 + x[None, :] ** 2
    return torch.exp(-r2 / (2 * (sigma * min(h, w)) ** 2)).float().expand(batch, h, w).clone()


@METHODS.register("randomcam")
class RandomCAM(CamMethod):
    needs_grad = False

    def channel_weights(self, x: LayerCapture) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed)
        batch, channels = x.activations.shape[:2]
        weights = torch.rand(channels, generator=generator, dtype=torch.float64) * 2 - 1
        return weights.to(x.activations).expand(batch, channels)


@METHODS.register("sobel")
class SobelCAM(ReadsPixels, CamMethod):
    """The edge map at the input's resolution (the layer is hooked but not read)."""

    needs_grad, weighs_activations = False, False

    def __init__(self, model, layer, *, mean: list[float] | None = None, std: list[float] | None = None,
                 uint8: bool = False, **kwargs) -> None:
        super().__init__(model, layer, **kwargs)
        self._set_normalization(mean, std)
        self.uint8 = bool(uint8)

    def compute(self, x: LayerCapture) -> torch.Tensor:
        mean, std = self.statistics(x.images.device)
        pixels = ((x.images.float() * std + mean) * 255).clamp(0, 255)
        if self.uint8:
            pixels = pixels.round()
        return sobel_edges(pixels, self.uint8).to(x.activations.dtype)


@METHODS.register("center")
class CenterBaseline(CamMethod):
    """The center baseline at the input's resolution (the layer is hooked but not read)."""

    needs_grad, weighs_activations = False, False

    def __init__(self, model, layer, *, sigma: Annotated[float, Range(0, low_open=True)] = 0.25,
                 **kwargs) -> None:
        super().__init__(model, layer, **kwargs)
        self.sigma = float(sigma)

    def compute(self, x: LayerCapture) -> torch.Tensor:
        return center_gaussian(len(x.images), tuple(x.images.shape[-2:]), self.sigma, x.images.device)
