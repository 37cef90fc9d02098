"""Every metric of an evaluation from its batch results, merged in batch order.

:func:`finalize` is the one place the numbers of a run are computed: the CLI's loop, a resumed run, merged shards and
the Python API's metric objects (:class:`wsol.metrics.metric.WSOLMetrics`) all end in it, so they agree bit for bit.
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ..errors import WsolError
from .batch import BatchResult
from .bootstrap import LEVEL, images_key, percentile_interval, resample_weights, weighted_sums
from .classification import topk_correct
from .extra import LOC_ERRORS, class_max_box_acc, loc_errors

__all__ = ["EvalResult", "finalize"]


@dataclass
class EvalResult:
    """Everything a run writes: metrics, per-image rows, curves and run facts."""

    metrics: dict[str, float]
    images: list[dict[str, object]]
    curves: list[dict[str, float]]
    info: dict[str, object] = field(default_factory=dict)
    samples: dict[str, np.ndarray] = field(default_factory=dict)  # each metric over the bootstrap resamples [R]


def _image_rows(result: BatchResult) -> list[dict[str, object]]:
    rows = []
    for j, image_id in enumerate(result.ids):
        row: dict[str, object] = {"id": image_id, "label": int(result.labels[j])}
        if result.top5 is not None:
            top5 = result.top5[j].tolist()
            row.update(prediction=top5[0], top5=" ".join(map(str, top5)), target=int(result.targets[j]))
        row["flat_map"] = bool(result.flat[j])
        rows.append(row)
    return rows


def finalize(meta: dict, results: list[BatchResult], seconds: float = 0.0) -> EvalResult:
    """Merge batch results in batch order and compute every metric (``results`` are left unchanged)."""
    n_images = sum(r.n_images for r in results)
    extra = meta.get("extra") or ()
    skipped = Counter(meta["dataset_skipped"])
    skipped_ids = [tuple(x) for x in meta["dataset_skipped_ids"]]
    for r in results:
        skipped.update(reason for _, reason in r.skipped)
        skipped_ids += r.skipped
    if n_images == 0:
        raise WsolError(f"every image was skipped ({dict(skipped)})")
    scored = [r for r in results if r.n_images]
    # merged into copies of the first batch's accumulators: the batch results stay as they were (an API object's
    # compute() may be called again, after more updates)
    boxes, pxap, pointing = (copy.deepcopy(a) for a in (scored[0].boxes, scored[0].pxap, scored[0].pointing))
    for r in scored[1:]:
        for acc, part in ((boxes, r.boxes), (pxap, r.pxap), (pointing, r.pointing)):
            if acc is not None:
                acc.merge(part)
    rows = [row for r in scored for row in _image_rows(r)]
    metrics: dict[str, float] = {}
    means = _per_image_values(scored)
    metrics.update({k: 100.0 * math.fsum(v.tolist()) / n_images for k, v in means.items() if k.endswith("_cls")})
    if boxes is not None:
        metrics.update(boxes.compute())
        metrics.update(pointing.compute())
        if meta["target"] == "top1":  # the maps explain the prediction: the GT-class metrics are not defined
            for key in ("gt_known_loc", "top5_loc", "top5_loc_err", "pointing_game", "energy_pointing_game"):
                metrics.pop(key, None)
        for row, res in zip(rows, boxes.image_results(), strict=True):
            row.update(res)
        if boxes.has_classes:
            _class_extras(meta, metrics, rows, boxes)
    if pxap is not None:
        metrics["pxap"] = pxap.compute()
        if "piou" in extra:
            metrics.update(pxap.piou())
    metrics.update({k: 100.0 * math.fsum(v.tolist()) / n_images for k, v in means.items() if k in scored[0].faith})
    ids = [i for r in scored for i in r.ids]
    samples = _bootstrap(meta, n_images, metrics, means, boxes, pointing, pxap)
    info = {
        "images": n_images,
        "skipped": dict(skipped),
        "skipped_ids": [{"id": i, "reason": r} for i, r in skipped_ids],
        "boxes_clipped": meta["boxes_clipped"],
        "flat_maps": int(sum(r.flat.sum() for r in results)),
        "size_mismatch": sum(len(r.size_mismatch) for r in results),
        "size_mismatch_ids": [i for r in results for i in r.size_mismatch],
        "reference_levels": boxes.fallbacks if boxes is not None else 0,
        **{k: meta[k] for k in ("layer", "target", "backend", "device")},
        "classes_from": meta.get("classes_from"),
        "num_thresholds": len(meta["thresholds"]),
        "maps": meta.get("maps"),
        "seconds": round(seconds, 3),
    }
    if samples:
        info["ci"] = {k: list(percentile_interval(v)) for k, v in samples.items()}
        info["bootstrap"] = {**meta["bootstrap"], "level": LEVEL, "images_key": images_key(ids)}
    return EvalResult(metrics=metrics, images=rows, curves=boxes.curves() if boxes else [], info=info,
                      samples=samples)


def _class_extras(meta: dict, metrics: dict, rows: list[dict], boxes) -> None:
    """The opt-in box metrics that need classes (``eval.extra``, :mod:`wsol.metrics.extra`): top-k MaxBoxAcc and
    TS-CAM's top-1 error decomposition (with each image's kind of failure in its row, ``loc_error``)."""
    extra = meta.get("extra") or ()
    if "top1_maxboxacc" in extra:
        found = class_max_box_acc(boxes)
        if meta["target"] == "top1":  # maps of the prediction: a GT class in the top 5 is not what they explain
            found = {k: v for k, v in found.items() if not k.startswith("top5")}
        metrics.update(found)
    if "loc_errors" in extra:
        shares, kinds = loc_errors(boxes)
        metrics.update(shares)
        for row, kind in zip(rows, kinds.tolist(), strict=True):
            row["loc_error"] = LOC_ERRORS[kind] if kind >= 0 else ""


def _per_image_values(scored: list[BatchResult]) -> dict[str, np.ndarray]:
    """The metrics that are means of a value per image, each image's value in batch order: top-1 / top-5
    classification hits (when every image has predictions: the model's, a classifier's or a file's) and the
    faithfulness values."""
    out: dict[str, np.ndarray] = {}
    if all(r.top5 is not None for r in scored):
        labels, top5 = np.concatenate([r.labels for r in scored]), np.concatenate([r.top5 for r in scored])
        out.update(top1_cls=topk_correct(top5, labels, 1), top5_cls=topk_correct(top5, labels, 5))
    out.update({k: np.concatenate([r.faith[k] for r in scored]) for k in scored[0].faith})
    return out


def _bootstrap(meta: dict, n_images: int, metrics: dict, means: dict[str, np.ndarray], boxes, pointing, pxap) -> dict:
    """Every metric over ``meta['bootstrap']`` resamples of the images (:mod:`wsol.metrics.bootstrap`): ``{}``
    when off. Only the metrics the run reports; MaxBoxAcc and V2 re-choose their thresholds per resample;
    ``means``: :func:`_per_image_values`."""
    settings = meta.get("bootstrap") or {}
    if settings.get("resamples", 0) < 2:
        return {}
    weights = resample_weights(n_images, settings["resamples"], settings["seed"])
    keys = list(means)
    sums = weighted_sums(weights, [np.stack([means[k] for k in keys], axis=1)]) if keys else None
    resampled = {k: 100.0 * sums[:, j] / n_images for j, k in enumerate(keys)}
    samples = {k: v for k, v in resampled.items() if k.endswith("_cls")}
    extra = meta.get("extra") or ()
    if boxes is not None:
        samples.update(boxes.bootstrap(weights, class_parts="top1_maxboxacc" in extra))
        samples.update(pointing.bootstrap(weights))
    if pxap is not None:
        samples.update(pxap.bootstrap(weights, piou="piou" in extra))
    samples.update({k: v for k, v in resampled.items() if not k.endswith("_cls")})
    return {k: v for k, v in samples.items() if k in metrics}
