"""The stages of one evaluation, each built from the typed config (:class:`wsol.config.WsolConfig`) alone.

- :class:`BatchPlan`: the dataset, this shard's batches of it and the DataLoader workers that decode them;
- :func:`build_scoring`: stage 2, a CAM method on the model (or maps from files), with the map cache and the
  faithfulness metrics (:class:`Scoring`);
- :func:`external_classes`: top-1 / top-5 from another classifier or a predictions file;
- :func:`build_metrics`: stages 3 to 5, maps → boxes → metrics (:class:`wsol.metrics.stage.MetricsStage`).

:class:`wsol.pipeline.Evaluation` composes them; the loop in :func:`wsol.pipeline.evaluate` runs them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader

from .cache import write_key
from .cams import build_method, method_layers
from .cams.layout import LayoutRequest
from .config import classifier_config, spec_of, to_dict
from .data import build_dataset, collate
from .data.base import Batch, WsolDataset
from .errors import WsolError
from .faithfulness import Faithfulness, FaithfulnessOptions
from .keys import map_key, map_store
from .metrics.stage import MetricSpec, MetricsStage
from .models import LoadedModel, ModelSpec, build_model, compile_around, default_layer
from .models.fold import fold_batchnorms, fold_example
from .scoring import ClassifierClasses, FileClasses, FileScorer, MapCache, ModelScorer, auto_on_cpu, read_predictions

__all__ = ["BatchPlan", "Scoring", "available_cores", "batch_positions", "box_threads", "build_dataset_of",
           "build_metrics", "build_scoring", "external_classes", "load_batches", "load_model", "prefetch_batches",
           "resolve_workers"]

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


def shard_range(num_batches: int, index: int, count: int) -> range:
    """The batches of shard ``index`` of ``count``: a contiguous run of whole batches.

    Sharding by whole batches keeps every batch exactly as a single run forms it, so the maps, and
    hence the merged metrics, are bitwise those of one run.
    """
    bounds = np.linspace(0, num_batches, count + 1).round().astype(int)
    return range(bounds[index], bounds[index + 1])


def batch_positions(count: int, batch_size: int) -> list[list[int]]:
    """The dataset positions of each batch of ``count`` records: consecutive runs of ``batch_size`` (the last one
    shorter), as the CLI and ``wsol.evaluate`` form them."""
    return [list(range(start, min(start + batch_size, count))) for start in range(0, count, batch_size)]


def build_dataset_of(cfg) -> WsolDataset:
    """The dataset ``cfg.dataset`` describes, its first ``cfg.limit`` records (its classes are checked later,
    against the model's)."""
    dataset = build_dataset(cfg.dataset.name, num_classes=None,
                            **{k: v for k, v in to_dict(cfg.dataset).items() if k != "name"})
    dataset.keep_first(cfg.limit)
    return dataset


class BatchPlan:
    """This shard's batches of ``dataset`` (global batch index → dataset positions) and the DataLoader over them,
    its workers started early (:meth:`start`) so that they decode while the model is built."""

    def __init__(self, cfg, dataset: WsolDataset, device: torch.device) -> None:
        self.cfg, self.dataset, self.device = cfg, dataset, device
        self.workers = resolve_workers(cfg.num_workers)
        self._started: tuple[list[int], Iterator[Batch]] | None = None
        self.replan()

    def replan(self) -> None:
        """Form the batches of the dataset's records (again, after records were dropped: workers started on the old
        batches stop), with the image cache keyed by those records."""
        cfg, self._started = self.cfg, None
        if cfg.image_cache and cfg.cache_dir:
            self.dataset.use_image_cache(os.path.join(os.path.expanduser(cfg.cache_dir), "images"))
        every = batch_positions(len(self.dataset), cfg.batch_size)
        self.batches = {i: every[i] for i in shard_range(len(every), cfg.shard.index, cfg.shard.count)}

    def start(self) -> None:
        """Start the workers on all of this shard's batches (without workers: nothing to start)."""
        if self.workers:
            self._started = self._loader(list(self.batches))

    def stop(self) -> None:
        """Drop the started loader; its workers stop."""
        self._started = None

    def loader(self, batch_indices: list[int]) -> Iterator[Batch]:
        """The batches ``batch_indices``, in order: those the workers started on already, if the same."""
        started, self._started = self._started, None
        if started is not None and started[0] == batch_indices:
            return started[1]
        return self._loader(batch_indices)[1]

    def _loader(self, batch_indices: list[int]) -> tuple[list[int], Iterator[Batch]]:
        batches = [self.batches[i] for i in batch_indices]
        return batch_indices, load_batches(self.dataset, batches, self.workers, self.device, self.cfg.batch_size)


def load_batches(dataset: WsolDataset, batches: list[list[int]], workers: int, device: torch.device,
                 batch_size: int) -> Iterator[Batch]:
    """An iterator over ``batches`` (lists of dataset positions) of ``dataset``, its ``workers`` started now and
    decoding ahead (:func:`prefetch_batches`), pinned for a CUDA ``device``."""
    ahead = {}
    if workers:
        size = dataset.image_size
        image_bytes = size * size * (4 if dataset.has_masks else 3)  # uint8 pixels (and mask)
        ahead["prefetch_factor"] = prefetch_batches(batch_size, workers, image_bytes, free_shared_memory())
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=workers, collate_fn=collate,
                        pin_memory=device.type == "cuda", **ahead)
    return iter(loader)


