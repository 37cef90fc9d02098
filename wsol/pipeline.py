"""One evaluation: dataset → model + method → maps → boxes → metrics. A plain function of its config."""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader

from .cams import build_method
from .data import build_dataset, collate
from .data.base import Batch
from .errors import WsolError
from .localize import minmax_normalize, quantize, sweep_thresholds, upsample
from .metrics import BoxAccumulator, topk_correct
from .models import LoadedModel, build_model, default_layer

__all__ = ["EvalResult", "evaluate", "resolve_device", "thresholds_from_config"]

log = logging.getLogger(__name__)


@dataclass
class EvalResult:
    """Everything a run writes: metrics, per-image rows, curves and run facts."""

    metrics: dict[str, float]
    images: list[dict[str, object]]
    curves: list[dict[str, float]]
    info: dict[str, object] = field(default_factory=dict)


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


def _normalize(images: torch.Tensor, model: LoadedModel) -> torch.Tensor:
    mean = torch.tensor(model.mean, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(model.std, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255 - mean) / std


def evaluate(cfg: dict) -> EvalResult:
    """Run one evaluation from a plain config dict (the Hydra config, resolved)."""
    device = resolve_device(cfg.get("device", "auto"))
    model_cfg, method_cfg, loc_cfg, eval_cfg = cfg["model"], cfg["method"], cfg["localize"], cfg["eval"]
    model = build_model(
        model_cfg["name"],
        weights=model_cfg.get("weights"),
        checkpoint=model_cfg.get("checkpoint"),
        num_classes=model_cfg.get("num_classes"),
    )
    layer = model_cfg.get("layer") or default_layer(model.module)
    model.module.to(device)
    method_kwargs = {k: v for k, v in method_cfg.items() if k != "name"}
    method = build_method(method_cfg["name"], model.module, layer, **method_kwargs)

    dataset_cfg = {k: v for k, v in cfg["dataset"].items() if k != "name"}
    dataset = build_dataset(cfg["dataset"]["name"], num_classes=model.num_classes, **dataset_cfg)
    if cfg.get("limit"):
        dataset.records = dataset.records[: int(cfg["limit"])]
    has_boxes = any(len(r.boxes) for r in dataset.records)
    if not has_boxes:
        raise WsolError(f"{dataset.name}: no GT boxes in this split; box metrics need boxes")

    thresholds = thresholds_from_config(loc_cfg)
    boxes_acc = BoxAccumulator(thresholds, eval_cfg.get("iou_thresholds", (30, 50, 70)), eval_cfg.get("records", True))
    loader = DataLoader(
        dataset,
        batch_size=int(cfg.get("batch_size", 32)),
        num_workers=int(cfg.get("num_workers", 0)),
        collate_fn=collate,
        pin_memory=device.type == "cuda",
        shuffle=False,
    )
    target = eval_cfg.get("target", "gt")
    image_size = int(cfg["dataset"].get("image_size", 224))
    skipped = Counter(dataset.skipped)
    skipped_ids = list(dataset.skipped_ids)
    rows: list[dict[str, object]] = []
    n_top1 = n_top5 = n_flat = 0
    start = time.perf_counter()
    for batch in loader:
        batch: Batch
        for image_id, reason in batch.skipped:
            skipped[reason] += 1
            skipped_ids.append((image_id, reason))
        if len(batch) == 0:
            continue
        images = _normalize(batch.images.to(device, non_blocking=True), model)
        labels = batch.labels.to(device)
        out = method(images, labels, target=target)
        maps, flat = minmax_normalize(upsample(out.maps, image_size, loc_cfg.get("resize", "bicubic")))
        top1 = topk_correct(out.logits, labels, 1)
        top5 = topk_correct(out.logits, labels, 5)
        maps_u8 = quantize(maps).cpu().numpy()
        boxes_acc.update(
            maps_u8, batch.boxes.numpy(), batch.box_valid.numpy(), top1.cpu().numpy(), top5.cpu().numpy()
        )
        n_top1 += int(top1.sum())
        n_top5 += int(top5.sum())
        n_flat += int(flat.sum())
        top5_idx = out.logits.topk(min(5, out.logits.shape[1]), dim=1).indices.cpu().tolist()
        for i, image_id in enumerate(batch.ids):
            rows.append(
                {
                    "id": image_id,
                    "label": int(batch.labels[i]),
                    "prediction": top5_idx[i][0],
                    "top5": " ".join(map(str, top5_idx[i])),
                    "target": int(out.targets[i]),
                    "flat_map": bool(flat[i]),
                }
            )
    elapsed = time.perf_counter() - start
    n = boxes_acc.count
    if n == 0:
        raise WsolError(f"{dataset.name}: every image was skipped ({dict(skipped)})")
    metrics = {"top1_cls": 100.0 * n_top1 / n, "top5_cls": 100.0 * n_top5 / n, **boxes_acc.compute()}
    if target == "top1":  # maps explain the prediction: GT-known and top-5 loc are not defined
        metrics.pop("gt_known_loc")
        metrics.pop("top5_loc")
    if eval_cfg.get("records", True):
        for row, res in zip(rows, boxes_acc.image_results(), strict=True):
            row.update(res)
    info = {
        "images": n,
        "skipped": dict(skipped),
        "skipped_ids": [{"id": i, "reason": r} for i, r in skipped_ids],
        "boxes_clipped": dataset.boxes_clipped,
        "flat_maps": n_flat,
        "layer": layer,
        "target": target,
        "device": str(device),
        "seconds": round(elapsed, 3),
        "images_per_second": round(n / elapsed, 2) if elapsed > 0 else None,
        "num_thresholds": len(thresholds),
    }
    log.info("%d images in %.1f s (%.1f img/s), %d skipped", n, elapsed, n / max(elapsed, 1e-9), sum(skipped.values()))
    return EvalResult(metrics=metrics, images=rows, curves=boxes_acc.curves(), info=info)
