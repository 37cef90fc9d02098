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

import hashlib

import numpy as np

from ..localize import region_boxes, threshold_levels

__all__ = ["box_iou", "level_region_boxes", "sweep_ious", "BoxAccumulator", "MODES"]

MODES = ("largest", "all")


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


def level_region_boxes(map_u8: np.ndarray, levels: np.ndarray, backend: str = "cc") -> tuple[np.ndarray, ...]:
    """Every region box of ``map_u8 > level`` for each level, concatenated.

    Returns ``(boxes [N, 4], starts [L], largest [L])``: level ``j`` owns ``boxes[starts[j]:starts[j+1]]``
    and its largest region is ``boxes[largest[j]]``.
    """
    per_level = [region_boxes(map_u8 > level, backend) for level in levels]
    counts = np.array([len(b) for b, _ in per_level])
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    largest = starts + np.array([i for _, i in per_level], dtype=np.int64)
    return np.concatenate([b for b, _ in per_level]), starts, largest


def sweep_ious(
    map_u8: np.ndarray, gt_boxes: np.ndarray, levels: np.ndarray, backend: str = "cc", regions=None
) -> dict[str, np.ndarray]:
    """Best IoUs and the largest box at each cut level of one uint8 map.

    Args:
        map_u8: ``[H, W]`` quantised map.
        gt_boxes: ``[K, 4]`` GT boxes in eval space, ``K ≥ 1``.
        levels: ``[L]`` integer cut levels (foreground = ``map_u8 > level``).
        backend: ``cc`` (connected components) or ``contours`` (the reference's, with holes).
        regions: :func:`level_region_boxes` of this map and levels, if already computed.

    Returns:
        ``{"largest": [L], "all": [L]}`` best IoUs (float64) and ``"box": [L, 4]`` the largest
        region's box at each level.
    """
    boxes, starts, largest = regions if regions is not None else level_region_boxes(map_u8, levels, backend)
    ious = box_iou(boxes, gt_boxes).max(axis=1)
    return {"largest": ious[largest], "all": np.maximum.reduceat(ious, starts), "box": boxes[largest]}


class BoxAccumulator:
    """Integer hit counts per (mode, threshold, δ), plus optional per-image records.

    Args:
        thresholds: ``[T]`` thresholds in ``[0, 1)``.
        iou_thresholds: δ values in percent.
        keep_records: keep each image's IoUs and largest box per cut level for per-image output.
        backend: box backend, see :mod:`wsol.localize`.
    """

    def __init__(
        self, thresholds: np.ndarray, iou_thresholds=(30, 50, 70), keep_records: bool = True, backend: str = "cc"
    ) -> None:
        self.backend = backend
        self.thresholds = np.asarray(thresholds, dtype=np.float64)
        self.deltas = tuple(int(d) for d in iou_thresholds)
        if 50 not in self.deltas:
            raise ValueError("iou_thresholds must include 50 (MaxBoxAcc and the loc metrics use δ=50)")
        shape = (len(MODES), len(self.thresholds), len(self.deltas))
        self.hits = np.zeros(shape, dtype=np.int64)
        self.hits_top1 = np.zeros(shape, dtype=np.int64)
        self.hits_top5 = np.zeros(shape, dtype=np.int64)
        self.count = 0
        self.has_classes = True
        self._cache_key: bytes | None = None
        self._cache: tuple[np.ndarray, ...] = ()
        self.keep_records = keep_records
        self._records: list[dict[str, np.ndarray]] = []

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
        delta = np.array(self.deltas, dtype=np.float64) / 100
        for i in range(len(maps_u8)):
            unique, inverse = np.unique(levels[i], return_inverse=True)
            res = sweep_ious(maps_u8[i], gt_boxes[i][gt_valid[i]], unique, regions=self._regions(maps_u8[i], unique))
            for m, mode in enumerate(MODES):
                hit = res[mode][inverse][:, None] >= delta[None, :]  # [T, D]
                self.hits[m] += hit
                self.hits_top1[m] += hit & bool(top1_correct[i])
                self.hits_top5[m] += hit & bool(top5_correct[i])
            if self.keep_records:
                self._records.append({"peak": peaks[i], "levels": unique, **res})
        self.count += len(maps_u8)

    def __getstate__(self) -> dict:
        """Pickle without the per-map region cache (partial results are saved per batch)."""
        return {**self.__dict__, "_cache_key": None, "_cache": ()}

    def _regions(self, map_u8: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, ...]:
        """Region boxes per level, reused when consecutive maps are identical (e.g. a fixed baseline map)."""
        key = hashlib.blake2b(map_u8.tobytes() + levels.tobytes(), digest_size=16).digest()
        if self._cache_key != key:
            self._cache_key, self._cache = key, level_region_boxes(map_u8, levels, self.backend)
        return self._cache

    def merge(self, other: BoxAccumulator) -> None:
        """Add another accumulator's counts (shards of one dataset); records are appended."""
        if not np.array_equal(self.thresholds, other.thresholds) or self.deltas != other.deltas:
            raise ValueError("cannot merge accumulators with different thresholds or δ")
        self.hits += other.hits
        self.hits_top1 += other.hits_top1
        self.hits_top5 += other.hits_top5
        self.count += other.count
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
        for rec in self._records:
            level = int(np.float64(t) * np.float64(rec["peak"]))
            j = int(np.searchsorted(rec["levels"], level))
            out.append(
                {
                    "iou_largest": float(rec["largest"][j]),
                    "iou_all": float(rec["all"][j]),
                    "box": [int(v) for v in rec["box"][j]],
                }
            )
        return out
