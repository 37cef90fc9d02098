"""Stages 3 to 5 of one scored batch: eval-size maps, localization, every metric's accumulator.

:class:`MetricSpec` is every setting these stages read, as plain numbers and names (built from a config's
``localize`` and ``eval`` by :meth:`MetricSpec.from_config`); :class:`MetricsStage` applies it to a batch and its
scores. The CLI's loop and the Python API's metric objects run this same code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..cams.from_files import save_maps
from ..data.base import Batch
from ..localize import localize, sweep_thresholds
from ..maps import eval_maps, quantize
from ..scoring import Scores
from .batch import BatchResult
from .boxes import BoxAccumulator
from .classification import topk_correct
from .masks import PxAPAccumulator
from .pointing import PointingAccumulator

__all__ = ["MetricSpec", "MetricsStage", "thresholds_of"]


def thresholds_of(localize_cfg) -> np.ndarray:
    """``[T]`` thresholds: the sweep ``arange(0, 1, interval)`` or the one fixed threshold."""
    if localize_cfg.mode == "sweep":
        return sweep_thresholds(float(localize_cfg.interval))
    return np.array([float(localize_cfg.threshold)])


@dataclass(frozen=True)
class MetricSpec:
    """How maps become eval-size maps, boxes and metrics (the protocol settings of ``localize`` and ``eval``)."""

    thresholds: tuple[float, ...]  # cut levels, fractions of each map's maximum
    iou_thresholds: tuple[int, ...] = (30, 50, 70)  # δ in percent (MaxBoxAccV2's parts)
    pointing_tolerance: float = 15.0  # pixels at the eval size
    strict_class_loc: bool = False  # top-1 / top-5 loc at IoU > δ (TS-CAM), not ≥ δ
    clip_gt_boxes: bool = False  # GT corners at most S − 1 (TS-CAM's loaders)
    resize: str = "bicubic"  # map upsampling to the eval size
    normalize: str = "after_resize"  # min-max after the upsampling (wsolevaluation) or before
    backend: str = "contours"  # the region rule: every contour (wsolevaluation) or connected components
    engine: str = "fast"  # the box kernels (numba) or the OpenCV reference: identical results
    clip_boxes: bool = True  # a box's far corner clipped to S − 1 (wsolevaluation)
    empty_box: tuple[int, ...] = (0, 0, 0, 0)  # the box of an empty foreground
    pxap_interval: float = 0.01  # PxAP's threshold step
    extra: tuple[str, ...] = ()  # eval.extra: the opt-in metrics (wsol.metrics.extra)

    @classmethod
    def from_config(cls, cfg) -> MetricSpec:
        """The spec of a typed config (:class:`wsol.config.WsolConfig`)."""
        loc, ev = cfg.localize, cfg.eval
        return cls(
            thresholds=tuple(thresholds_of(loc).tolist()), iou_thresholds=tuple(int(d) for d in ev.iou_thresholds),
            pointing_tolerance=float(ev.pointing_tolerance), strict_class_loc=bool(ev.strict_class_loc),
            clip_gt_boxes=bool(ev.clip_gt_boxes), resize=str(loc.resize), normalize=str(loc.normalize),
            backend=str(loc.backend), engine=str(loc.engine), clip_boxes=bool(loc.clip_boxes),
            empty_box=tuple(int(v) for v in loc.empty_box), pxap_interval=float(loc.interval or 0.01),
            extra=tuple(str(m) for m in ev.extra),
        )

    @property
    def threshold_array(self) -> np.ndarray:
        return np.asarray(self.thresholds, dtype=np.float64)


class MetricsStage:
    """Turns a scored batch into a :class:`~wsol.metrics.batch.BatchResult`.

    Args:
        spec: the settings.
        image_size: the eval size S (maps are brought to S × S).
        has_boxes, has_masks: which accumulators the dataset needs (box metrics and pointing; PxAP).
        box_threads: the box engine's threads (numba's count is per calling thread); ``None``: its default.
        maps_dir: where to save each image's eval-size map (``save_maps``); ``None``: not saved.
    """

    def __init__(self, spec: MetricSpec, image_size: int, has_boxes: bool, has_masks: bool,
                 box_threads: int | None = None, maps_dir: str | None = None) -> None:
        self.spec, self.image_size = spec, int(image_size)
        self.has_boxes, self.has_masks = bool(has_boxes), bool(has_masks)
        self.thresholds = spec.threshold_array
        self.box_threads, self.maps_dir = box_threads, maps_dir

    def empty(self, index: int, skipped=()) -> BatchResult:
        """A batch result with fresh accumulators for this stage's metrics."""
        boxes = pointing = pxap = None
        if self.has_boxes:
            boxes = BoxAccumulator(self.thresholds, list(self.spec.iou_thresholds), self.spec.strict_class_loc)
            pointing = PointingAccumulator(self.spec.pointing_tolerance)
        if self.has_masks:
            pxap = PxAPAccumulator(self.spec.pxap_interval)
        return BatchResult(index, boxes, pxap, pointing, skipped=list(skipped))

    def eval_maps(self, scores: Scores) -> tuple[torch.Tensor, torch.Tensor]:
        """The maps at the eval size in ``[0, 1]`` and which were flat (:func:`wsol.maps.eval_maps`)."""
        size, resize, normalize = self.image_size, self.spec.resize, self.spec.normalize
        if isinstance(scores.maps, torch.Tensor):
            return eval_maps(scores.maps, size, resize, normalize)
        parts = [eval_maps(m[None], size, resize, normalize) for m in scores.maps]  # maps of mixed sizes
        return torch.cat([m for m, _ in parts]), torch.cat([f for _, f in parts])

    def process(self, index: int, batch: Batch, scores: Scores) -> BatchResult:
        """Stages 3 to 5 of batch ``index``: eval-size maps, localization, every metric (CPU-side work)."""
        spec = self.spec
        result = self.empty(index, batch.skipped)
        reasons = scores.reasons or [None] * len(batch)
        keep = np.array([r is None for r in reasons], dtype=bool)
        result.skipped += [(i, r) for i, r in zip(batch.ids, reasons, strict=True) if r is not None]
        if not keep.any():
            return result
        maps, flat = self.eval_maps(scores)
        maps_u8, maps_np = quantize(maps).cpu().numpy(), maps.cpu().numpy()
        labels = batch.labels[keep].numpy()
        top1 = top5 = None
        if scores.top5 is not None:
            result.top5, result.targets = scores.top5.cpu().numpy(), scores.targets.cpu().numpy()
            top1, top5 = topk_correct(result.top5, labels, 1), topk_correct(result.top5, labels, 5)
        gt_boxes, gt_valid = batch.boxes[keep].numpy(), batch.box_valid[keep].numpy()
        if spec.clip_gt_boxes:  # TS-CAM's loaders: GT corners at most S − 1
            gt_boxes = np.minimum(gt_boxes, maps_u8.shape[-1] - 1)
        if result.boxes is not None:
            if self.box_threads:  # numba's thread count is per calling thread
                import numba

                numba.set_num_threads(min(self.box_threads, numba.config.NUMBA_NUM_THREADS))
            sweep = localize(maps_u8, self.thresholds, gt_boxes, gt_valid, spec.backend, spec.engine,
                             spec.clip_boxes, list(spec.empty_box))
            peaks = maps_u8.reshape(len(maps_u8), -1).max(axis=1)
            result.boxes.update(sweep, peaks, gt_boxes, gt_valid, top1, top5)
            result.pointing.update(maps_np, flat.cpu().numpy(), gt_boxes, gt_valid)
        if result.pxap is not None:
            result.pxap.update(maps_np, batch.masks[keep].numpy())
        result.ids = [i for i, k in zip(batch.ids, keep, strict=True) if k]
        if scores.faith is not None:
            result.faith = {k: v.cpu().numpy() for k, v in scores.faith.items()}
        if self.maps_dir is not None:
            save_maps(self.maps_dir, result.ids, maps_np)
        result.labels, result.flat = labels, flat.cpu().numpy()
        result.size_mismatch = [i for i in batch.size_mismatch if i in set(result.ids)]
        return result
