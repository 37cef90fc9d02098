"""The metrics as objects for a training loop or a notebook: ``update(maps, gt_boxes, …)`` per batch, ``compute()``
at the end, ``merge`` and ``reset`` (torchmetrics' habit).

They are the CLI's own stages, not a re-writing: :meth:`WSOLMetrics.update` hands the batch to
:class:`~wsol.metrics.stage.MetricsStage` (eval-size maps, localization, the accumulators) and :meth:`compute` ends
in :func:`~wsol.metrics.results.finalize`, with the settings of a protocol preset composed from the packaged configs
as ``python -m wsol.run protocol=…`` composes them. Same maps, same numbers, bit for bit (tested).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..data.base import Batch
from ..errors import WsolError
from ..scoring import Scores
from .batch import BatchResult
from .results import EvalResult, finalize
from .stage import MetricSpec, MetricsStage

__all__ = ["WSOLMetrics", "MaxBoxAccV2", "protocol_spec", "as_box_batch"]


def protocol_spec(protocol: str = "wsoleval_v2", overrides: Sequence[str] = ()) -> MetricSpec:
    """The metric settings of the preset ``protocol`` (``wsol/conf/protocol``) with ``overrides`` (the CLI's
    ``key=value`` form, e.g. ``localize.interval=0.01``), composed and validated as the CLI does."""
    from ..config import compose_config, validate

    cfg = compose_config([f"protocol={protocol}", *overrides])
    validate(cfg)
    return MetricSpec.from_config(cfg)


def _integer_boxes(boxes, what: str) -> np.ndarray:
    array = np.asarray(boxes.detach().cpu() if isinstance(boxes, torch.Tensor) else boxes, dtype=np.float64)
    array = array.reshape(-1, 4) if array.size else np.zeros((0, 4))
    if not np.isfinite(array).all() or (array != np.round(array)).any():
        raise WsolError(f"{what}: box corners must be whole pixels at the maps' size (x0, y0, x1, y1, inclusive)")
    if (array[:, 2:] < array[:, :2]).any():
        raise WsolError(f"{what}: a box has x1 < x0 or y1 < y0")
    return array.astype(np.int64)


def as_box_batch(gt_boxes, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, K, 4]`` int64 boxes and ``[B, K]`` validity from per-image boxes: a list of ``[K_i, 4]`` (or
    ``[4]``), or an array / tensor ``[B, 4]`` or ``[B, K, 4]``; whole pixels, inclusive corners."""
    if isinstance(gt_boxes, (torch.Tensor, np.ndarray)) and np.ndim(gt_boxes) in (2, 3):
        gt_boxes = list(gt_boxes if np.ndim(gt_boxes) == 3 else gt_boxes[:, None])
    per_image = [_integer_boxes(b, f"gt_boxes[{i}]") for i, b in enumerate(gt_boxes)]
    if len(per_image) != count:
        raise WsolError(f"gt_boxes has {len(per_image)} images, the maps {count}")
    most = max([len(b) for b in per_image] + [1])
    boxes = torch.zeros(count, most, 4, dtype=torch.int64)
    valid = torch.zeros(count, most, dtype=torch.bool)
    for i, b in enumerate(per_image):
        boxes[i, : len(b)], valid[i, : len(b)] = torch.from_numpy(b), True
    return boxes, valid


