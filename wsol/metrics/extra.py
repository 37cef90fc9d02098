"""Metrics of later WSOL code bases, opt-in with ``eval.extra`` and computed from the protocol's own accumulators
(docs/protocols.md):

- ``top1_maxboxacc`` — top-1 / top-5 MaxBoxAcc: for each δ, the best over the thresholds of the share of images
  whose box hits (IoU ≥ δ, or > δ under ``eval.strict_class_loc``) *and* whose class is right (top-1; GT in the
  top 5), the threshold chosen for these counts themselves (BagCAMs ``BoxEvaluator.compute_top1``; F-CAM's
  ``wsol_metrics.BoxEvaluator.compute``, ``self.top1`` / ``self.top5``). ``top1_maxboxacc`` takes the largest
  region at δ = 50 as MaxBoxAcc does; ``top1_maxboxacc_v2`` the mean over δ of every region's, as MaxBoxAccV2
  (with its parts ``top1_maxboxacc_v2_iou{δ}``); the same for top-5. Top-1 loc, by contrast, is read at the
  threshold that maximises GT-known loc.
- ``loc_errors`` — TS-CAM's top-1 error decomposition (``lib/cams_deit.py: get_badcase_detail``): each top-1 loc
  failure at the loc threshold (largest region) is, in this order, *wrong class* (top-1 class ≠ GT), *multi
  instance* (more than one GT box, and more than one with IoG > 0.3), *part* (IoB > 0.5 with the best-IoU GT box,
  the first on ties), *too large* (IoG ≥ 0.7 with it), else *wrong location*; ``loc_errors_<kind>`` is each kind's
  share of the failures in percent (the five sum to 100; all 0 without a failure). IoG = intersection / GT box
  area, IoB = intersection / predicted box area, inclusive pixels. A failure is what top-1 loc counts as one (so the
  shares split ``top1_loc_err`` exactly); TS-CAM's own rule is IoU > 0.5, ``eval.strict_class_loc=true``.
- ``piou`` — pixel IoU from PxAP's histograms (BagCAMs ``MaskEvaluator.compute``): at each curve point
  ``IoU = TP / (TP + FP + FN)`` over the dataset's pixels; ``piou_max`` its best, ``piou_mean`` its mean over
  every curve point (the two above 1 included, as that code does).
"""

from __future__ import annotations

import numpy as np

from ..config import EXTRA_METRICS
from ..localize import box_overlaps

__all__ = ["EXTRA_METRICS", "LOC_ERRORS", "TABLE_KEYS", "class_max_box_acc", "loc_error_kinds", "loc_errors",
           "pixel_iou", "resampled_class_max"]

LOC_ERRORS = ("wrong_class", "multi_instance", "part", "too_large", "wrong_location")
# each extra's columns in a run's table, after the protocol's
TABLE_KEYS = {
    "top1_maxboxacc": ("top1_maxboxacc", "top5_maxboxacc", "top1_maxboxacc_v2", "top5_maxboxacc_v2"),
    "loc_errors": tuple(f"loc_errors_{kind}" for kind in LOC_ERRORS),
    "piou": ("piou_max", "piou_mean"),
}


def _class_max(top1: np.ndarray, top5: np.ndarray, deltas: tuple[int, ...], n: int) -> dict[str, np.ndarray]:
    """Top-k MaxBoxAcc from hit counts ``[..., modes, T, D]`` (largest region, every region)."""
    d50, out = deltas.index(50), {}
    for k, hits in (("top1", top1), ("top5", top5)):
        out[f"{k}_maxboxacc"] = 100.0 * hits[..., 0, :, d50].max(axis=-1) / n
        parts = 100.0 * hits[..., 1, :, :].max(axis=-2) / n  # [..., D]
        out[f"{k}_maxboxacc_v2"] = parts.mean(axis=-1)
        out.update({f"{k}_maxboxacc_v2_iou{d}": parts[..., j] for j, d in enumerate(deltas)})
    return out


def class_max_box_acc(acc) -> dict[str, float]:
    """Top-1 / top-5 MaxBoxAcc (and V2) of a :class:`~wsol.metrics.BoxAccumulator` with classes, in percent."""
    out = {k: float(v) for k, v in _class_max(acc.hits_top1, acc.hits_top5, acc.deltas, acc.count).items()}
    out["top1_maxboxacc_threshold"] = float(acc.thresholds[acc.hits_top1[0, :, acc.deltas.index(50)].argmax()])
    return out


