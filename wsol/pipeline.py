"""One evaluation: dataset → scores (a CAM method, or maps from files) → maps → metrics.

Work is done batch by batch; each batch yields a :class:`BatchResult` of additive accumulators.
Results are merged in batch order by :func:`finalize`, so an evaluation can be resumed after a
kill (:class:`~wsol.state.PartialStore`) or split into shards and merged (:func:`merge_shards`)
with exactly the numbers of one uninterrupted run. :mod:`wsol.run` wraps this for the command line.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader

from . import __version__
from .cams import build_method
from .cams.from_files import load_maps, save_maps
from .data import build_dataset, collate
from .data.base import Batch
from .errors import WsolError
from .localize import eval_maps, quantize, sweep_thresholds
from .metrics import BoxAccumulator, PointingAccumulator, PxAPAccumulator
from .models import build_model, compile_around, default_layer
from .progress import Progress
from .state import MapCache, PartialStore, fingerprint

__all__ = [
    "BatchResult",
    "EvalResult",
    "Evaluation",
    "evaluate",
    "finalize",
    "merge_shards",
    "resolve_device",
    "resolve_workers",
    "run_fingerprint",
]

log = logging.getLogger(__name__)


@dataclass
class EvalResult:
    """Everything a run writes: metrics, per-image rows, curves and run facts."""

    metrics: dict[str, float]
    images: list[dict[str, object]]
    curves: list[dict[str, float]]
    info: dict[str, object] = field(default_factory=dict)


@dataclass
class BatchResult:
    """One batch's additive contribution to every metric."""

    index: int
    boxes: BoxAccumulator | None
    pxap: PxAPAccumulator | None
    pointing: PointingAccumulator | None
    n_images: int = 0
    n_top1: int = 0
    n_top5: int = 0
    n_flat: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    size_mismatch: list[str] = field(default_factory=list)  # evaluated ids whose decoded size is not the metadata's
    rows: list[dict[str, object]] = field(default_factory=list)


@dataclass
class _Scores:
    """One batch's maps at feature (or file) resolution, with the classifier's top-5 and targets, if any."""

    maps: list[torch.Tensor] | torch.Tensor  # [B, h, w], or per-image [h, w] maps of mixed sizes
    top5: torch.Tensor | None = None  # int64 [B, k]
    targets: torch.Tensor | None = None


PRECISIONS = ("fp32", "bf16")


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise WsolError(f"device={name} but no CUDA GPU is available (use device=cpu or device=auto)")
    return torch.device(name)


def resolve_workers(value: int | str) -> int:
    """DataLoader workers: ``auto`` = the cores this process may use, less one for the main loop; else ``value``."""
    if value == "auto":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(0, cores - 1)
    try:
        workers = int(value)
    except (TypeError, ValueError):
        workers = -1
    if workers < 0:
        raise WsolError(f"num_workers must be auto or a number ≥ 0, got {value!r}")
    return workers


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


