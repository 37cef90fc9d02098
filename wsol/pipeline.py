"""One evaluation: dataset → scores (a CAM method, or maps from files) → maps → metrics.

A plain function of its config; :mod:`wsol.run` wraps it for the command line.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader

from .cams import build_method
from .cams.from_files import load_maps, save_maps
from .data import build_dataset, collate
from .data.base import Batch
from .errors import WsolError
from .localize import minmax_normalize, quantize, sweep_thresholds, upsample
from .metrics import BoxAccumulator, PointingAccumulator, PxAPAccumulator, topk_correct
from .models import build_model, default_layer

__all__ = ["EvalResult", "evaluate", "resolve_device", "thresholds_from_config"]

log = logging.getLogger(__name__)


@dataclass
class EvalResult:
    """Everything a run writes: metrics, per-image rows, curves and run facts."""

    metrics: dict[str, float]
    images: list[dict[str, object]]
    curves: list[dict[str, float]]
    info: dict[str, object] = field(default_factory=dict)


@dataclass
class _Scores:
    """One batch's maps at feature (or file) resolution, with what the classifier said, if any."""

    maps: list[torch.Tensor] | torch.Tensor  # [B, h, w], or per-image [h, w] maps of mixed sizes
    logits: torch.Tensor | None = None
    targets: torch.Tensor | None = None


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise WsolError(f"device={name} but no CUDA GPU is available (use device=cpu or device=auto)")
    return torch.device(name)


def thresholds_from_config(localize: dict) -> np.ndarray:
    """``[T]`` thresholds: the sweep ``arange(0, 1, interval)`` or the one fixed threshold."""
    mode = localize.get("mode", "sweep")
    if mode == "sweep":
        return sweep_thresholds(float(localize["interval"]))
    if mode == "fixed":
        t = float(localize["threshold"])
        if not 0 <= t < 1:
            raise WsolError(f"localize.threshold must be in [0, 1), got {t}")
        return np.array([t])
    raise WsolError(f"localize.mode must be sweep or fixed, got {mode!r}")