def resampled_class_max(sums: np.ndarray, thresholds: int, deltas: tuple[int, ...], n: int) -> dict[str, np.ndarray]:
    """Top-k MaxBoxAcc of each resample from the hit sums ``[R, (3D + 3)·T]`` of
    :meth:`~wsol.metrics.BoxAccumulator.image_hits` with ``class_parts=True`` (the thresholds chosen again)."""
    t, d = thresholds, len(deltas)
    d50 = deltas.index(50)
    blocks = []
    for k, start in (("top1", (d + 1) * t), ("top5", (d + 2) * t)):
        largest = np.zeros((len(sums), t, d))
        largest[:, :, d50] = sums[:, start : start + t]
        offset = (d + 3 + (0 if k == "top1" else d)) * t
        every = sums[:, offset : offset + d * t].reshape(-1, d, t).transpose(0, 2, 1)
        blocks.append(np.stack([largest, every], axis=1))  # [R, 2, T, D]
    return _class_max(blocks[0], blocks[1], deltas, n)


def loc_error_kinds(box: np.ndarray, gt: np.ndarray, gt_valid: np.ndarray, top1: np.ndarray,
                    hit: np.ndarray) -> np.ndarray:
    """Each image's kind of top-1 loc failure, an index into :data:`LOC_ERRORS`, or −1 when top-1 loc holds.

    ``box [B, 4]`` the predicted box, ``gt [B, K, 4]`` with ``gt_valid [B, K]``, ``top1 [B]`` the class flags,
    ``hit [B]`` the box hits (top-1 loc = ``top1 & hit``)."""
    inter, box_area, gt_area = (x[:, 0] for x in box_overlaps(np.asarray(box)[:, None, :], gt))  # [B, K] each
    iou = np.where(gt_valid, inter / (box_area + gt_area - inter), -np.inf)
    best = iou.argmax(axis=1)[:, None]  # TS-CAM: the first GT box of the highest IoU
    iog = inter / gt_area
    multi = (gt_valid.sum(axis=1) > 1) & (((iog > 0.3) & gt_valid).sum(axis=1) > 1)
    part = np.take_along_axis(inter / box_area, best, axis=1)[:, 0] > 0.5
    large = np.take_along_axis(iog, best, axis=1)[:, 0] >= 0.7
    kind = np.select([multi, part, large], [1, 2, 3], default=4)
    return np.where(~top1, 0, np.where(hit, -1, kind))


def loc_errors(acc) -> tuple[dict[str, float], np.ndarray]:
    """``({loc_errors_<kind>: share of the top-1 loc failures in percent}, each image's kind [n])`` of a
    :class:`~wsol.metrics.BoxAccumulator` with classes, at its loc threshold."""
    best = acc.best_threshold_index()
    kinds = []
    for records in acc.records:
        iou, _, box = records.at(acc.thresholds, best)
        k = max(int(records.gt_count.max(initial=0)), 1)
        valid = np.arange(k)[None, :] < records.gt_count[:, None]
        gt = np.zeros((len(records.peaks), k, 4), np.int64)
        gt[valid] = records.gt
        hit = iou > 0.5 if acc.strict_class_loc else iou >= 0.5
        kinds.append(loc_error_kinds(box, gt, valid, records.top1, hit))
    kinds = np.concatenate(kinds) if kinds else np.zeros(0, np.int64)
    counts = np.bincount(kinds[kinds >= 0], minlength=len(LOC_ERRORS))
    total = max(int(counts.sum()), 1)
    return {f"loc_errors_{name}": 100.0 * int(c) / total for name, c in zip(LOC_ERRORS, counts, strict=True)}, kinds


def pixel_iou(fg_hist: np.ndarray, bg_hist: np.ndarray) -> dict[str, np.ndarray]:
    """``{piou_max, piou_mean}`` in percent of PxAP's histograms ``[..., bins]`` (one curve per leading index):
    ``100 · TP / (TP + FP + FN)`` at every curve point, TP and FP counted from the highest bin down."""
    tp = np.cumsum(fg_hist[..., ::-1], axis=-1, dtype=np.float64)
    fp = np.cumsum(bg_hist[..., ::-1], axis=-1, dtype=np.float64)
    fn = tp[..., -1:] - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = 100.0 * tp / (tp + fp + fn)
    return {"piou_max": np.nanmax(iou, axis=-1), "piou_mean": np.nanmean(iou, axis=-1)}