class WSOLMetrics:
    """Every metric of a protocol preset, accumulated over batches of maps.

    Args:
        protocol: a preset of ``wsol/conf/protocol`` (``wsoleval_v2``, ``wsoleval_v1``, ``cam16``, ``tscam``…).
        image_size: the eval size ``S``: maps of any size are upsampled (the protocol's rule) and min-max
            normalised at ``S × S``, where boxes and masks live; ``None``: the first batch's map size (square).
        overrides: other settings in the CLI's form (``localize.interval=0.01``, ``eval.iou_thresholds=[50]``).
        box_threads: the box engine's threads (``speed.box_threads``); ``None``: every core.

    ``update(maps, gt_boxes, labels=None, top5=None, masks=None, ids=None)`` with maps ``[B, h, w]`` (a CAM's raw
    output or at ``S``), GT boxes per image ``[K, 4]`` as whole pixels ``x0, y0, x1, y1`` (inclusive) at ``S``,
    the GT classes and the classifier's top-5 ``[B, k]`` (both: top-1 / top-5 loc and classification), masks
    ``[B, S, S]`` (0 background, 1 foreground, 255 ignored: PxAP). ``compute()`` gives the CLI's
    ``metrics.json`` numbers: ``maxboxacc_v2``, ``maxboxacc_v2_iou30|50|70``, ``maxboxacc``, ``gt_known_loc``,
    ``top1_loc``, ``pxap``, ``pointing_game``… (docs/protocols.md).
    """

    def __init__(self, protocol: str = "wsoleval_v2", *, image_size: int | None = None,
                 overrides: Sequence[str] = (), box_threads: int | None = None) -> None:
        self.protocol, self.overrides = protocol, tuple(overrides)
        self.spec = protocol_spec(protocol, self.overrides)
        self.image_size, self.box_threads = image_size, box_threads
        self.stage: MetricsStage | None = None
        self.results: list[BatchResult] = []
        # run facts finalize reports (an evaluation of a dataset sets its load-time skips and its model's layer)
        self.info: dict[str, object] = {"target": "gt", "layer": None, "device": None, "dataset_skipped": {},
                                        "dataset_skipped_ids": [], "boxes_clipped": 0}

    def reset(self) -> None:
        """Forget every batch (the settings stay)."""
        self.stage, self.results = None, []

    def __len__(self) -> int:
        """Images accumulated so far."""
        return sum(r.n_images for r in self.results)

    def _stage(self, maps, has_boxes: bool, has_masks: bool) -> MetricsStage:
        if self.stage is None:
            size = self.image_size
            if size is None:
                h, w = maps.shape[-2:] if isinstance(maps, torch.Tensor) else maps[0].shape[-2:]
                if h != w:
                    raise WsolError(f"maps are {h}×{w}: give image_size (the square eval size boxes live at)")
                size = int(h)
            self.stage = MetricsStage(self.spec, size, has_boxes, has_masks, self.box_threads)
        elif (self.stage.has_boxes, self.stage.has_masks) != (has_boxes, has_masks):
            raise WsolError("every update must give the same annotations (gt_boxes, masks) as the first")
        return self.stage

    def update(self, maps: torch.Tensor, gt_boxes=None, labels=None, top5=None, masks=None,
               ids: Sequence[str] | None = None) -> None:
        """Accumulate one batch (see the class docstring)."""
        maps = torch.as_tensor(maps).detach()
        if maps.ndim != 3:
            raise WsolError(f"maps must be [B, h, w], got shape {tuple(maps.shape)}")
        count = len(maps)
        if gt_boxes is None and masks is None:
            raise WsolError("update needs gt_boxes, masks or both")
        stage = self._stage(maps, gt_boxes is not None, masks is not None)
        size = stage.image_size
        boxes, valid = as_box_batch(gt_boxes, count) if gt_boxes is not None else (
            torch.zeros(count, 1, 4, dtype=torch.int64), torch.zeros(count, 1, dtype=torch.bool))
        outside = valid & ((boxes < 0) | (boxes > size)).any(-1)  # a far corner may be S (the reference's rescale)
        if outside.any():
            i = int(outside.any(1).nonzero()[0])
            raise WsolError(f"gt_boxes[{i}] lies outside the {size}×{size} eval size: boxes are at the eval size "
                            "(give image_size when the maps are at feature resolution)")
        if masks is not None:
            masks = torch.as_tensor(masks).detach().cpu().to(torch.uint8)
            if tuple(masks.shape) != (count, size, size):
                raise WsolError(f"masks must be [B, {size}, {size}], got {tuple(masks.shape)}")
        labels = torch.zeros(count, dtype=torch.int64) if labels is None else torch.as_tensor(labels).cpu().long()
        if ids is None:
            seen = sum(r.n_images + len(r.skipped) for r in self.results)
            ids = [str(seen + i) for i in range(count)]
        batch = Batch(images=torch.empty(0), labels=labels, boxes=boxes, box_valid=valid, masks=masks,
                      ids=[str(i) for i in ids], sizes=torch.full((count, 2), size, dtype=torch.int64))
        scores = Scores(batch.ids, maps.float(), None if top5 is None else torch.as_tensor(top5).long(),
                        None if top5 is None else labels)
        self.add(batch, scores, has_boxes=gt_boxes is not None)

    def add(self, batch: Batch, scores: Scores, has_boxes: bool = True) -> None:
        """Accumulate a loaded batch and its scores (the CLI's stage 3–5 input, :mod:`wsol.scoring`);
        ``has_boxes``: the data has GT boxes (box metrics and pointing)."""
        self.append(self.process(len(self.results), batch, scores, has_boxes))

    def process(self, index: int, batch: Batch, scores: Scores, has_boxes: bool = True) -> BatchResult:
        """Stages 3 to 5 of one batch, not yet accumulated (a loop may run it on another thread, then
        :meth:`append` the results in order)."""
        return self._stage(scores.maps, has_boxes, batch.masks is not None).process(index, batch, scores)

    def append(self, result: BatchResult) -> None:
        """Accumulate a batch's result from :meth:`process`."""
        result.index = len(self.results)
        self.results.append(result)

    def merge(self, other: WSOLMetrics) -> WSOLMetrics:
        """Add ``other``'s batches after this one's (the same settings): e.g. one object per process."""
        if other.spec != self.spec:
            raise WsolError("cannot merge metrics of different settings")
        if self.stage is None:
            self.stage = other.stage
        for r in other.results:
            self.append(r)
        return self

    def result(self, seconds: float = 0.0) -> EvalResult:
        """Every metric, the per-image rows and the threshold curves (:func:`~wsol.metrics.results.finalize`);
        ``seconds``: the caller's scoring + metrics time, reported in ``info``."""
        if not self.results:
            raise WsolError("no images yet: call update first")
        meta = {
            "backend": self.spec.backend,
            "thresholds": list(self.spec.thresholds), "bootstrap": {"resamples": 0, "seed": 0}, "maps": None,
            "classes_from": None, "extra": list(self.spec.extra), **self.info,
        }
        return finalize(meta, self.results, seconds)

    def compute(self) -> dict[str, float]:
        """The metrics, in percent (thresholds as fractions), under the CLI's ``metrics.json`` names."""
        return self.result().metrics


class MaxBoxAccV2(WSOLMetrics):
    """MaxBoxAccV2 (Choe et al., CVPR 2020): for each δ in ``iou_thresholds``, the box accuracy at the best
    threshold over every region's box; their mean. ``compute()`` gives ``maxboxacc_v2`` and
    ``maxboxacc_v2_iou{δ}`` (with ``…_threshold``), computed as :class:`WSOLMetrics` with ``wsoleval_v2``."""

    def __init__(self, iou_thresholds: Sequence[int] = (30, 50, 70), *, image_size: int | None = None,
                 overrides: Sequence[str] = ()) -> None:
        deltas = ",".join(str(int(d)) for d in iou_thresholds)
        super().__init__("wsoleval_v2", image_size=image_size, overrides=[f"eval.iou_thresholds=[{deltas}]",
                                                                          *overrides])

    def compute(self) -> dict[str, float]:
        return {k: v for k, v in super().compute().items() if k.startswith("maxboxacc_v2")}
