"""Score maps → boxes: upsample, normalise, quantise, threshold, connected components.

Conventions (wsolevaluation's, see README):
- maps are upsampled to the eval size (bicubic, ``align_corners=False``) and min-max normalised
  per image; a flat or non-finite map becomes all zeros (and is counted);
- a map is quantised to ``uint8`` as ``int(map * 255)``; at threshold ``t`` the foreground is the
  pixels **strictly greater** than ``int(t * max(uint8 map))``, so a sweep has at most 256
  distinct masks, one per *level*;
- each 8-connected component gives the box ``(x_min, y_min, x_max + 1, y_max + 1)`` with the far
  corner clipped to ``(W - 1, H - 1)`` — what ``cv2.boundingRect`` gives the reference; an empty
  foreground gives the box ``(0, 0, 0, 0)``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .errors import WsolError

__all__ = [
    "upsample",
    "minmax_normalize",
    "quantize",
    "sweep_thresholds",
    "threshold_levels",
    "component_boxes",
    "level_boxes",
]

EMPTY_BOX = np.zeros((1, 4), dtype=np.int64)


def upsample(maps: torch.Tensor, size: int, mode: str = "bicubic") -> torch.Tensor:
    """``[B, h, w]`` → ``[B, size, size]`` (``align_corners=False``)."""
    if mode not in ("bicubic", "bilinear", "nearest"):
        raise WsolError(f"localize.resize must be bicubic, bilinear or nearest, got {mode!r}")
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    return F.interpolate(maps[:, None].float(), size=(size, size), mode=mode, **kwargs)[:, 0]


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


def quantize(maps: torch.Tensor) -> torch.Tensor:
    """``[0, 1]`` maps → ``uint8`` by truncation, ``int(map * 255)`` (numpy's ``astype(uint8)``)."""
    return (maps * 255).to(torch.uint8)


def sweep_thresholds(interval: float) -> np.ndarray:
    """``np.arange(0, 1, interval)`` in float64, as the reference sweeps."""
    if not 0 < interval < 1:
        raise WsolError(f"localize.interval must be in (0, 1), got {interval}")
    return np.arange(0, 1, interval)


def threshold_levels(thresholds: np.ndarray, peaks: np.ndarray) -> np.ndarray:
    """Integer cut levels ``int(t * peak)`` ``[B, T]`` for thresholds ``[T]`` and uint8 map maxima ``[B]``."""
    return (np.asarray(thresholds, dtype=np.float64)[None, :] * np.asarray(peaks, dtype=np.float64)[:, None]).astype(
        np.int64
    )


def component_boxes(foreground: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes ``[M, 4]`` and pixel areas ``[M]`` of the 8-connected components of a bool ``[H, W]`` mask.

    Box convention as in the module docstring; no component gives one box ``(0, 0, 0, 0)`` of area 0.
    """
    from scipy import ndimage
    from skimage.measure import label

    labels, count = label(foreground, connectivity=2, return_num=True)
    if count == 0:
        return EMPTY_BOX.copy(), np.zeros(1, dtype=np.int64)
    h, w = foreground.shape
    slices = ndimage.find_objects(labels)
    boxes = np.array([[s[1].start, s[0].start, s[1].stop, s[0].stop] for s in slices], dtype=np.int64)
    boxes[:, 2] = np.minimum(boxes[:, 2], w - 1)
    boxes[:, 3] = np.minimum(boxes[:, 3], h - 1)
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    return boxes, areas


def level_boxes(map_u8: np.ndarray, level: int, mode: str) -> np.ndarray:
    """Boxes of ``map_u8 > level``: all components (``mode="all"``) or the largest one (``"largest"``)."""
    boxes, areas = component_boxes(map_u8 > level)
    if mode == "all":
        return boxes
    if mode == "largest":
        return boxes[[int(np.argmax(areas))]]
    raise WsolError(f"box mode must be largest or all, got {mode!r}")
