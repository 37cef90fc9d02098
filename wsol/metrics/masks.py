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

__all__ = ["PxAPAccumulator"]


class PxAPAccumulator:
    """Dataset-wide foreground / background score histograms; merge by summing."""

    def __init__(self, interval: float = 0.01) -> None:
        self.edges = np.append(sweep_thresholds(interval), [1.0, 2.0, 3.0])
        self.fg_hist = np.zeros(len(self.edges) - 1)
        self.bg_hist = np.zeros(len(self.edges) - 1)

    def update(self, maps: np.ndarray, masks: np.ndarray) -> None:
        """Add normalised maps ``[B, H, W]`` in [0, 1] and masks ``[B, H, W]`` (0 bg, 1 fg, 255 ignore)."""
        self.fg_hist += np.histogram(maps[masks == 1], bins=self.edges)[0]
        self.bg_hist += np.histogram(maps[masks == 0], bins=self.edges)[0]

    def merge(self, other: PxAPAccumulator) -> None:
        self.fg_hist += other.fg_hist
        self.bg_hist += other.bg_hist

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
