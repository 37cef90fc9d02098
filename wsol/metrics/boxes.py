"""Box metrics: BoxAcc over a threshold sweep, MaxBoxAcc (V1), MaxBoxAccV2, top-1/top-5/GT-known loc.

Definitions (Choe et al., *Evaluating WSOL Right*, CVPR 2020, and its reference code):
- IoU with the inclusive pixel convention, area ``(x1 - x0 + 1)(y1 - y0 + 1)``;
- an image is a hit at ``(t, δ)`` when the best IoU over (its boxes at ``t``) × (its GT boxes) is ``≥ δ/100``;
- BoxAcc(t, δ) = hits / images; MaxBoxAcc = max over one dataset-wide ``t`` of BoxAcc(t, 50) with the
  largest component; MaxBoxAccV2 = mean over δ ∈ {30, 50, 70} of max_t BoxAcc(t, δ) with all components;
- top-1 loc = hit ∧ top-1 class correct; top-5 loc = hit ∧ GT class in the top 5; GT-known loc = hit;
  all three at the threshold that maximises GT-known loc (δ = 50, largest component), which in
  fixed-threshold mode is the one threshold.

The accumulator receives stage 4's results (:class:`wsol.localize.SweepResult`), never maps or config.
It keeps integer hit counts, which merge across shards by summing, and a compact record per image
(:class:`BoxRecords`: its map's peak, and at each of its distinct cut levels the largest region's box
and the box of the region closest to a GT box, with its GT boxes): the per-image output at the
threshold chosen at the end is read from them, and the counts are recomputed from them exactly
(:meth:`BoxAccumulator.from_records`) when a run folder's partial results are loaded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..localize import SweepResult, box_iou, threshold_levels
from ..localize.sweep import sweep_levels
from .bootstrap import weighted_sums
from .extra import resampled_class_max

__all__ = ["BoxAccumulator", "BoxRecords", "MODES", "resampled_box_metrics"]

MODES = ("largest", "all")


def _small(array: np.ndarray) -> np.ndarray:
    """Non-negative box coordinates in the smallest unsigned type that holds them."""
    array = np.asarray(array)
    return array.astype(np.uint8 if not array.size or array.max() < 256 else np.uint16)


@dataclass
class BoxRecords:
    """One batch's compact per-image box results (a few hundred bytes per image at 1,000 thresholds).

    Image ``b`` owns ``largest[o_b:o_{b+1}]`` and ``best[o_b:o_{b+1}]``, one row per distinct cut level of
    its thresholds in ascending order (the offsets follow from ``peaks`` and the thresholds), and
    ``gt[g_b:g_{b+1}]`` with ``g`` the cumulative ``gt_count``.
    """

    peaks: np.ndarray  # uint8 [B]: the uint8 map's maximum
    largest: np.ndarray  # uint8/16 [N, 4]: the largest region's box at each level
    best: np.ndarray  # uint8/16 [N, 4]: a region box with the best IoU at each level
    gt: np.ndarray  # uint8/16 [G, 4]: the GT boxes
    gt_count: np.ndarray  # int64 [B]
    top1: np.ndarray  # bool [B]
    top5: np.ndarray  # bool [B]

    @classmethod
    def from_sweep(cls, sweep: SweepResult, peaks, gt_boxes, gt_valid, top1, top5) -> BoxRecords:
        valid = np.asarray(gt_valid, dtype=bool)
        return cls(
            np.asarray(peaks, dtype=np.uint8), _small(sweep.box), _small(sweep.best_box),
            _small(np.asarray(gt_boxes)[valid]), valid.sum(axis=1).astype(np.int64),
            np.asarray(top1, dtype=bool), np.asarray(top5, dtype=bool),
        )

    def arrays(self) -> dict[str, np.ndarray]:
        return dict(vars(self))

    def levels(self, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(offsets [B + 1], index [B, T])`` of the entries, as :func:`~wsol.localize.sweep.sweep_levels`."""
        offsets, _, index = sweep_levels(threshold_levels(thresholds, self.peaks))
        return offsets, index

    def ious(self, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(iou_largest [N], iou_all [N])``: each level's boxes against their image's GT boxes, by
        :func:`~wsol.localize.box_iou` (bit for bit the engine's values)."""
        offsets, _ = self.levels(thresholds)
        owners = np.repeat(np.arange(len(self.peaks)), np.diff(offsets))
        return self._best_ious(self.largest, owners), self._best_ious(self.best, owners)

    def at(self, thresholds: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each image at threshold index ``t``: ``(iou_largest [B], iou_all [B], largest box [B, 4])``."""
        entries = self.levels(thresholds)[1][:, t]
        owners = np.arange(len(self.peaks))
        box = self.largest[entries].astype(np.int64)
        return self._best_ious(box, owners), self._best_ious(self.best[entries], owners), box

    def _best_ious(self, boxes: np.ndarray, owners: np.ndarray) -> np.ndarray:
        """The best IoU of each box ``[N, 4]`` with the GT boxes of its image ``owners [N]``."""
        k = max(int(self.gt_count.max(initial=0)), 1)
        gt, valid = np.zeros((len(self.peaks), k, 4), np.int64), np.arange(k)[None, :] < self.gt_count[:, None]
        gt[valid] = self.gt
        ious = box_iou(boxes.astype(np.int64)[:, None, :], gt[owners])[:, 0]  # [N, K]
        return np.where(valid[owners], ious, -np.inf).max(axis=1)


def resampled_box_metrics(
    sums: np.ndarray, thresholds: int, deltas: tuple[int, ...], n: int, has_classes: bool = True
) -> dict[str, np.ndarray]:
    """The box metrics of each resample from its hit sums ``[R, (D + 3)·T]`` (the columns of
    :meth:`BoxAccumulator.image_hits` summed with the resample's weights), choosing the thresholds again in each
    resample as on the whole set: MaxBoxAcc = max_t of the largest-region BoxAcc(t, 50); each MaxBoxAccV2 part
    = max_t of the all-regions BoxAcc(t, δ); GT-known / top-1 / top-5 loc at the resample's own best GT-known
    threshold (the first on ties)."""
    t, d = thresholds, len(deltas)
    largest, every = sums[:, :t], sums[:, t : (d + 1) * t].reshape(-1, d, t)
    top1, top5 = sums[:, (d + 1) * t : (d + 2) * t], sums[:, (d + 2) * t :]
    rows, best = np.arange(len(sums)), largest.argmax(axis=1)
    out = {"maxboxacc": 100.0 * largest.max(axis=1) / n, "gt_known_loc": 100.0 * largest[rows, best] / n}
    parts = 100.0 * every.max(axis=2) / n  # [R, D]
    out["maxboxacc_v2"] = parts.mean(axis=1)
    out.update({f"maxboxacc_v2_iou{delta}": parts[:, j] for j, delta in enumerate(deltas)})
    if has_classes:
        out["top1_loc"], out["top5_loc"] = 100.0 * top1[rows, best] / n, 100.0 * top5[rows, best] / n
        out["top1_loc_err"], out["top5_loc_err"] = 100.0 - out["top1_loc"], 100.0 - out["top5_loc"]
    return out


class BoxAccumulator:
    """Integer hit counts per (mode, threshold, δ) and compact per-image records.

    Args:
        thresholds: ``[T]`` thresholds in ``[0, 1)``.
        iou_thresholds: δ values in percent (must include 50).
    """

    def __init__(self, thresholds: np.ndarray, iou_thresholds=(30, 50, 70), strict_class_loc: bool = False) -> None:
        self.thresholds = np.asarray(thresholds, dtype=np.float64)
        self.deltas = tuple(int(d) for d in iou_thresholds)
        self.strict_class_loc = bool(strict_class_loc)  # top-1 / top-5 loc hit at IoU > δ (TS-CAM), not ≥ δ
        if 50 not in self.deltas:
            raise ValueError("iou_thresholds must include 50 (MaxBoxAcc and the loc metrics use δ=50)")
        shape = (len(MODES), len(self.thresholds), len(self.deltas))
        self.hits = np.zeros(shape, dtype=np.int64)
        self.hits_top1 = np.zeros(shape, dtype=np.int64)
        self.hits_top5 = np.zeros(shape, dtype=np.int64)
        self.count = 0
        self.fallbacks = 0  # cut levels the fast engine handed to the reference backend
        self.has_classes = True
        self.records: list[BoxRecords] = []

    def _add(self, ious: tuple[np.ndarray, np.ndarray], index: np.ndarray, top1: np.ndarray, top5: np.ndarray) -> None:
        delta = np.array(self.deltas, dtype=np.float64) / 100
        for m, level_ious in enumerate(ious):
            hit = level_ious[index][:, :, None] >= delta  # [B, T, D]
            class_hit = level_ious[index][:, :, None] > delta if self.strict_class_loc else hit
            self.hits[m] += hit.sum(axis=0)
            self.hits_top1[m] += (class_hit & top1[:, None, None]).sum(axis=0)
            self.hits_top5[m] += (class_hit & top5[:, None, None]).sum(axis=0)
        self.count += len(index)

    def update(
        self,
        sweep: SweepResult,
        peaks: np.ndarray,
        gt_boxes: np.ndarray,
        gt_valid: np.ndarray,
        top1_correct: np.ndarray | None = None,
        top5_correct: np.ndarray | None = None,
    ) -> None:
        """Add a batch: its localization (:func:`wsol.localize.localize`), the uint8 maps' maxima ``[B]``, GT boxes
        ``[B, K, 4]`` with ``gt_valid [B, K]``, and class flags ``[B]``.

        Without class flags (maps from files) only the GT-known metrics are computed.
        """
        n = len(sweep.index)
        if top1_correct is None or top5_correct is None:
            self.has_classes = False
            top1_correct = top5_correct = np.zeros(n, dtype=bool)
        top1, top5 = np.asarray(top1_correct, dtype=bool), np.asarray(top5_correct, dtype=bool)
        self._add((sweep.iou_largest, sweep.iou_all), sweep.index, top1, top5)
        self.records.append(BoxRecords.from_sweep(sweep, peaks, gt_boxes, gt_valid, top1, top5))
        self.fallbacks += sweep.fallbacks

    @classmethod
    def from_records(
        cls, thresholds: np.ndarray, iou_thresholds, records: BoxRecords, has_classes: bool, fallbacks: int,
        strict_class_loc: bool = False,
    ) -> BoxAccumulator:
        """An accumulator rebuilt from a batch's stored records: the counts are recomputed from the boxes."""
        acc = cls(thresholds, iou_thresholds, strict_class_loc)
        acc._add(records.ious(acc.thresholds), records.levels(acc.thresholds)[1], records.top1, records.top5)
        acc.records.append(records)
        acc.has_classes, acc.fallbacks = has_classes, fallbacks
        return acc

    def merge(self, other: BoxAccumulator) -> None:
        """Add another accumulator's counts (shards of one dataset); records are appended."""
        if (not np.array_equal(self.thresholds, other.thresholds) or self.deltas != other.deltas
                or self.strict_class_loc != other.strict_class_loc):
            raise ValueError("cannot merge accumulators with different thresholds, δ or IoU rules")
        self.hits += other.hits
        self.hits_top1 += other.hits_top1
        self.hits_top5 += other.hits_top5
        self.count += other.count
        self.fallbacks += other.fallbacks
        self.has_classes &= other.has_classes
        self.records.extend(other.records)

    def box_acc(self, mode: str = "largest") -> np.ndarray:
        """BoxAcc ``[T, D]`` in percent."""
        return 100.0 * self.hits[MODES.index(mode)] / max(self.count, 1)

    def best_threshold_index(self) -> int:
        """Index of the threshold maximising GT-known loc (δ = 50, largest component); first on ties."""
        return int(np.argmax(self.hits[MODES.index("largest"), :, self.deltas.index(50)]))

    def compute(self) -> dict[str, float]:
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

    def image_hits(self, class_parts: bool = False):
        """Per batch, each image's hits ``[B, (D + 3)·T]`` (bool), threshold-major blocks: with the largest region
        at δ = 50, with all regions at each δ, then the top-1 and top-5 hits (largest region, δ = 50); with
        ``class_parts`` also the top-1, then the top-5 hits with all regions at each δ (``[B, (3D + 3)·T]``, the
        top-k MaxBoxAccV2 of :mod:`.extra`). Recomputed from the records, bit for bit the counts' hits."""
        delta = np.array(self.deltas, dtype=np.float64) / 100
        for records in self.records:
            (iou_largest, iou_all), index = records.ious(self.thresholds), records.levels(self.thresholds)[1]
            largest = iou_largest[index] >= 0.5  # [B, T]
            every = iou_all[index][:, :, None] >= delta  # [B, T, D]
            class_hit = iou_largest[index] > 0.5 if self.strict_class_loc else largest
            blocks = [largest, every.transpose(0, 2, 1).reshape(len(index), -1),
                      class_hit & records.top1[:, None], class_hit & records.top5[:, None]]
            if class_parts:
                every_class = iou_all[index][:, :, None] > delta if self.strict_class_loc else every
                every_class = every_class.transpose(0, 2, 1).reshape(len(index), -1)
                blocks += [every_class & records.top1[:, None], every_class & records.top5[:, None]]
            yield np.concatenate(blocks, axis=1)

    def bootstrap(self, weights: np.ndarray, class_parts: bool = False) -> dict[str, np.ndarray]:
        """Every metric of :meth:`compute` for each resample (``weights [R, n]``, :mod:`.bootstrap`), the thresholds
        chosen again inside each resample (:func:`resampled_box_metrics`); with ``class_parts`` (and classes) also
        the top-k MaxBoxAcc of :func:`wsol.metrics.extra.class_max_box_acc`."""
        sums = weighted_sums(weights, self.image_hits(class_parts and self.has_classes))
        out = resampled_box_metrics(sums, len(self.thresholds), self.deltas, self.count, self.has_classes)
        if class_parts and self.has_classes:
            out.update(resampled_class_max(sums, len(self.thresholds), self.deltas, self.count))
        return out

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
        best = self.best_threshold_index()
        out = []
        for records in self.records:
            for iou_largest, iou_all, box in zip(*records.at(self.thresholds, best), strict=True):
                out.append({"iou_largest": float(iou_largest), "iou_all": float(iou_all), "box": box.tolist()})
        return out
