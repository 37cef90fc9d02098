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

import torch

from .config import resolve_threshold, validate
from .data.base import Batch
from .errors import WsolError
from .identity import library_versions
from .keys import run_fingerprint
from .localize.sweep import load_kernel
from .metrics.results import EvalResult, finalize
from .metrics.stage import MetricSpec
from .progress import Progress
from .scoring import Scores, resolve_device, with_classes
from .stages import BatchPlan, build_dataset_of, build_metrics, build_scoring, external_classes
from .state import BatchResult, PartialStore

__all__ = ["BatchResult", "EvalResult", "Evaluation", "evaluate", "finalize", "merge_shards"]

log = logging.getLogger(__name__)


class Evaluation:
    """One evaluation's stages (:mod:`wsol.stages`), built from a typed config: the batches (:class:`BatchPlan`),
    the scoring, the external classes and the metrics.

    ``run_dir``: the run folder; a run with ``report=true`` and no map cache keeps its score maps there
    (``maps/``), so its report draws them without running the model again.
    """

    def __init__(self, cfg, run_dir: str | None = None, start_loading: bool = False) -> None:
        """``start_loading``: start the DataLoader workers on all of this shard's batches before the model is
        built, so that they decode images while it is built and its checkpoint loaded (a run that resumes
        loads only its unfinished batches, once it knows them)."""
        validate(cfg)
        self.cfg = cfg = resolve_threshold(cfg)
        self.run_dir = run_dir
        self.device = resolve_device(cfg.device)
        self.spec = MetricSpec.from_config(cfg)
        self.dataset = build_dataset_of(cfg)
        self.plan = BatchPlan(cfg, self.dataset, self.device)
        if start_loading:
            self.plan.start()
        try:
            self.scoring = build_scoring(cfg, self.device, run_dir)
            # maps from files: no model, so the labels the metadata gives are the classes
            classes = self.scoring.num_classes
            if classes is not None and self.dataset.check_classes(classes):  # records dropped: re-plan
                self.plan.replan()
        except BaseException:
            self.plan.stop()
            raise
        self.classes, self.classes_from = external_classes(cfg, self.dataset, self.device)
        self.stage = build_metrics(cfg, self.spec, self.dataset, self.device)

    @property
    def batches(self) -> dict[int, list[int]]:
        return self.plan.batches

    @property
    def meta(self) -> dict:
        """Facts every batch result shares; equal across the shards of one evaluation."""
        cfg, spec, dataset = self.cfg, self.spec, self.dataset
        return {
            "fingerprint": run_fingerprint(cfg),
            "libraries": library_versions(),
            "shard": {"index": cfg.shard.index, "count": cfg.shard.count},
            "batches": len(self.batches),
            "layer": self.scoring.layer,
            "target": "files" if self.scoring.layer is None else str(cfg.eval.target),
            "backend": spec.backend,
            "thresholds": list(spec.thresholds),
            "iou_thresholds": list(spec.iou_thresholds),
            "pointing_tolerance": spec.pointing_tolerance,
            "strict_class_loc": spec.strict_class_loc,
            "classes_from": self.classes_from,
            "bootstrap": {"resamples": int(cfg.eval.bootstrap), "seed": int(cfg.eval.bootstrap_seed)},
            "pxap_interval": spec.pxap_interval,
            "extra": list(spec.extra),
            "has_boxes": dataset.has_boxes,
            "has_masks": dataset.has_masks,
            "dataset_skipped": dict(dataset.skipped),
            "dataset_skipped_ids": dataset.skipped_ids,
            "boxes_clipped": dataset.boxes_clipped,
            "device": str(self.device),
            "maps": self._maps_folder(),
        }

    def _maps_folder(self) -> str | None:
        """Where this run's score maps are kept: the map cache, or ``maps`` (relative: the run folder's own)."""
        folder = self.scoring.maps_folder
        if folder and self.run_dir and os.path.dirname(os.path.abspath(folder)) == os.path.abspath(self.run_dir):
            return os.path.basename(folder)
        return folder

    def loader(self, batch_indices: list[int]) -> Iterator[Batch]:
        """The batches ``batch_indices``, in order (:meth:`BatchPlan.loader`)."""
        return self.plan.loader(batch_indices)

    def score(self, index: int, batch: Batch) -> Scores:
        """Stage 2 of one batch: its maps, top-5 (from the external classes, if any) and faithfulness values."""
        if not len(batch):
            return Scores([], torch.zeros(0, 1, 1))
        scores = self.scoring.scorer(index, batch)
        if self.classes is not None:
            scores = with_classes(scores, batch, self.classes)
        if self.scoring.faith is not None:
            scores.faith = self.scoring.faith(batch.images, self.stage.eval_maps(scores)[0], scores.targets,
                                              seed=self.cfg.seed * 1_000_003 + index,  # per batch: resumes exactly
                                              explain=self._explain)
        return scores

    def _explain(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The method's eval-size maps of model inputs (faithfulness' coherency), as the run's own maps."""
        return self.stage.eval_maps(Scores([], self.scoring.scorer.explain(inputs, targets)))[0]

    def process(self, index: int, batch: Batch, scores: Scores) -> BatchResult:
        """Stages 3 to 5 of one scored batch (:meth:`wsol.metrics.stage.MetricsStage.process`)."""
        return self.stage.process(index, batch, scores)


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
        if todo and evaluation.dataset.has_boxes and evaluation.spec.engine == "fast" and cfg.speed.overlap:
            stage.prepare(load_kernel)  # numba and its cached code load while the first batch is scored
        for index, batch in zip(todo, evaluation.loader(todo), strict=True):
            stage.submit(index, batch, evaluation.score(index, batch))
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