@functools.cache
def _source_hash(*patterns: str) -> str:
    """Hash of wsol's source files matching ``patterns`` (relative to the package), and its version; read once
    per process (the code a process runs does not change under it)."""
    root = os.path.dirname(os.path.abspath(__file__))
    digest = hashlib.sha256(__version__.encode())
    for path in sorted(p for pattern in patterns for p in glob.glob(os.path.join(root, pattern), recursive=True)):
        with open(path, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()[:16]


def run_fingerprint(config: dict) -> str:
    """Identity of a run's results: the result-relevant config and all of wsol's code (shards share it).

    The box engine is left out: both engines give identical results (tested).
    """
    localize = {k: v for k, v in (config.get("localize") or {}).items() if k != "engine"}
    relevant = {**config, "localize": localize, "code": _source_hash("**/*.py")}
    return fingerprint(relevant, drop=("shard", "report", "figures", "progress"))


class _ModelScorer:
    """Normalise images on the device and run a CAM method (through the map cache, if enabled)."""

    def __init__(self, cfg: dict, device: torch.device) -> None:
        model_cfg, method_cfg = cfg["model"], cfg["method"]
        self.model = build_model(
            model_cfg["name"],
            weights=model_cfg.get("weights"),
            checkpoint=model_cfg.get("checkpoint"),
            num_classes=model_cfg.get("num_classes"),
        )
        speed = cfg.get("speed") or {}
        self.precision = str(speed.get("precision", "fp32"))
        if self.precision not in PRECISIONS:
            raise WsolError(f"speed.precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        self.channels_last = bool(speed.get("channels_last", False))
        self.model.module.to(device, memory_format=torch.channels_last if self.channels_last else torch.preserve_format)
        layers = model_cfg.get("layer") or default_layer(self.model.module)  # probed on the device
        layers = [layers] if isinstance(layers, str) else [str(name) for name in layers]
        self.layer = "+".join(layers)  # display name: layers joined by +
        kwargs = {k: v for k, v in method_cfg.items() if k != "name"}
        kwargs.update(fusion=model_cfg.get("fusion") or "mean", seed=int(cfg.get("seed", 0)))
        self.method = build_method(method_cfg["name"], self.model.module, layers, **kwargs)
        compile_mode = speed.get("compile", False)
        if compile_mode:
            compile_around(self.model.module, layers, "default" if compile_mode is True else str(compile_mode))
        self.num_classes = self.model.num_classes
        self.target = cfg["eval"].get("target", "gt")
        self.mean = torch.tensor(self.model.mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(self.model.std, device=device).view(1, 3, 1, 1)
        self.device = device
        self.cache = None
        if cfg.get("cache_dir"):
            keys = ("dataset", "model", "method", "limit", "batch_size", "speed")  # batches are global: shards share it
            key_cfg = {k: cfg.get(k) for k in keys}
            # maps depend on the model and method code only, so metric changes keep the cache
            key_cfg.update(
                layer=layers, seed=kwargs["seed"], target=self.target,
                code=_source_hash("cams/*.py", "models.py", "localize.py"),
            )
            self.cache = MapCache(os.path.join(cfg["cache_dir"], "maps"), fingerprint(key_cfg))

    def score(self, batch: Batch) -> dict:
        """Maps, top-5 classes and targets of a batch (no cache): ``{"ids", "maps", "top5", "targets"}``."""
        images = (batch.images.to(self.device, non_blocking=True).float() / 255 - self.mean) / self.std
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        bf16 = self.precision == "bf16"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
            out = self.method(images, batch.labels.to(self.device), target=self.target)
        top5 = out.logits.float().topk(min(5, out.logits.shape[1]), dim=1).indices
        return {"ids": batch.ids, "maps": out.maps.float(), "top5": top5, "targets": out.targets}

    def cached(self, index: int, ids: list[str]) -> dict | None:
        """The map cache's entry for global batch ``index`` if it holds exactly ``ids``."""
        entry = self.cache.get(index) if self.cache else None
        return entry if entry is not None and entry["ids"] == ids else None

    def __call__(self, index: int, batch: Batch) -> tuple[_Scores, list[str | None]]:
        entry = self.cached(index, batch.ids)
        if entry is None:
            entry = self.score(batch)
            if self.cache:
                self.cache.put(index, entry)
        scores = _Scores(entry["maps"].to(self.device), entry["top5"].to(self.device), entry["targets"].to(self.device))
        return scores, [None] * len(batch)


class _FileScorer:
    """Maps produced elsewhere, read from ``method.maps_dir`` (see :mod:`wsol.cams.from_files`)."""

    layer = None

    def __init__(self, cfg: dict, device: torch.device) -> None:
        self.maps_dir = cfg["method"].get("maps_dir")
        if not self.maps_dir or not os.path.isdir(self.maps_dir):
            raise WsolError(f"method.maps_dir does not exist: {self.maps_dir}")
        self.num_classes = int(cfg["model"].get("num_classes") or 1000)
        self.device = device

    def __call__(self, index: int, batch: Batch) -> tuple[_Scores, list[str | None]]:
        maps, reasons = load_maps(self.maps_dir, batch.ids)
        return _Scores([m.to(self.device) for m in maps if m is not None]), reasons


def _eval_maps(scores: _Scores, size: int, localize: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Each map at ``size`` in ``[0, 1]`` (:func:`~wsol.localize.eval_maps`): ``([B, S, S], flat [B])``."""
    resize, normalize = localize.get("resize", "bicubic"), localize.get("normalize", "after_resize")
    if isinstance(scores.maps, torch.Tensor):
        return eval_maps(scores.maps, size, resize, normalize)
    parts = [eval_maps(m[None], size, resize, normalize) for m in scores.maps]  # maps of mixed sizes
    return torch.cat([m for m, _ in parts]), torch.cat([f for _, f in parts])


def _shard_range(num_batches: int, shard: dict | None) -> range:
    """The batches of shard ``index`` of ``count``: a contiguous run of whole batches.

    Sharding by whole batches keeps every batch exactly as a single run forms it, so the maps, and
    hence the merged metrics, are bitwise those of one run.
    """
    count = int((shard or {}).get("count", 1))
    index = int((shard or {}).get("index", 0))
    if count < 1 or not 0 <= index < count:
        raise WsolError(f"shard.index must be in [0, shard.count), got {index} of {count}")
    bounds = np.linspace(0, num_batches, count + 1).round().astype(int)
    return range(bounds[index], bounds[index + 1])


class Evaluation:
    """The set-up of one evaluation (scorer, dataset, accumulators) and its per-batch step."""

    def __init__(self, cfg: dict) -> None:
        self.cfg = cfg
        self.device = resolve_device(cfg.get("device", "auto"))
        self.loc_cfg, self.eval_cfg = cfg["localize"], cfg["eval"]
        self.from_files = cfg["method"]["name"] == "from_files"
        self.scorer = _FileScorer(cfg, self.device) if self.from_files else _ModelScorer(cfg, self.device)
        dataset_cfg = {k: v for k, v in cfg["dataset"].items() if k != "name"}
        self.dataset = build_dataset(cfg["dataset"]["name"], num_classes=self.scorer.num_classes, **dataset_cfg)
        if cfg.get("limit"):
            self.dataset.records = self.dataset.records[: int(cfg["limit"])]
        if cfg.get("image_cache") and cfg.get("cache_dir"):
            self.dataset.use_image_cache(os.path.join(os.path.expanduser(cfg["cache_dir"]), "images"))
        self.has_boxes = any(len(r.boxes) for r in self.dataset.records)
        self.thresholds = thresholds_from_config(self.loc_cfg)
        self.image_size = int(cfg["dataset"].get("image_size", 224))
        self.batch_size = int(cfg.get("batch_size", 32))
        self.workers = resolve_workers(cfg.get("num_workers", "auto"))
        self.maps_dir = cfg.get("maps_dir") if cfg.get("save_maps") else None
        if cfg.get("save_maps") and not self.maps_dir:
            raise WsolError("save_maps=true needs maps_dir=/path/to/folder")
        n = len(self.dataset)
        starts = range(0, n, self.batch_size)
        mine = _shard_range(len(starts), cfg.get("shard"))
        # global batch index → dataset positions, for this shard's batches only
        self.batches = {i: list(range(starts[i], min(starts[i] + self.batch_size, n))) for i in mine}

    @property
    def meta(self) -> dict:
        """Facts every batch result shares; equal across the shards of one evaluation."""
        return {
            "fingerprint": run_fingerprint(self.cfg),
            "shard": {k: int(v) for k, v in (self.cfg.get("shard") or {"index": 0, "count": 1}).items()},
            "batches": len(self.batches),
            "layer": self.scorer.layer,
            "target": "files" if self.from_files else self.eval_cfg.get("target", "gt"),
            "backend": self.loc_cfg.get("backend", "cc"),
            "num_thresholds": len(self.thresholds),
            "has_boxes": self.has_boxes,
            "dataset_skipped": dict(self.dataset.skipped),
            "dataset_skipped_ids": self.dataset.skipped_ids,
            "boxes_clipped": self.dataset.boxes_clipped,
            "device": str(self.device),
        }

    def samples(self, ids: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """For figures: ``id → (image uint8 [S, S, 3], map [S, S] in [0, 1], GT boxes [K, 4])`` at eval size.

        Maps come from the map cache where it holds the image's batch, else from scoring just these
        images; unreadable or unknown ids are left out.
        """
        position = {r.image_id: i for i, r in enumerate(self.dataset.records)}
        positions = [position[i] for i in dict.fromkeys(ids) if i in position]
        batch = collate([self.dataset[p] for p in positions])
        maps: dict[str, torch.Tensor] = {}
        if isinstance(self.scorer, _ModelScorer) and self.scorer.cache:
            for index in sorted({p // self.batch_size for p in positions}):
                records = self.dataset.records[index * self.batch_size : (index + 1) * self.batch_size]
                entry = self.scorer.cache.get(index)
                if entry is not None and set(entry["ids"]) <= {r.image_id for r in records}:
                    maps.update(zip(entry["ids"], entry["maps"], strict=True))
        if any(i not in maps for i in batch.ids):
            if isinstance(self.scorer, _ModelScorer):
                maps.update(zip(batch.ids, self.scorer.score(batch)["maps"], strict=True))
            else:
                file_maps, _ = load_maps(self.scorer.maps_dir, batch.ids)
                maps.update((i, m) for i, m in zip(batch.ids, file_maps, strict=True) if m is not None)
        out = {}
        for j, image_id in enumerate(batch.ids):
            if image_id not in maps:
                continue
            scores = _Scores(maps[image_id][None].to(self.device))
            eval_map = _eval_maps(scores, self.image_size, self.loc_cfg)[0][0]
            boxes = batch.boxes[j][batch.box_valid[j]].numpy()
            out[image_id] = (batch.images[j].permute(1, 2, 0).numpy(), eval_map.cpu().numpy(), boxes)
        return out

    def loader(self, batch_indices: list[int]) -> DataLoader:
        return DataLoader(
            self.dataset,
            batch_sampler=[self.batches[i] for i in batch_indices],
            num_workers=self.workers,
            collate_fn=collate,
            pin_memory=self.device.type == "cuda",
        )

    def _accumulators(self) -> tuple:
        boxes = pointing = pxap = None
        if self.has_boxes:
            boxes = BoxAccumulator(
                self.thresholds,
                self.eval_cfg.get("iou_thresholds", (30, 50, 70)),
                bool(self.eval_cfg.get("records", True)),
                self.loc_cfg.get("backend", "cc"),
                self.loc_cfg.get("engine", "fast"),
            )
            pointing = PointingAccumulator(float(self.eval_cfg.get("pointing_tolerance", 15)))
        if self.dataset.has_masks:
            pxap = PxAPAccumulator(float(self.loc_cfg.get("interval") or 0.01))
        return boxes, pxap, pointing

    def run_batch(self, index: int, batch: Batch) -> BatchResult:
        """Score one batch and accumulate every metric for it."""
        result = BatchResult(index, *self._accumulators(), skipped=list(batch.skipped))
        if len(batch) == 0:
            return result
        scores, reasons = self.scorer(index, batch)
        keep = np.array([r is None for r in reasons])
        result.skipped += [(i, r) for i, r in zip(batch.ids, reasons, strict=True) if r is not None]
        if not keep.any():
            return result
        maps, flat = _eval_maps(scores, self.image_size, self.loc_cfg)
        labels = batch.labels[keep].to(maps.device)
        top1 = top5 = None
        if scores.top5 is not None:
            top1 = (scores.top5[:, :1] == labels[:, None]).any(1).cpu().numpy()
            top5 = (scores.top5 == labels[:, None]).any(1).cpu().numpy()
            result.n_top1, result.n_top5 = int(top1.sum()), int(top5.sum())
        maps_np = maps.cpu().numpy()
        gt_boxes, gt_valid = batch.boxes[keep].numpy(), batch.box_valid[keep].numpy()
        if result.boxes is not None:
            result.boxes.update(quantize(maps).cpu().numpy(), gt_boxes, gt_valid, top1, top5)
            result.pointing.update(maps_np, flat.cpu().numpy(), gt_boxes, gt_valid)
        if result.pxap is not None:
            result.pxap.update(maps_np, batch.masks[keep].numpy())
        kept_ids = [i for i, k in zip(batch.ids, keep, strict=True) if k]
        if self.maps_dir:
            save_maps(self.maps_dir, kept_ids, maps_np)
        result.size_mismatch = [i for i in batch.size_mismatch if i in set(kept_ids)]
        result.n_images = int(keep.sum())
        result.n_flat = int(flat.sum())
        result.rows = _image_rows(kept_ids, batch.labels[keep], scores, flat)
        return result


def finalize(meta: dict, results: list[BatchResult], seconds: float = 0.0) -> EvalResult:
    """Merge batch results in order and compute every metric."""
    n_images = sum(r.n_images for r in results)
    skipped = Counter(meta["dataset_skipped"])
    skipped_ids = [tuple(x) for x in meta["dataset_skipped_ids"]]
    for r in results:
        skipped.update(reason for _, reason in r.skipped)
        skipped_ids += r.skipped
    if n_images == 0:
        raise WsolError(f"every image was skipped ({dict(skipped)})")
    scored = [r for r in results if r.n_images]
    boxes, pxap, pointing = scored[0].boxes, scored[0].pxap, scored[0].pointing
    for r in scored[1:]:
        for acc, part in ((boxes, r.boxes), (pxap, r.pxap), (pointing, r.pointing)):
            if acc is not None:
                acc.merge(part)
    rows = [row for r in results for row in r.rows]
    from_files = meta["target"] == "files"
    metrics: dict[str, float] = {}
    if not from_files:
        metrics["top1_cls"] = 100.0 * sum(r.n_top1 for r in results) / n_images
        metrics["top5_cls"] = 100.0 * sum(r.n_top5 for r in results) / n_images
    if boxes is not None:
        metrics.update(boxes.compute())
        metrics.update(pointing.compute())
        if meta["target"] == "top1":  # the maps explain the prediction: the GT-class metrics are not defined
            for key in ("gt_known_loc", "top5_loc", "top5_loc_err", "pointing_game", "energy_pointing_game"):
                metrics.pop(key, None)
        if boxes.keep_records:
            for row, res in zip(rows, boxes.image_results(), strict=True):
                row.update(res)
    if pxap is not None:
        metrics["pxap"] = pxap.compute()
    info = {
        "images": n_images,
        "skipped": dict(skipped),
        "skipped_ids": [{"id": i, "reason": r} for i, r in skipped_ids],
        "boxes_clipped": meta["boxes_clipped"],
        "flat_maps": sum(r.n_flat for r in results),
        "size_mismatch": sum(len(r.size_mismatch) for r in results),
        "size_mismatch_ids": [i for r in results for i in r.size_mismatch],
        "reference_levels": boxes.fallbacks if boxes is not None else 0,
        **{k: meta[k] for k in ("layer", "target", "backend", "device", "num_thresholds")},
        "seconds": round(seconds, 3),
    }
    return EvalResult(metrics=metrics, images=rows, curves=boxes.curves() if boxes else [], info=info)


def evaluate(cfg: dict, state_dir: str | None = None) -> EvalResult:
    """Run one evaluation from a plain config dict; with ``state_dir``, save and resume per-batch results."""
    torch.manual_seed(int(cfg.get("seed", 0)))
    evaluation = Evaluation(cfg)
    meta = evaluation.meta
    store = PartialStore(state_dir, meta) if state_dir else None
    done = store.load() if store else {}
    todo = [i for i in evaluation.batches if i not in done]
    if done:
        log.info("resuming: %d of %d batches already done", len(done), len(evaluation.batches))
    start = time.perf_counter()
    progress = Progress(sum(len(evaluation.batches[i]) for i in todo), "scoring", cfg.get("progress", "auto"))
    for index, batch in zip(todo, evaluation.loader(todo), strict=True):
        result = evaluation.run_batch(index, batch)
        if store:
            store.save(result)
        done[index] = result
        progress.update(len(evaluation.batches[index]))
    progress.close()
    seconds = time.perf_counter() - start
    out = finalize(meta, [done[i] for i in sorted(done)], seconds)
    scored = sum(done[i].n_images for i in todo)
    out.info["images_per_second"] = round(scored / seconds, 2) if seconds > 0 else None
    log.info("%d images scored in %.1f s, %d skipped", scored, seconds, sum(out.info["skipped"].values()))
    if out.info["size_mismatch"]:
        log.warning(
            "%d images are not the size image_sizes.txt gives (e.g. %s); their boxes were rescaled with the "
            "metadata's size, as the reference does (size_mismatch_ids in metrics.json)",
            out.info["size_mismatch"], out.info["size_mismatch_ids"][0],
        )
    return out


def merge_shards(state_dirs: list[str]) -> tuple[dict, EvalResult]:
    """Merge the ``partials/`` of every shard of one evaluation into one result (``(meta, result)``)."""
    shards = [PartialStore.read(d) for d in state_dirs]
    shards.sort(key=lambda s: s[0]["shard"]["index"])
    metas = [m for m, _ in shards]
    count = metas[0]["shard"]["count"]
    if len({m["fingerprint"] for m in metas}) != 1:
        raise WsolError("the shards come from different configurations")
    if sorted(m["shard"]["index"] for m in metas) != list(range(count)):
        raise WsolError(f"need shards 0..{count - 1} exactly once, got {[m['shard']['index'] for m in metas]}")
    for meta, results in shards:
        if len(results) != meta["batches"]:
            shard = meta["shard"]["index"]
            raise WsolError(f"shard {shard} is unfinished ({len(results)} of {meta['batches']} batches)")
    results = [r for _, rs in shards for r in rs]
    meta = {**metas[0], "shard": {"index": 0, "count": 1}}
    return meta, finalize(meta, results)


def _image_rows(ids: list[str], labels: torch.Tensor, scores: _Scores, flat: torch.Tensor) -> list[dict[str, object]]:
    top5 = None if scores.top5 is None else scores.top5.cpu().tolist()
    rows = []
    for j, image_id in enumerate(ids):
        row: dict[str, object] = {"id": image_id, "label": int(labels[j])}
        if top5 is not None:
            row.update(prediction=top5[j][0], top5=" ".join(map(str, top5[j])), target=int(scores.targets[j]))
        row["flat_map"] = bool(flat[j])
        rows.append(row)
    return rows