def load_model(model_cfg, input_size: int) -> LoadedModel:
    """The classifier a typed model config (``model``, or ``eval.classifier``'s) describes."""
    return build_model(spec_of(ModelSpec, model_cfg), input_size=input_size)


def _input_size(cfg) -> int:
    return int(cfg.dataset.get("image_size") or 224)


@dataclass
class Scoring:
    """Stage 2 as built: the scorer, the target layers' display name (``+``-joined; ``None`` for maps from files),
    the model's classes (``None``: no model) and the faithfulness metrics (``None``: none asked for)."""

    scorer: ModelScorer | FileScorer
    layer: str | None = None
    num_classes: int | None = None
    faith: Faithfulness | None = None

    @property
    def maps_folder(self) -> str | None:
        """Where the score maps are kept (the map cache, or the run folder's ``maps``); ``None``: not kept."""
        cache = getattr(self.scorer, "cache", None)
        return cache.folder if cache else None


def build_scoring(cfg, device: torch.device, run_dir: str | None = None) -> Scoring:
    """The scoring stage of ``cfg``: the model built, moved to ``device``, folded and laid out as ``cfg.speed``
    says, with the CAM method at its layer; a run with ``report=true`` and no map cache keeps its maps in
    ``run_dir/maps`` so that its report draws them without running the model again."""
    if cfg.method.name == "from_files":
        return Scoring(FileScorer(cfg.method.maps_dir, device))
    size = _input_size(cfg)
    model = load_model(cfg.model, size)
    model.module.to(device)
    layers = cfg.model.layer or default_layer(model.module, size)  # probed on the device
    options = {k: v for k, v in to_dict(cfg.method).items() if k != "name"}
    layers = method_layers(cfg.method.name, model.module, layers, size, **options)  # RefineCAM's stages too
    if cfg.speed.fold_batchnorm:
        fold_batchnorms(model.module, fold_example(size, device), keep=tuple(layers))
    channels_last = auto_on_cpu(cfg.speed.channels_last, device)
    if channels_last:
        model.module.to(memory_format=torch.channels_last)
    grid = cfg.model.tokens.grid
    layout = LayoutRequest(str(cfg.model.layout), cfg.model.tokens.prefix, tuple(grid) if grid else None)
    method = build_method(cfg.method.name, model.module, layers, fusion=str(cfg.model.fusion), seed=cfg.seed,
                          layout=layout, **options)
    if cfg.speed.compile:
        compile_around(model.module, layers, "default" if cfg.speed.compile is True else str(cfg.speed.compile))
    key = map_key(cfg, model.weights) if cfg.cache_dir else None
    store = map_store(cfg, key=key)
    if store is not None:
        write_key(store, key)
    if store is None and cfg.report and run_dir:
        store = os.path.join(run_dir, "maps")
    faith = None
    if cfg.eval.faithfulness:
        faith = Faithfulness(model.module, model.mean, model.std, device, list(cfg.eval.faithfulness),
                             spec_of(FaithfulnessOptions, cfg.perturbation))
    scorer = ModelScorer(method, model.mean, model.std, device, target=str(cfg.eval.target),
                         precision=str(cfg.speed.precision), channels_last=channels_last,
                         cache=MapCache(os.path.dirname(store), os.path.basename(store)) if store else None)
    return Scoring(scorer, method.layer_label, model.num_classes, faith)


def external_classes(cfg, dataset: WsolDataset, device: torch.device) -> tuple[object, str | None]:
    """The top-5 source for top-1 / top-5 loc other than the scored model (``eval.classifier``,
    ``eval.predictions``), and its description; ``(None, None)`` without one."""
    ev = cfg.eval
    if ev.predictions is not None:
        classes = FileClasses(read_predictions(os.path.expanduser(ev.predictions)), device)
        missing = classes.missing([r.image_id for r in dataset.records])
        if missing:
            raise WsolError(f"eval.predictions: {len(missing)} of {len(dataset.records)} images have no "
                            f"prediction in {ev.predictions} (e.g. {missing[0]})")
        return classes, f"predictions:{ev.predictions}"
    if ev.classifier is not None:
        model = load_model(classifier_config(ev.classifier), _input_size(cfg))
        return ClassifierClasses(model.module, model.mean, model.std, device), f"classifier:{model.name}"
    return None, None


def build_metrics(cfg, spec: MetricSpec, dataset: WsolDataset, device: torch.device) -> MetricsStage:
    """Stages 3 to 5 for ``dataset``: eval-size maps, boxes and the metrics ``spec`` names."""
    return MetricsStage(spec, dataset.image_size, has_boxes=dataset.has_boxes, has_masks=dataset.has_masks,
                        box_threads=box_threads(cfg.speed.box_threads, bool(cfg.speed.overlap), device.type),
                        maps_dir=cfg.maps_dir if cfg.save_maps else None)
