"""PxAP: pixel-wise average precision of score maps against foreground masks.

As wsolevaluation computes it (Choe et al., CVPR 2020, §4): scores of foreground (mask 1) and
background (mask 0) pixels are histogrammed into the bins ``[0, bw), [bw, 2bw), …, [1 - bw, 1),
[1, 2), [2, 3]`` (``bw`` the curve interval) and accumulated over the dataset; ignore pixels
(255) count in neither. TP and FP are reverse cumulative sums, precision = TP / (TP + FP),
recall = TP / #fg, and PxAP = 100 · Σ precision[1:] · diff(recall) over the curve points where
TP + FP ≠ 0: precision is 0/0 at the top bins until the first scored pixel, and the reference drops
those points (``non_zero_indices`` in ``MaskEvaluator.compute``). They are not always the empty
bins above 1: when every top-scoring pixel lies in an ignore region, the [1, 2) bin is empty too.
"""

from __future__ import annotations

import numpy as np

from ..localize import sweep_thresholds
from .bootstrap import weighted_sums
from .extra import pixel_iou

__all__ = ["PxAPAccumulator", "image_histograms", "pxap_of"]


def image_histograms(values: np.ndarray, groups: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``[B, bins]`` counts of ``values [B, P]`` where ``groups [B, P]`` holds, in the bins ``[e_i, e_{i+1})`` of
    ``edges`` (the last closed), as ``numpy.histogram`` counts them."""
    bins = len(edges) - 1
    index = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, bins - 1)
    rows = np.broadcast_to(np.arange(len(values))[:, None], values.shape)
    counts = np.bincount((rows * bins + index)[groups], minlength=len(values) * bins).reshape(len(values), bins)
    return counts.astype(np.uint16 if counts.max(initial=0) < 2**16 else np.uint32)


def pxap_of(fg_hist: np.ndarray, bg_hist: np.ndarray) -> np.ndarray:
    """PxAP in percent of histograms ``[..., bins]``, one curve per leading index, as
    :meth:`PxAPAccumulator.compute` (curve points with precision 0/0 dropped)."""
    tp = np.cumsum(fg_hist[..., ::-1], axis=-1, dtype=np.float64)
    fp = np.cumsum(bg_hist[..., ::-1], axis=-1, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tp / (tp + fp)
        recall = tp / tp[..., -1:]
    terms = precision[..., 1:] * np.diff(recall, axis=-1)
    return 100.0 * np.where(np.isnan(precision[..., 1:]), 0.0, terms).sum(axis=-1)


class PxAPAccumulator:
    """Foreground / background score histograms per image (and their dataset-wide sums); merge by appending."""

    def __init__(self, interval: float = 0.01) -> None:
        self.edges = np.append(sweep_thresholds(interval), [1.0, 2.0, 3.0])
        self.fg_hist = np.zeros(len(self.edges) - 1, dtype=np.int64)
        self.bg_hist = np.zeros(len(self.edges) - 1, dtype=np.int64)
        self.image_fg: list[np.ndarray] = []  # per batch [B, bins]
        self.image_bg: list[np.ndarray] = []

    def update(self, maps: np.ndarray, masks: np.ndarray) -> None:
        """Add normalised maps ``[B, H, W]`` in [0, 1] and masks ``[B, H, W]`` (0 bg, 1 fg, 255 ignore)."""
        values = maps.reshape(len(maps), -1)
        masks = masks.reshape(len(masks), -1)
        self.add(image_histograms(values, masks == 1, self.edges), image_histograms(values, masks == 0, self.edges))

    def add(self, fg: np.ndarray, bg: np.ndarray) -> None:
        """Add per-image histograms ``[B, bins]``."""
        self.image_fg.append(fg)
        self.image_bg.append(bg)
        self.fg_hist += fg.sum(axis=0, dtype=np.int64)
        self.bg_hist += bg.sum(axis=0, dtype=np.int64)

    def merge(self, other: PxAPAccumulator) -> None:
        for fg, bg in zip(other.image_fg, other.image_bg, strict=True):
            self.add(fg, bg)

    def curve(self) -> tuple[np.ndarray, np.ndarray]:
        """``(precision, recall)`` from the highest bin down; precision is NaN where TP + FP = 0."""
        tp = self.fg_hist[::-1].cumsum()
        fp = self.bg_hist[::-1].cumsum()
        n_fg = self.fg_hist.sum()
        if n_fg <= 0:
            raise ValueError("no foreground pixel in the masks: PxAP is undefined")
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = tp / (tp + fp)
        return precision, tp / n_fg

    def compute(self) -> float:
        """PxAP in percent, over the curve points where precision is defined (TP + FP ≠ 0)."""
        precision, recall = self.curve()
        defined = ~np.isnan(precision[1:])
        return float(100.0 * (precision[1:] * np.diff(recall))[defined].sum())

    def piou(self) -> dict[str, float]:
        """``piou_max`` and ``piou_mean`` in percent (:func:`wsol.metrics.extra.pixel_iou`)."""
        return {k: float(v) for k, v in pixel_iou(self.fg_hist, self.bg_hist).items()}

    def bootstrap(self, weights: np.ndarray, piou: bool = False) -> dict[str, np.ndarray]:
        """PxAP (and with ``piou`` the pixel IoUs) of each resample (``weights [R, n]``): the resample's histograms
        are the weighted sums of the images'."""
        fg, bg = weighted_sums(weights, self.image_fg), weighted_sums(weights, self.image_bg)
        out = {"pxap": pxap_of(fg, bg)}
        if piou:
            out.update(pixel_iou(fg, bg))
        return out
