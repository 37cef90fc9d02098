"""One batch's contribution to every metric: its accumulators and its scored images' facts.

A :class:`BatchResult` is what stages 3 to 5 make of one scored batch (:class:`wsol.metrics.stage.MetricsStage`);
batch results merge in batch order (:func:`wsol.metrics.results.finalize`) and go to and from a run folder's
``partials/`` as named arrays (:mod:`wsol.state`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .boxes import BoxAccumulator, BoxRecords
from .masks import PxAPAccumulator
from .pointing import PointingAccumulator

__all__ = ["BatchResult"]


@dataclass
class BatchResult:
    """One batch's additive contribution to every metric, and its scored images' facts."""

    index: int
    boxes: BoxAccumulator | None
    pxap: PxAPAccumulator | None
    pointing: PointingAccumulator | None
    ids: list[str] = field(default_factory=list)  # the scored images
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    top5: np.ndarray | None = None  # int64 [B, k]: the classifier's predictions (None: maps from files)
    targets: np.ndarray | None = None  # int64 [B]: the class each map explains
    flat: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    skipped: list[tuple[str, str]] = field(default_factory=list)
    size_mismatch: list[str] = field(default_factory=list)  # scored ids whose decoded size is not the metadata's
    faith: dict[str, np.ndarray] = field(default_factory=dict)  # per-image faithfulness values (float64 [B])

    @property
    def n_images(self) -> int:
        return len(self.ids)

    def arrays(self) -> dict[str, np.ndarray]:
        """The batch as named arrays (numbers, bools, strings: nothing pickled)."""
        out = {
            "index": np.array(self.index), "ids": np.array(self.ids, dtype=str), "labels": self.labels,
            "flat": self.flat, "skipped": np.array(self.skipped, dtype=str).reshape(-1, 2),
            "size_mismatch": np.array(self.size_mismatch, dtype=str),
        }
        if self.top5 is not None:
            out.update(top5=self.top5, targets=self.targets)
        out.update({f"faith.{k}": np.asarray(v, dtype=np.float64) for k, v in self.faith.items()})
        if self.boxes is not None:
            records = self.boxes.records[0] if self.boxes.records else None
            out.update({f"boxes.{k}": v for k, v in (records.arrays() if records else {}).items()})
            out.update({"boxes.has_classes": np.array(self.boxes.has_classes),
                        "boxes.fallbacks": np.array(self.boxes.fallbacks)})
            out.update({"pointing.hit": np.array(self.pointing.hit, dtype=bool),
                        "pointing.energies": np.array(self.pointing.energies, dtype=np.float64)})
        if self.pxap is not None:
            bins = len(self.pxap.edges) - 1
            for key, parts in (("pxap.fg", self.pxap.image_fg), ("pxap.bg", self.pxap.image_bg)):
                out[key] = np.concatenate(parts) if parts else np.zeros((0, bins), np.uint16)
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], meta: dict) -> BatchResult:
        """A batch result from :meth:`arrays`, its accumulators rebuilt with the run's parameters (``meta``)."""
        boxes = pointing = pxap = None
        if meta["has_boxes"]:
            strict = bool(meta.get("strict_class_loc", False))
            boxes = BoxAccumulator(np.array(meta["thresholds"]), meta["iou_thresholds"], strict)
            fields = {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith("boxes.")}
            has_classes, fallbacks = bool(fields.pop("has_classes")), int(fields.pop("fallbacks"))
            if fields:  # a batch with scored images
                boxes = BoxAccumulator.from_records(boxes.thresholds, boxes.deltas, BoxRecords(**fields),
                                                    has_classes, fallbacks, strict)
            pointing = PointingAccumulator(meta["pointing_tolerance"])
            pointing.hit = [bool(v) for v in arrays["pointing.hit"]]
            pointing.energies = [float(v) for v in arrays["pointing.energies"]]
        if meta["has_masks"]:
            pxap = PxAPAccumulator(meta["pxap_interval"])
            if len(arrays["pxap.fg"]):
                pxap.add(arrays["pxap.fg"], arrays["pxap.bg"])
        return cls(
            int(arrays["index"]), boxes, pxap, pointing, ids=[str(i) for i in arrays["ids"]],
            labels=arrays["labels"], top5=arrays.get("top5"), targets=arrays.get("targets"), flat=arrays["flat"],
            faith={k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith("faith.")},
            skipped=[(str(i), str(r)) for i, r in arrays["skipped"]],
            size_mismatch=[str(i) for i in arrays["size_mismatch"]],
        )
