"""Stage 4, localization: cut levels per threshold, region boxes, and their IoUs with the GT boxes.

Conventions (wsolevaluation's; docs/protocols.md): thresholds ``t`` are ``np.arange(0, 1, interval)``
(a sweep) or one value; on a ``uint8`` map with maximum ``peak`` the foreground at ``t`` is the pixels
**strictly greater** than the cut level ``int(t · peak)``, so a sweep has at most 256 distinct masks.
Each level's regions give boxes by one of two rules (:mod:`wsol.localize.regions`); two engines give
identical results: ``fast`` (:mod:`wsol.localize.sweep`, one union-find pass per map for every level)
and ``reference`` (scikit-image or OpenCV, level by level).
"""

from __future__ import annotations

import numpy as np

from .regions import BOX_RULES, box_iou, box_overlaps, level_boxes, region_boxes
from .sweep import SweepResult, reference_sweep_boxes, sweep_boxes

__all__ = [
    "BOX_RULES",
    "ENGINES",
    "SweepResult",
    "box_iou",
    "box_overlaps",
    "level_boxes",
    "localize",
    "region_boxes",
    "sweep_thresholds",
    "threshold_levels",
]

ENGINES = {"fast": sweep_boxes, "reference": reference_sweep_boxes}


def sweep_thresholds(interval: float) -> np.ndarray:
    """``np.arange(0, 1, interval)`` in float64, as the reference sweeps."""
    if not 0 < interval < 1:
        raise ValueError(f"a threshold interval must be in (0, 1), got {interval}")  # the config checks it first
    return np.arange(0, 1, interval)


def threshold_levels(thresholds: np.ndarray, peaks: np.ndarray) -> np.ndarray:
    """Integer cut levels ``int(t * peak)`` ``[B, T]`` for thresholds ``[T]`` and uint8 map maxima ``[B]``."""
    return (np.asarray(thresholds, dtype=np.float64)[None, :] * np.asarray(peaks, dtype=np.float64)[:, None]).astype(
        np.int64
    )


def localize(
    maps_u8: np.ndarray,
    thresholds: np.ndarray,
    gt_boxes: np.ndarray,
    gt_valid: np.ndarray,
    rule: str = "cc",
    engine: str = "fast",
    clip: bool = True,
    empty_box=(0, 0, 0, 0),
) -> SweepResult:
    """Every map's region results at every threshold's cut level.

    Args:
        maps_u8: ``[B, H, W]`` uint8 maps (:func:`wsol.maps.quantize`).
        thresholds: ``[T]`` thresholds in ``[0, 1)``.
        gt_boxes: ``[B, K, 4]`` GT boxes (x0, y0, x1, y1, inclusive) with ``gt_valid [B, K]``, ≥ 1 valid per map.
        rule: ``cc`` or ``contours`` (:data:`BOX_RULES`); engine: ``fast`` or ``reference`` (:data:`ENGINES`).
        clip: clip a box's far corner ``(x + w, y + h)`` to ``(W − 1, H − 1)`` (wsolevaluation); ``False`` keeps
            it (TS-CAM's ``get_bboxes``): the maps get a zero column and row, which no cut level makes foreground.
        empty_box: the box of an empty foreground (wsolevaluation ``(0, 0, 0, 0)``, TS-CAM ``(0, 0, 1, 1)``).
    """
    maps_u8 = np.asarray(maps_u8, dtype=np.uint8)
    peaks = maps_u8.reshape(len(maps_u8), -1).max(axis=1) if maps_u8.size else np.zeros(len(maps_u8), np.uint8)
    levels = threshold_levels(thresholds, peaks)
    if not clip:
        maps_u8 = np.pad(maps_u8, ((0, 0), (0, 1), (0, 1)))
    out = ENGINES[engine](maps_u8, levels, gt_boxes, gt_valid, rule)
    if tuple(empty_box) != (0, 0, 0, 0):
        _replace_empty(out, peaks, np.asarray(empty_box, dtype=np.int64), gt_boxes, gt_valid)
    return out


def _replace_empty(out: SweepResult, peaks: np.ndarray, empty_box: np.ndarray, gt_boxes, gt_valid) -> None:
    """Give the entries whose foreground is empty (cut level ≥ the map's peak) ``empty_box`` and its IoU."""
    owners = np.repeat(np.arange(len(peaks)), np.diff(out.offsets))
    empty = np.flatnonzero(out.level >= np.asarray(peaks, dtype=np.int64)[owners])
    if not len(empty):
        return
    gt = np.asarray(gt_boxes, dtype=np.int64)[owners[empty]]  # [E, K, 4]
    ious = np.where(np.asarray(gt_valid, dtype=bool)[owners[empty]], box_iou(empty_box, gt)[:, 0], -np.inf)
    out.box[empty] = out.best_box[empty] = empty_box
    out.iou_largest[empty] = out.iou_all[empty] = ious.max(axis=1)
