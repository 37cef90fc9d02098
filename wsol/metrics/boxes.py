"""Box metrics: BoxAcc over a threshold sweep, MaxBoxAcc (V1), MaxBoxAccV2, top-1/top-5/GT-known loc.

Definitions (Choe et al., *Evaluating WSOL Right*, CVPR 2020, and its reference code):
- IoU with the inclusive pixel convention, area ``(x1 - x0 + 1)(y1 - y0 + 1)``;
- an image is a hit at ``(t, δ)`` when the best IoU over (its boxes at ``t``) × (its GT boxes) is ``≥ δ/100``;
- BoxAcc(t, δ) = hits / images; MaxBoxAcc = max over one dataset-wide ``t`` of BoxAcc(t, 50) with the
  largest component; MaxBoxAccV2 = mean over δ ∈ {30, 50, 70} of max_t BoxAcc(t, δ) with all components;
- top-1 loc = hit ∧ top-1 class correct; top-5 loc = hit ∧ GT class in the top 5; GT-known loc = hit;
  all three at the threshold that maximises GT-known loc (δ = 50, largest component), which in
  fixed-threshold mode is the one threshold.
Counts are integers, so shards merge exactly by summing (:meth:`BoxAccumulator.merge`).
"""

from __future__ import annotations

import numpy as np

from ..box_sweep import reference_sweep_boxes, sweep_boxes
from ..errors import WsolError
from ..localize import box_iou, threshold_levels

__all__ = ["box_iou", "BoxAccumulator", "MODES", "ENGINES"]

MODES = ("largest", "all")
ENGINES = {"fast": sweep_boxes, "reference": reference_sweep_boxes}