class _ModelScorer:
    """Normalise images on the device and run a CAM method."""

    def __init__(self, cfg: dict, device: torch.device) -> None:
        model_cfg, method_cfg = cfg["model"], cfg["method"]
        self.model = build_model(
            model_cfg["name"],
            weights=model_cfg.get("weights"),
            checkpoint=model_cfg.get("checkpoint"),
            num_classes=model_cfg.get("num_classes"),
        )
        self.layer = model_cfg.get("layer") or default_layer(self.model.module)
        self.model.module.to(device)
        kwargs = {k: v for k, v in method_cfg.items() if k != "name"}
        self.method = build_method(method_cfg["name"], self.model.module, self.layer, **kwargs)
        self.num_classes = self.model.num_classes
        self.target = cfg["eval"].get("target", "gt")
        self.mean = torch.tensor(self.model.mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(self.model.std, device=device).view(1, 3, 1, 1)
        self.device = device

    def __call__(self, batch: Batch) -> tuple[_Scores, list[str | None]]:
        images = (batch.images.to(self.device, non_blocking=True).float() / 255 - self.mean) / self.std
        out = self.method(images, batch.labels.to(self.device), target=self.target)
        return _Scores(out.maps, out.logits, out.targets), [None] * len(batch)


class _FileScorer:
    """Maps produced elsewhere, read from ``method.maps_dir`` (see :mod:`wsol.cams.from_files`)."""

    layer = None

    def __init__(self, cfg: dict, device: torch.device) -> None:
        self.maps_dir = cfg["method"].get("maps_dir")
        if not self.maps_dir or not os.path.isdir(self.maps_dir):
            raise WsolError(f"method.maps_dir does not exist: {self.maps_dir}")
        self.num_classes = int(cfg["model"].get("num_classes") or 1000)
        self.device = device

    def __call__(self, batch: Batch) -> tuple[_Scores, list[str | None]]:
        maps, reasons = load_maps(self.maps_dir, batch.ids)
        return _Scores([m.to(self.device) for m in maps if m is not None]), reasons


def _eval_maps(scores: _Scores, size: int, resize: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Upsample each map to ``size`` and min-max normalise: ``([B, S, S] in [0, 1], flat [B])``."""
    if isinstance(scores.maps, torch.Tensor):
        maps = upsample(scores.maps, size, resize)
    else:
        maps = torch.stack([upsample(m[None], size, resize)[0] for m in scores.maps])
    return minmax_normalize(maps)


def evaluate(cfg: dict) -> EvalResult:
    """Run one evaluation from a plain config dict (the Hydra config, resolved)."""
    device = resolve_device(cfg.get("device", "auto"))
    loc_cfg, eval_cfg = cfg["localize"], cfg["eval"]
    from_files = cfg["method"]["name"] == "from_files"
    scorer = _FileScorer(cfg, device) if from_files else _ModelScorer(cfg, device)

    dataset_cfg = {k: v for k, v in cfg["dataset"].items() if k != "name"}
    dataset = build_dataset(cfg["dataset"]["name"], num_classes=scorer.num_classes, **dataset_cfg)
    if cfg.get("limit"):
        dataset.records = dataset.records[: int(cfg["limit"])]
    has_boxes = any(len(r.boxes) for r in dataset.records)

    thresholds = thresholds_from_config(loc_cfg)
    keep_records = bool(eval_cfg.get("records", True))
    backend = loc_cfg.get("backend", "cc")
    boxes_acc = BoxAccumulator(thresholds, eval_cfg.get("iou_thresholds", (30, 50, 70)), keep_records, backend)
    pxap_acc = PxAPAccumulator(float(loc_cfg.get("interval") or 0.01)) if dataset.has_masks else None
    pointing_acc = PointingAccumulator(float(eval_cfg.get("pointing_tolerance", 15))) if has_boxes else None
    maps_dir = cfg.get("maps_dir") if cfg.get("save_maps") else None
    if cfg.get("save_maps") and not maps_dir:
        raise WsolError("save_maps=true needs maps_dir=/path/to/folder")

    loader = DataLoader(
        dataset,
        batch_size=int(cfg.get("batch_size", 32)),
        num_workers=int(cfg.get("num_workers", 0)),
        collate_fn=collate,
        pin_memory=device.type == "cuda",
        shuffle=False,
    )
    image_size = int(cfg["dataset"].get("image_size", 224))
    skipped = Counter(dataset.skipped)
    skipped_ids = list(dataset.skipped_ids)
    rows: list[dict[str, object]] = []
    n_images = n_top1 = n_top5 = n_flat = 0
    start = time.perf_counter()
    for batch in loader:
        for image_id, reason in batch.skipped:
            skipped[reason] += 1
            skipped_ids.append((image_id, reason))
        if len(batch) == 0:
            continue
        scores, reasons = scorer(batch)
        keep = np.array([r is None for r in reasons])
        for image_id, reason in zip(batch.ids, reasons, strict=True):
            if reason is not None:
                skipped[reason] += 1
                skipped_ids.append((image_id, reason))
        if not keep.any():
            continue
        maps, flat = _eval_maps(scores, image_size, loc_cfg.get("resize", "bicubic"))
        labels = batch.labels[keep].to(maps.device)
        top1 = top5 = None
        if scores.logits is not None:
            top1 = topk_correct(scores.logits, labels, 1)
            top5 = topk_correct(scores.logits, labels, 5)
            n_top1 += int(top1.sum())
            n_top5 += int(top5.sum())
        maps_np = maps.cpu().numpy()
        gt_boxes, gt_valid = batch.boxes[keep].numpy(), batch.box_valid[keep].numpy()
        if has_boxes:
            boxes_acc.update(
                quantize(maps).cpu().numpy(),
                gt_boxes,
                gt_valid,
                None if top1 is None else top1.cpu().numpy(),
                None if top5 is None else top5.cpu().numpy(),
            )
            pointing_acc.update(maps_np, flat.cpu().numpy(), gt_boxes, gt_valid)
        if pxap_acc is not None:
            pxap_acc.update(maps_np, batch.masks[keep].numpy())
        if maps_dir:
            save_maps(maps_dir, [i for i, k in zip(batch.ids, keep, strict=True) if k], maps_np)
        n_images += int(keep.sum())
        n_flat += int(flat.sum())
        rows.extend(_image_rows(batch, keep, scores, flat))
    elapsed = time.perf_counter() - start
    if n_images == 0:
        raise WsolError(f"{dataset.name}: every image was skipped ({dict(skipped)})")

    metrics: dict[str, float] = {}
    if not from_files:
        metrics.update(top1_cls=100.0 * n_top1 / n_images, top5_cls=100.0 * n_top5 / n_images)
    if has_boxes:
        metrics.update(boxes_acc.compute())
        metrics.update(pointing_acc.compute())
        if cfg["eval"].get("target", "gt") == "top1" and not from_files:
            # the maps explain the prediction: GT-known and top-5 loc are not defined
            for key in ("gt_known_loc", "top5_loc", "top5_loc_err"):
                metrics.pop(key, None)
        if keep_records:
            for row, res in zip(rows, boxes_acc.image_results(), strict=True):
                row.update(res)
    if pxap_acc is not None:
        metrics["pxap"] = pxap_acc.compute()
    info = {
        "images": n_images,
        "skipped": dict(skipped),
        "skipped_ids": [{"id": i, "reason": r} for i, r in skipped_ids],
        "boxes_clipped": dataset.boxes_clipped,
        "flat_maps": n_flat,
        "layer": scorer.layer,
        "target": "files" if from_files else cfg["eval"].get("target", "gt"),
        "backend": backend,
        "device": str(device),
        "seconds": round(elapsed, 3),
        "images_per_second": round(n_images / elapsed, 2) if elapsed > 0 else None,
        "num_thresholds": len(thresholds),
    }
    log.info(
        "%d images in %.1f s (%.1f img/s), %d skipped",
        n_images, elapsed, n_images / max(elapsed, 1e-9), sum(skipped.values()),
    )
    return EvalResult(metrics=metrics, images=rows, curves=boxes_acc.curves() if has_boxes else [], info=info)


def _image_rows(batch: Batch, keep: np.ndarray, scores: _Scores, flat: torch.Tensor) -> list[dict[str, object]]:
    kept = [i for i in range(len(batch)) if keep[i]]
    top5 = None
    if scores.logits is not None:
        top5 = scores.logits.topk(min(5, scores.logits.shape[1]), dim=1).indices.cpu().tolist()
    rows = []
    for j, i in enumerate(kept):
        row: dict[str, object] = {"id": batch.ids[i], "label": int(batch.labels[i])}
        if top5 is not None:
            row.update(prediction=top5[j][0], top5=" ".join(map(str, top5[j])), target=int(scores.targets[j]))
        row["flat_map"] = bool(flat[j])
        rows.append(row)
    return rows
