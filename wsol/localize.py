"""Score maps → boxes: upsample, normalise, quantise, threshold, connected components.

Conventions (wsolevaluation's, see README):
- maps are upsampled to the eval size (bicubic, ``align_corners=False``) and min-max normalised
  per image; a flat or non-finite map becomes all zeros (and is counted);
- a map is quantised to ``uint8`` as ``int(map * 255)``; at threshold ``t`` the foreground is the
  pixels **strictly greater** than ``int(t * max(uint8 map))``, so a sweep has at most 256
  distinct masks, one per *level*;
- boxes come from one of two backends, each box ``(x, y, x + w, y + h)`` of a region's bounding
  rectangle ``(x, y, w, h)`` with the far corner clipped to ``(W - 1, H - 1)``; an empty foreground
  gives the box ``(0, 0, 0, 0)``:

  ``cc``        8-connected components (scikit-image); *largest* = most pixels;
  ``contours``  the reference's ``cv2.findContours(RETR_TREE, CHAIN_APPROX_SIMPLE)``: outer
                *and hole* contours; *largest* = largest ``cv2.contourArea`` (first on ties).

  The two agree on foregrounds without holes; a hole adds a (smaller) contour box under
  ``contours``, and polygon area can rank regions differently from pixel count.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .errors import WsolError

__all__ = [
    "upsample",
    "minmax_normalize",
    "eval_maps",
    "NORMALIZE_ORDERS",
    "quantize",
    "sweep_thresholds",
    "threshold_levels",
    "component_boxes",
    "contour_boxes",
    "region_boxes",
    "level_boxes",
    "box_iou",
    "BOX_BACKENDS",
]

EMPTY_BOX = np.zeros((1, 4), dtype=np.int64)


def upsample(maps: torch.Tensor, size: int, mode: str = "bicubic") -> torch.Tensor:
    """``[B, h, w]`` → ``[B, size, size]`` (``align_corners=False``); maps already at ``size`` pass unchanged."""
    if mode not in ("bicubic", "bilinear", "nearest"):
        raise WsolError(f"localize.resize must be bicubic, bilinear or nearest, got {mode!r}")
    if maps.shape[-2:] == (size, size):
        return maps.float()
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


NORMALIZE_ORDERS = ("after_resize", "before_resize")


def eval_maps(
    maps: torch.Tensor, size: int, resize: str = "bicubic", normalize: str = "after_resize"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Maps ``[B, h, w]`` at the eval size in ``[0, 1]``, and which were flat ``[B]``.

    ``after_resize`` (wsolevaluation's ``inference.py``): upsample, then min-max (:func:`minmax_normalize`).
    ``before_resize`` (pytorch-grad-cam's ``scale_cam_image``): ``(M − min) / (max − min + 1e-7)`` at the map's
    own resolution, then upsample (its ``cv2.resize`` is bilinear), with no second min-max: the peak of the
    upsampled map is then a little below 1.
    """
    if normalize == "after_resize":
        return minmax_normalize(upsample(maps, size, resize))
    if normalize != "before_resize":
        raise WsolError(f"localize.normalize must be one of {', '.join(NORMALIZE_ORDERS)}, got {normalize!r}")
    lo, hi = maps.amin((1, 2), keepdim=True), maps.amax((1, 2), keepdim=True)
    flat = (~torch.isfinite(hi - lo) | (hi - lo <= 0)).flatten()
    scaled = torch.where(flat[:, None, None], torch.zeros_like(maps), (maps - lo) / (hi - lo + 1e-7))
    return upsample(scaled, size, resize).clamp(0, 1), flat


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


def _clip_far_corner(boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Clip ``x1, y1`` of ``(x, y, x + w, y + h)`` boxes to ``(W - 1, H - 1)``, as the reference does."""
    boxes[:, 2] = np.minimum(boxes[:, 2], shape[1] - 1)
    boxes[:, 3] = np.minimum(boxes[:, 3], shape[0] - 1)
    return boxes


def component_boxes(foreground: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes ``[M, 4]`` and pixel areas ``[M]`` of the 8-connected components of a bool ``[H, W]`` mask.

    Box convention as in the module docstring; no component gives one box ``(0, 0, 0, 0)`` of area 0.
    """
    from scipy import ndimage
    from skimage.measure import label

    labels, count = label(foreground, connectivity=2, return_num=True)
    if count == 0:
        return EMPTY_BOX.copy(), np.zeros(1, dtype=np.int64)
    slices = ndimage.find_objects(labels)
    boxes = _clip_far_corner(
        np.array([[s[1].start, s[0].start, s[1].stop, s[0].stop] for s in slices], dtype=np.int64), foreground.shape
    )
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    return boxes, areas


def contour_boxes(foreground: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes ``[M, 4]`` and ``cv2.contourArea`` ``[M]`` of the reference's contours of a bool ``[H, W]`` mask.

    ``RETR_TREE`` returns hole contours too, so a ring gives its outer box and its hole's box.
    No contour gives one box ``(0, 0, 0, 0)`` of area 0.
    """
    import cv2

    binary = foreground.astype(np.uint8) * 255
    contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[-2]
    if len(contours) == 0:
        return EMPTY_BOX.copy(), np.zeros(1)
    rects = np.array([cv2.boundingRect(c) for c in contours], dtype=np.int64).reshape(-1, 4)
    rects[:, 2:] += rects[:, :2]  # (x, y, w, h) → (x, y, x + w, y + h)
    boxes = _clip_far_corner(rects, foreground.shape)
    return boxes, np.array([cv2.contourArea(c) for c in contours])


BOX_BACKENDS = {"cc": component_boxes, "contours": contour_boxes}


def region_boxes(foreground: np.ndarray, backend: str = "cc") -> tuple[np.ndarray, int]:
    """All boxes ``[M, 4]`` of a bool mask and the index of the largest, with the chosen backend."""
    if backend not in BOX_BACKENDS:
        raise WsolError(f"localize.backend must be one of {', '.join(BOX_BACKENDS)}, got {backend!r}")
    boxes, sizes = BOX_BACKENDS[backend](foreground)
    return boxes, int(np.argmax(sizes))


def level_boxes(map_u8: np.ndarray, level: int, mode: str, backend: str = "cc") -> np.ndarray:
    """Boxes of ``map_u8 > level``: all regions (``mode="all"``) or the largest one (``"largest"``)."""
    boxes, largest = region_boxes(map_u8 > level, backend)
    if mode == "all":
        return boxes
    if mode == "largest":
        return boxes[[largest]]
    raise WsolError(f"box mode must be largest or all, got {mode!r}")


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Inclusive IoU ``[M, K]`` of boxes ``[M, 4]`` and ``[K, 4]`` (x0, y0, x1, y1; +1 pixel convention).

    Empty inputs give an empty ``[M, K]`` array.
    """
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)[:, None, :]
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)[None, :, :]
    iw = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1
    ih = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    return inter / (area_a + area_b - inter)