class BoxAccumulator:
    """Integer hit counts per (mode, threshold, δ), plus optional per-image records.

    Args:
        thresholds: ``[T]`` thresholds in ``[0, 1)``.
        iou_thresholds: δ values in percent.
        keep_records: keep each image's IoUs and largest box per cut level for per-image output.
        backend: region rule, ``cc`` or ``contours`` (see :mod:`wsol.localize`).
        engine: ``fast`` (:func:`wsol.box_sweep.sweep_boxes`, one union-find pass per map) or
            ``reference`` (the scikit-image / OpenCV backend level by level); identical results.
    """

    def __init__(
        self,
        thresholds: np.ndarray,
        iou_thresholds=(30, 50, 70),
        keep_records: bool = True,
        backend: str = "cc",
        engine: str = "fast",
    ) -> None:
        if engine not in ENGINES:
            raise WsolError(f"localize.engine must be one of {', '.join(ENGINES)}, got {engine!r}")
        self.backend, self.engine = backend, engine
        self.thresholds = np.asarray(thresholds, dtype=np.float64)
        self.deltas = tuple(int(d) for d in iou_thresholds)
        if 50 not in self.deltas:
            raise ValueError("iou_thresholds must include 50 (MaxBoxAcc and the loc metrics use δ=50)")
        shape = (len(MODES), len(self.thresholds), len(self.deltas))
        self.hits = np.zeros(shape, dtype=np.int64)
        self.hits_top1 = np.zeros(shape, dtype=np.int64)
        self.hits_top5 = np.zeros(shape, dtype=np.int64)
        self.count = 0
        self.fallbacks = 0  # cut levels the fast engine handed to the reference backend
        self.has_classes = True
        self.keep_records = keep_records
        self._records: list[tuple[np.ndarray, ...]] = []

    def update(
        self,
        maps_u8: np.ndarray,
        gt_boxes: np.ndarray,
        gt_valid: np.ndarray,
        top1_correct: np.ndarray | None = None,
        top5_correct: np.ndarray | None = None,
    ) -> None:
        """Add a batch: maps ``[B, H, W]`` uint8, GT boxes ``[B, K, 4]`` with ``gt_valid [B, K]``, flags ``[B]``.

        Without class flags (maps from files) only the GT-known metrics are computed.
        """
        if top1_correct is None or top5_correct is None:
            self.has_classes = False
            top1_correct = top5_correct = np.zeros(len(maps_u8), dtype=bool)
        peaks = maps_u8.reshape(len(maps_u8), -1).max(axis=1)
        levels = threshold_levels(self.thresholds, peaks)  # [B, T]
        sweep = ENGINES[self.engine](maps_u8, levels, gt_boxes, gt_valid, self.backend)
        delta = np.array(self.deltas, dtype=np.float64) / 100
        top1 = np.asarray(top1_correct, dtype=bool)[:, None, None]
        top5 = np.asarray(top5_correct, dtype=bool)[:, None, None]
        for m, ious in enumerate((sweep.iou_largest, sweep.iou_all)):
            hit = ious[sweep.index][:, :, None] >= delta  # [B, T, D]
            self.hits[m] += hit.sum(axis=0)
            self.hits_top1[m] += (hit & top1).sum(axis=0)
            self.hits_top5[m] += (hit & top5).sum(axis=0)
        if self.keep_records:
            self._records.append((peaks, sweep.offsets, sweep.level, sweep.iou_largest, sweep.iou_all, sweep.box))
        self.fallbacks += sweep.fallbacks
        self.count += len(maps_u8)

    def merge(self, other: BoxAccumulator) -> None:
        """Add another accumulator's counts (shards of one dataset); records are appended."""
        if not np.array_equal(self.thresholds, other.thresholds) or self.deltas != other.deltas:
            raise ValueError("cannot merge accumulators with different thresholds or δ")
        self.hits += other.hits
        self.hits_top1 += other.hits_top1
        self.hits_top5 += other.hits_top5
        self.count += other.count
        self.fallbacks += other.fallbacks
        self.has_classes &= other.has_classes
        self._records.extend(other._records)

    def box_acc(self, mode: str = "largest") -> np.ndarray:
        """BoxAcc ``[T, D]`` in percent."""
        return 100.0 * self.hits[MODES.index(mode)] / max(self.count, 1)

    def best_threshold_index(self) -> int:
        """Index of the threshold maximising GT-known loc (δ = 50, largest component); first on ties."""
        return int(np.argmax(self.hits[MODES.index("largest"), :, self.deltas.index(50)]))

    def compute(self) -> dict[str, object]:
        """MaxBoxAcc, MaxBoxAccV2 and its per-δ parts with their thresholds, and the loc metrics."""
        if self.count == 0:
            raise ValueError("no images were accumulated")
        d50 = self.deltas.index(50)
        largest, every = self.box_acc("largest"), self.box_acc("all")
        best = self.best_threshold_index()
        n = self.count
        v2_best = every.argmax(axis=0)
        out: dict[str, object] = {
            "maxboxacc": float(largest[:, d50].max()),
            "maxboxacc_threshold": float(self.thresholds[largest[:, d50].argmax()]),
            "maxboxacc_v2": float(np.mean(every.max(axis=0))),
            "gt_known_loc": 100.0 * self.hits[0, best, d50] / n,
            "top1_loc": 100.0 * self.hits_top1[0, best, d50] / n,
            "top5_loc": 100.0 * self.hits_top5[0, best, d50] / n,
            "loc_threshold": float(self.thresholds[best]),
        }
        for j, d in enumerate(self.deltas):
            out[f"maxboxacc_v2_iou{d}"] = float(every[v2_best[j], j])
            out[f"maxboxacc_v2_iou{d}_threshold"] = float(self.thresholds[v2_best[j]])
        if self.has_classes:
            out["top1_loc_err"] = 100.0 - out["top1_loc"]
            out["top5_loc_err"] = 100.0 - out["top5_loc"]
        else:
            del out["top1_loc"], out["top5_loc"]
        return {k: float(v) for k, v in out.items()}

    def curves(self) -> list[dict[str, float]]:
        """BoxAcc (GT-known) for every threshold, mode and δ, as rows."""
        rows = []
        for mode in MODES:
            acc = self.box_acc(mode)
            for t, thr in enumerate(self.thresholds):
                for j, d in enumerate(self.deltas):
                    rows.append({"threshold": float(thr), "mode": mode, "iou": d, "box_acc": float(acc[t, j])})
        return rows

    def image_results(self) -> list[dict[str, object]]:
        """Per image, at the loc threshold: best IoU (largest / all components) and the largest box."""
        t = self.thresholds[self.best_threshold_index()]
        out = []
        for peaks, offsets, level, iou_largest, iou_all, box in self._records:
            for b, peak in enumerate(peaks):
                lo = offsets[b]
                j = lo + int(np.searchsorted(level[lo : offsets[b + 1]], int(np.float64(t) * np.float64(peak))))
                row = {"iou_largest": float(iou_largest[j]), "iou_all": float(iou_all[j])}
                out.append({**row, "box": [int(v) for v in box[j]]})
        return out
