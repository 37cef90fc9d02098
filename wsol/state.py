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

from .errors import WsolError
from .io import read_arrays, read_json, write_arrays, write_json
from .metrics.batch import BatchResult

__all__ = ["BatchResult", "PartialStore", "fingerprint"]

# config keys that change neither the maps nor the metrics
_NEUTRAL_KEYS = ("device", "num_workers", "hydra", "save_maps", "maps_dir", "cache_dir", "image_cache", "table")


def fingerprint(config: dict, drop: tuple[str, ...] = ()) -> str:
    """A short hash of the result-relevant config (``drop``: further top-level keys to leave out)."""
    relevant = {k: v for k, v in config.items() if k not in _NEUTRAL_KEYS + drop}
    text = json.dumps(relevant, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


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
