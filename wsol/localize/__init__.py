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

from .regions import BOX_RULES, box_iou, level_boxes, region_boxes
from .sweep import SweepResult, reference_sweep_boxes, sweep_boxes

__all__ = [
    "BOX_RULES",
    "ENGINES",
    "SweepResult",
    "box_iou",
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
) -> SweepResult:
    """Every map's region results at every threshold's cut level.

    Args:
        maps_u8: ``[B, H, W]`` uint8 maps (:func:`wsol.maps.quantize`).
        thresholds: ``[T]`` thresholds in ``[0, 1)``.
        gt_boxes: ``[B, K, 4]`` GT boxes (x0, y0, x1, y1, inclusive) with ``gt_valid [B, K]``, ≥ 1 valid per map.
        rule: ``cc`` or ``contours`` (:data:`BOX_RULES`); engine: ``fast`` or ``reference`` (:data:`ENGINES`).
    """
    maps_u8 = np.asarray(maps_u8, dtype=np.uint8)
    peaks = maps_u8.reshape(len(maps_u8), -1).max(axis=1) if maps_u8.size else np.zeros(len(maps_u8), np.uint8)
    return ENGINES[engine](maps_u8, threshold_levels(thresholds, peaks), gt_boxes, gt_valid, rule)
