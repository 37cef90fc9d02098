"""Per-batch results on disk: resume after a kill, merge shards.

A run folder's ``partials/`` holds ``meta.json`` (the config fingerprint and run facts) and one
``batch_NNNNNN.npz`` per finished batch, each written atomically and read with ``allow_pickle=False``
(opening someone else's run folder runs none of their code). A batch file holds its images' facts
and the accumulators' compact state: the box metrics as each image's boxes at every cut level (a few
hundred bytes per image at 1,000 thresholds; the counts are recomputed from them exactly), the
pointing game's hits and energies, PxAP's histograms of each image. Results merge in batch order, so a resumed or
sharded run gives exactly the numbers of one uninterrupted run.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from dataclasses import dataclass, field

import numpy as np

from .errors import WsolError
from .io import read_arrays, read_json, write_arrays, write_json
from .metrics import BoxAccumulator, BoxRecords, PointingAccumulator, PxAPAccumulator

__all__ = ["BatchResult", "PartialStore", "fingerprint"]

# config keys that change neither the maps nor the metrics
_NEUTRAL_KEYS = ("device", "num_workers", "hydra", "save_maps", "maps_dir", "cache_dir", "image_cache", "table")


def fingerprint(config: dict, drop: tuple[str, ...] = ()) -> str:
    """A short hash of the result-relevant config (``drop``: further top-level keys to leave out)."""
    relevant = {k: v for k, v in config.items() if k not in _NEUTRAL_KEYS + drop}
    text = json.dumps(relevant, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


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


def _load_batches(folder: str, meta: dict) -> dict[int, BatchResult]:
    """Every ``batch_*.npz`` result in ``folder``, by batch index."""
    done = {}
    for path in sorted(glob.glob(os.path.join(folder, "batch_*.npz"))):
        result = BatchResult.from_arrays(read_arrays(path), meta)
        done[result.index] = result
    return done


class PartialStore:
    """``<run_dir>/partials``: one ``.npz`` per finished batch, plus ``meta.json``."""

    def __init__(self, folder: str, meta: dict) -> None:
        self.folder, self.meta = folder, meta
        meta_path = os.path.join(folder, "meta.json")
        saved = read_json(meta_path) if os.path.isfile(meta_path) else None
        if saved is not None and saved.get("fingerprint") != meta["fingerprint"]:
            before, now = saved.get("libraries") or {}, meta.get("libraries") or {}
            changed = [f"{k} {before.get(k)} (now {now.get(k)})" for k in now if before.get(k) != now.get(k)]
            what = ("was written under " + ", ".join(changed)) if changed else (
                "holds partial results of another configuration, code or input files")
            raise WsolError(f"{folder} {what}; resume only with the same ones, or use a new run folder "
                            "(hydra.run.dir=...) or delete it")
        write_json(meta_path, meta)

    def load(self) -> dict[int, BatchResult]:
        """The batch results already on disk, by batch index."""
        return _load_batches(self.folder, self.meta)

    def save(self, result: BatchResult) -> None:
        write_arrays(os.path.join(self.folder, f"batch_{result.index:06d}.npz"), **result.arrays())

    @staticmethod
    def read(folder: str) -> tuple[dict, list[BatchResult]]:
        """``(meta, results in batch order)`` of a finished or partial run folder's ``partials/``."""
        meta_path = os.path.join(folder, "meta.json")
        if not os.path.isfile(meta_path):
            raise WsolError(f"no partial results in {folder} (expected meta.json)")
        meta = read_json(meta_path)
        done = _load_batches(folder, meta)
        return meta, [done[i] for i in sorted(done)]
