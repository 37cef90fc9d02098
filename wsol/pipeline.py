"""One evaluation, the loop over batches through the stages:

    data (wsol.data) → scoring (wsol.scoring) → maps (wsol.maps) → localization (wsol.localize)
    → metrics (wsol.metrics) → run folder and reports (wsol.report)

:class:`Evaluation` builds the stages from a typed config; :func:`evaluate` runs the loop. While
batch ``i + 1`` is scored (the model, on the accelerator), batch ``i`` is turned into eval-size maps,
localized and accumulated on a CPU thread (``speed.overlap``; the box kernels release the GIL), with
at most two batches in flight so memory stays flat. Every batch gives a :class:`BatchResult` of
additive accumulators, merged in batch order by :func:`finalize`: a serial run, an overlapped one, a
run resumed after a kill (:class:`~wsol.state.PartialStore`) and shards merged afterwards
(:func:`merge_shards`) give the same numbers, bit for bit.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch
from torch.utils.data import DataLoader

from .cache import write_key
from .cams import build_method
from .cams.layout import LayoutRequest
from .config import classifier_config, resolve_threshold, to_dict, validate
from .data import build_dataset, collate
from .data.base import Batch
from .errors import WsolError
from .faithfulness import Faithfulness, FaithfulnessOptions
from .identity import library_versions, run_identity
from .localize.sweep import load_kernel
from .metrics.results import EvalResult, finalize
from .metrics.stage import MetricSpec, MetricsStage
from .models import build_model, compile_around, default_layer
from .models.fold import fold_batchnorms, fold_example
from .progress import Progress
from .scoring import (
    ClassifierClasses,
    FileClasses,
    FileScorer,
    MapCache,
    ModelScorer,
    Scores,
    auto_on_cpu,
    read_predictions,
    resolve_device,
    with_classes,
)
from .state import BatchResult, PartialStore, fingerprint

__all__ = [
    "BatchResult",
    "EvalResult",
    "Evaluation",
    "evaluate",
    "finalize",
    "merge_shards",
    "resolve_workers",
    "run_fingerprint",
    "map_key",
    "map_store",
]

log = logging.getLogger(__name__)

# images the DataLoader workers decode ahead of the loop (at least two batches per worker): a run's workers
# start before its model is built and decode this far ahead meanwhile
LOOKAHEAD_IMAGES = 512
SHARED_MEMORY = "/dev/shm"  # where batches pass from the workers to the loop (torch's default sharing)


def available_cores() -> int:
    """The cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def box_threads(value: int | None, overlap: bool, device: str) -> int | None:
    """The box engine's thread count: ``value``, or for null half the cores when an overlapped loop scores on
    the CPU (scoring and boxes then share the cores; the best split measured by ``scripts/bench.py``), else
    None (every core)."""
    if value is not None:
        return int(value)
    if overlap and device == "cpu":
        return max(1, available_cores() // 2)
    return None


def prefetch_batches(batch_size: int, workers: int, image_bytes: int, shared_free: int | None) -> int:
    """Batches each worker decodes ahead: ``LOOKAHEAD_IMAGES`` in all, within a quarter of the free shared
    memory (``shared_free`` bytes; ``None``: unknown, no bound), and never fewer than DataLoader's default 2."""
    images = LOOKAHEAD_IMAGES
    if shared_free is not None:
        images = min(images, shared_free // 4 // max(1, image_bytes))
    return max(2, images // (batch_size * workers))


def free_shared_memory() -> int | None:
    """Bytes free in ``/dev/shm`` (a container's is often 64 MB), or ``None`` where there is none."""
    try:
        stat = os.statvfs(SHARED_MEMORY)
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


def resolve_workers(value: int | str) -> int:
    """DataLoader workers: ``auto`` = the cores this process may use, less one for the main loop; else ``value``."""
    if value == "auto":
        return max(0, available_cores() - 1)
    try:
        workers = int(value)
    except (TypeError, ValueError):
        workers = -1
    if workers < 0:
        raise WsolError(f"num_workers must be auto or a number ≥ 0, got {value!r}")
    return workers


def _result_speed(config: dict) -> dict:
    """The speed settings that can change a number: all but the loop's overlap, the box engine's threads and
    the allocator's reuse of freed memory."""
    neutral = ("overlap", "box_threads", "keep_freed_memory")
    return {k: v for k, v in (config.get("speed") or {}).items() if k not in neutral}


def run_fingerprint(config: dict) -> str:
    """Identity of a run's results: the result-relevant config and what it is made of by content
    (:func:`wsol.identity.run_identity`: wsol's code, the libraries' versions, the device type, the bytes of the
    checkpoint, metadata and prediction files); shards share it.

    Settings that cannot change a number are left out: the box engine (both give identical results,
    tested), the loop's overlap, the box engine's threads and the allocator's reuse, reports, progress output,
    sharding.
    """
    localize_cfg = {k: v for k, v in (config.get("localize") or {}).items() if k != "engine"}
    relevant = {**config, "localize": localize_cfg, "speed": _result_speed(config), "identity": run_identity(config)}
    return fingerprint(relevant, drop=("shard", "report", "figures", "progress"))


def map_key(config: dict, weights: str | None = None) -> dict:
    """Everything that determines a run's score maps and top-5 predictions: the dataset, model, method and the
    settings that shape them, with the content identity (:func:`wsol.identity.run_identity`) and the weights the
    model actually loaded (``weights``: :attr:`wsol.models.LoadedModel.weights`)."""
    keys = ("dataset", "model", "method", "limit", "batch_size", "speed", "seed")
    key = {k: config.get(k) for k in keys}
    key.update(speed=_result_speed(config), target=config["eval"]["target"], identity=run_identity(config),
               weights=weights)
    key["identity"]["files"].pop("eval.predictions", None)  # top-1 / top-5 classes from a file: not in the maps
    key["identity"]["files"].pop("eval.classifier", None)
    return key


def map_store(config: dict, weights: str | None = None) -> str | None:
    """Where a run's score maps are kept: the map cache under ``cache_dir``, keyed by :func:`map_key` (batches
    are global, so shards share it); ``None`` without a cache."""
    if not config.get("cache_dir"):
        return None
    return os.path.join(os.path.expanduser(config["cache_dir"]), "maps", fingerprint(map_key(config, weights)))


def _shard_range(num_batches: int, index: int, count: int) -> range:
    """The batches of shard ``index`` of ``count``: a contiguous run of whole batches.

    Sharding by whole batches keeps every batch exactly as a single run forms it, so the maps, and
    hence the merged metrics, are bitwise those of one run.
    """
    bounds = np.linspace(0, num_batches, count + 1).round().astype(int)
    return range(bounds[index], bounds[index + 1])


class Evaluation:
    """The stages of one evaluation, built from a typed config, and the per-batch work of the later stages.

    ``run_dir``: the run folder; a run with ``report=true`` and no map cache keeps its score maps there
    (``maps/``), so its report draws them without running the model again.
    """

    def __init__(self, cfg, run_dir: str | None = None, start_loading: bool = False) -> None:
        """``start_loading``: start the DataLoader workers on all of this shard's batches before the model is
        built, so that they decode images while it is built and its checkpoint loaded (a run that resumes
        loads only its unfinished batches, once it knows them)."""
        validate(cfg)
        cfg = resolve_threshold(cfg)
        self.cfg, self.run_dir = cfg, run_dir
        self.config = to_dict(cfg)
        self.device = resolve_device(cfg.device)
        self.from_files = cfg.method.name == "from_files"
        self.faith: Faithfulness | None = None
        self.spec = MetricSpec.from_config(cfg)
        self.workers = resolve_workers(cfg.num_workers)
        dataset_args = {k: v for k, v in self.config["dataset"].items() if k != "name"}
        self.dataset = build_dataset(cfg.dataset.name, num_classes=None, **dataset_args)  # classes: below
        self.dataset.keep_first(cfg.limit)
        self._plan_batches()
        self._loading = self._start(list(self.batches)) if start_loading and self.workers else None
        try:
            if self.from_files:
                self.scorer, self.layer, num_classes = FileScorer(cfg.method.maps_dir, self.device), None, None
            else:
                self.scorer, num_classes = self._model_scorer()
            # maps from files: no model, so the labels the metadata gives are the classes
            if num_classes is not None and self.dataset.check_classes(num_classes):  # records dropped: re-plan
                self._loading = None
                self._plan_batches()
        except BaseException:
            self._loading = None  # its workers stop
            raise
        self.has_boxes = self.dataset.has_boxes
        self.classes, self.classes_from = self._external_classes()
        self.stage = MetricsStage(
            self.spec, self.dataset.image_size, self.has_boxes, self.dataset.has_masks,
            box_threads(cfg.speed.box_threads, bool(cfg.speed.overlap), self.device.type),
            cfg.maps_dir if cfg.save_maps else None,
        )

    def _plan_batches(self) -> None:
        """This shard's batches of the dataset's records (and the image cache keyed by those records)."""
        cfg = self.cfg
        if cfg.image_cache and cfg.cache_dir:
            self.dataset.use_image_cache(os.path.join(os.path.expanduser(cfg.cache_dir), "images"))
        starts = range(0, len(self.dataset), cfg.batch_size)
        mine = _shard_range(len(starts), cfg.shard.index, cfg.shard.count)
        # global batch index → dataset positions, for this shard's batches only
        self.batches = {i: list(range(starts[i], min(starts[i] + cfg.batch_size, len(self.dataset)))) for i in mine}

    def _external_classes(self):
        """The top-5 source for top-1 / top-5 loc other than the scored model (``eval.classifier``,
        ``eval.predictions``), and its description; ``(None, None)`` without one."""
        cfg = self.cfg.eval
        if cfg.predictions is not None:
            classes = FileClasses(read_predictions(os.path.expanduser(cfg.predictions)), self.device)
            missing = classes.missing([r.image_id for r in self.dataset.records])
            if missing:
                raise WsolError(f"eval.predictions: {len(missing)} of {len(self.dataset.records)} images have no "
                                f"prediction in {cfg.predictions} (e.g. {missing[0]})")
            return classes, f"predictions:{cfg.predictions}"
        if cfg.classifier is not None:
            model = _build_model(classifier_config(cfg.classifier), int(self.cfg.dataset.get("image_size") or 224))
            return ClassifierClasses(model.module, model.mean, model.std, self.device), f"classifier:{model.name}"
        return None, None

    def _model_scorer(self) -> tuple[ModelScorer, int]:
        cfg = self.cfg
        m, size = cfg.model, int(cfg.dataset.get("image_size") or 224)
        model = _build_model(m, size)
        model.module.to(self.device)
        layers = cfg.model.layer or default_layer(model.module, size)  # probed on the device
        layers = [layers] if isinstance(layers, str) else [str(name) for name in layers]
        if cfg.speed.fold_batchnorm:
            fold_batchnorms(model.module, fold_example(size, self.device), keep=tuple(layers))
        channels_last = auto_on_cpu(cfg.speed.channels_last, self.device)
        if channels_last:
            model.module.to(memory_format=torch.channels_last)
        self.layer = "+".join(layers)  # display name: layers joined by +
        options = {k: v for k, v in self.config["method"].items() if k != "name"}
        grid = self.config["model"]["tokens"]["grid"]
        layout = LayoutRequest(str(m.layout), m.tokens.prefix, tuple(grid) if grid else None)
        method = build_method(cfg.method.name, model.module, layers, fusion=self.config["model"]["fusion"],
                              seed=cfg.seed, layout=layout, **options)
        if cfg.speed.compile:
            compile_around(model.module, layers, "default" if cfg.speed.compile is True else str(cfg.speed.compile))
        store = map_store(self.config, model.weights)
        if store is not None:
            write_key(store, map_key(self.config, model.weights))
        if store is None and cfg.report and self.run_dir:
            store = os.path.join(self.run_dir, "maps")
        if cfg.eval.faithfulness:
            p = cfg.perturbation
            options = FaithfulnessOptions(str(p.score), p.steps, str(p.baseline), str(p.multiply), p.relative, p.chunk,
                                          tuple(p.road_percentiles), p.road_noise)
            self.faith = Faithfulness(model.module, model.mean, model.std, self.device, list(cfg.eval.faithfulness),
                                      options)
        scorer = ModelScorer(
            method, model.mean, model.std, self.device, target=self.config["eval"]["target"],
            precision=self.config["speed"]["precision"], channels_last=channels_last,
            cache=MapCache(os.path.dirname(store), os.path.basename(store)) if store else None,
        )
        return scorer, model.num_classes

    @property
    def meta(self) -> dict:
        """Facts every batch result shares; equal across the shards of one evaluation."""
        cfg = self.cfg
        return {
            "fingerprint": run_fingerprint(self.config),
            "libraries": library_versions(),
            "shard": {"index": cfg.shard.index, "count": cfg.shard.count},
            "batches": len(self.batches),
            "layer": self.layer,
            "target": "files" if self.from_files else self.config["eval"]["target"],
            "backend": self.spec.backend,
            "thresholds": list(self.spec.thresholds),
            "iou_thresholds": list(self.spec.iou_thresholds),
            "pointing_tolerance": self.spec.pointing_tolerance,
            "strict_class_loc": self.spec.strict_class_loc,
            "classes_from": self.classes_from,
            "bootstrap": {"resamples": int(cfg.eval.bootstrap), "seed": int(cfg.eval.bootstrap_seed)},
            "pxap_interval": self.spec.pxap_interval,
            "has_boxes": self.has_boxes,
            "has_masks": self.dataset.has_masks,
            "dataset_skipped": dict(self.dataset.skipped),
            "dataset_skipped_ids": self.dataset.skipped_ids,
            "boxes_clipped": self.dataset.boxes_clipped,
            "device": str(self.device),
            "maps": self._maps_folder(),
        }

    def _maps_folder(self) -> str | None:
        """Where this run's score maps are kept: the map cache, or ``maps`` (relative: the run folder's own)."""
        folder = getattr(self.scorer, "cache", None) and self.scorer.cache.folder
        if folder and self.run_dir and os.path.dirname(os.path.abspath(folder)) == os.path.abspath(self.run_dir):
            return os.path.basename(folder)
        return folder

    def loader(self, batch_indices: list[int]) -> Iterator[Batch]:
        """The batches ``batch_indices``, in order: those the workers started on already, if the same."""
        started, self._loading = self._loading, None
        if started is not None and started[0] == batch_indices:
            return started[1]
        return self._start(batch_indices)[1]

    def _start(self, batch_indices: list[int]) -> tuple[list[int], Iterator[Batch]]:
        """An iterator over the batches, its workers started, decoding ahead (:func:`prefetch_batches`)."""
        ahead = {}
        if self.workers:
            size = self.dataset.image_size
            image_bytes = size * size * (4 if self.dataset.has_masks else 3)  # uint8 pixels (and mask)
            ahead["prefetch_factor"] = prefetch_batches(self.cfg.batch_size, self.workers, image_bytes,
                                                        free_shared_memory())
        loader = DataLoader(
            self.dataset,
            batch_sampler=[self.batches[i] for i in batch_indices],
            num_workers=self.workers,
            collate_fn=collate,
            pin_memory=self.device.type == "cuda",
            **ahead,
        )
        return batch_indices, iter(loader)

    def process(self, index: int, batch: Batch, scores: Scores) -> BatchResult:
        """Stages 3 to 5 of one scored batch (:meth:`wsol.metrics.stage.MetricsStage.process`)."""
        return self.stage.process(index, batch, scores)


def _build_model(m, input_size: int):
    """The classifier a typed model config (``model``, or ``eval.classifier``'s) describes."""
    return build_model(
        m.name, source=str(m.source), weights=m.weights, checkpoint=m.checkpoint, num_classes=m.num_classes,
        mean=m.mean, std=m.std, architecture=str(m.architecture), large_feature_map=m.large_feature_map,
        acol_drop_threshold=m.acol_drop_threshold, pretrained=m.pretrained, target=m.target,
        kwargs=to_dict(m)["kwargs"], output=m.output, input_size=input_size,
    )


class InOrder:
    """Runs ``work`` on one background thread (or inline), at most ``depth`` batches in flight, and hands the
    results to ``done`` in submission order: batch ``i``'s CPU work overlaps the scoring of batch ``i + 1``."""

    def __init__(self, work, done, overlap: bool, depth: int = 2) -> None:
        self.work, self.done, self.depth = work, done, depth
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wsol-localize") if overlap else None
        self.pending: deque[Future] = deque()

    def prepare(self, work) -> None:
        """Run ``work()`` on the thread ahead of the first batch (while it is loaded and scored); inline without
        overlap. Its errors surface where the batches' own work raises them."""
        if self.pool is None:
            work()
        else:
            self.pool.submit(work)

    def submit(self, *args) -> None:
        if self.pool is None:
            self.done(self.work(*args))
            return
        while len(self.pending) >= self.depth:  # bounded: memory stays flat
            self.done(self.pending.popleft().result())
        self.pending.append(self.pool.submit(self.work, *args))

    def finish(self) -> None:
        """Wait for the batches in flight and hand them on, in order."""
        while self.pending:
            self.done(self.pending.popleft().result())

    def shutdown(self) -> None:
        """Stop the thread; results not handed on by :meth:`finish` (after an error) are dropped."""
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def evaluate(cfg, run_dir: str | None = None) -> EvalResult:
    """Run one evaluation of a typed config (:class:`wsol.config.WsolConfig`); with ``run_dir``, save per-batch
    results in its ``partials/`` and resume from them."""
    torch.manual_seed(cfg.seed)
    state_dir = os.path.join(run_dir, "partials") if run_dir else None
    fresh = not (state_dir and os.path.isdir(state_dir) and os.listdir(state_dir))
    evaluation = Evaluation(cfg, run_dir, start_loading=fresh)
    meta = evaluation.meta
    store = PartialStore(state_dir, meta) if state_dir else None
    done = store.load() if store else {}
    todo = [i for i in evaluation.batches if i not in done]
    if done:
        log.info("resuming: %d of %d batches already done", len(done), len(evaluation.batches))
    start = time.perf_counter()
    progress = Progress(sum(len(evaluation.batches[i]) for i in todo), "scoring", cfg.progress)

    def finished(result: BatchResult) -> None:
        if store:
            store.save(result)
        done[result.index] = result

    stage = InOrder(evaluation.process, finished, overlap=bool(cfg.speed.overlap))
    try:
        if todo and evaluation.has_boxes and evaluation.spec.engine == "fast" and cfg.speed.overlap:
            stage.prepare(load_kernel)  # numba and its cached code load while the first batch is scored
        for index, batch in zip(todo, evaluation.loader(todo), strict=True):
            scores = evaluation.scorer(index, batch) if len(batch) else Scores([], torch.zeros(0, 1, 1))
            if evaluation.classes is not None and len(batch):
                scores = with_classes(scores, batch, evaluation.classes)
            if evaluation.faith is not None and len(batch):
                scores.faith = evaluation.faith(batch.images, evaluation.stage.eval_maps(scores)[0], scores.targets,
                                                seed=cfg.seed * 1_000_003 + index)  # per batch: resumes exactly
            stage.submit(index, batch, scores)
            progress.update(len(evaluation.batches[index]))
        stage.finish()
    except KeyboardInterrupt:  # Ctrl-C, or the CLI's SIGTERM: the batches already scored are finished and saved
        try:
            stage.finish()
        except BaseException:  # noqa: BLE001 - a second interrupt, or a batch that failed: stop now
            pass
        raise
    finally:
        stage.shutdown()
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

