"""Per-batch partial results on disk: resume after a kill, merge shards, reuse score maps.

A run folder's ``partials/`` holds ``meta.json`` (the config fingerprint and run facts) and one
``batch_NNNNNN.pkl`` per finished batch, each written atomically. Accumulators are additive and
merged in batch order, so a resumed or sharded run gives exactly the numbers of one uninterrupted
run. The map cache stores each batch's maps at feature resolution with the predictions, keyed by
everything that determines them, so sweeps over localization or protocol reuse them.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import pickle

import torch

from .errors import WsolError
from .report.writer import atomic_write_bytes, atomic_write_text

__all__ = ["fingerprint", "PartialStore", "MapCache"]

# config keys that change neither the maps nor the metrics
_NEUTRAL_KEYS = ("device", "num_workers", "hydra", "save_maps", "maps_dir", "cache_dir", "image_cache", "table")


def fingerprint(config: dict, drop: tuple[str, ...] = ()) -> str:
    """A short hash of the result-relevant config (``drop``: further top-level keys to leave out)."""
    relevant = {k: v for k, v in config.items() if k not in _NEUTRAL_KEYS + drop}
    text = json.dumps(relevant, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _load_batches(folder: str) -> dict[int, object]:
    """Every ``batch_*.pkl`` result in ``folder``, by batch index."""
    done = {}
    for path in sorted(glob.glob(os.path.join(folder, "batch_*.pkl"))):
        with open(path, "rb") as f:
            result = pickle.load(f)
        done[result.index] = result
    return done


class PartialStore:
    """``<run_dir>/partials``: one pickled batch result per finished batch, plus ``meta.json``."""

    def __init__(self, folder: str, meta: dict) -> None:
        self.folder = folder
        meta_path = os.path.join(folder, "meta.json")
        if os.path.isfile(meta_path):
            with open(meta_path) as f:
                old = json.load(f)
            if old.get("fingerprint") != meta["fingerprint"]:
                raise WsolError(
                    f"{folder} holds partial results of another configuration or wsol version; use a new run folder "
                    "(hydra.run.dir=...) or delete it"
                )
        atomic_write_text(meta_path, json.dumps(meta, indent=2, default=str) + "\n")

    def _path(self, index: int) -> str:
        return os.path.join(self.folder, f"batch_{index:06d}.pkl")

    def load(self) -> dict[int, object]:
        """The batch results already on disk, by batch index."""
        return _load_batches(self.folder)

    def save(self, result) -> None:
        atomic_write_bytes(self._path(result.index), pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))

    @staticmethod
    def read(folder: str) -> tuple[dict, list]:
        """``(meta, results in batch order)`` of a finished or partial run folder's ``partials/``."""
        meta_path = os.path.join(folder, "meta.json")
        if not os.path.isfile(meta_path):
            raise WsolError(f"no partial results in {folder} (expected meta.json)")
        with open(meta_path) as f:
            meta = json.load(f)
        done = _load_batches(folder)
        return meta, [done[i] for i in sorted(done)]


class MapCache:
    """Score maps at feature resolution, with top-5 predictions and targets, one file per batch."""

    def __init__(self, root: str, key: str) -> None:
        self.folder = os.path.join(os.path.expanduser(root), key)

    def get(self, index: int) -> dict | None:
        path = os.path.join(self.folder, f"batch_{index:06d}.pt")
        if not os.path.isfile(path):
            return None
        return torch.load(path, map_location="cpu", weights_only=True)

    def put(self, index: int, entry: dict) -> None:
        buffer = io.BytesIO()
        torch.save({k: v.detach().cpu() if isinstance(v, torch.Tensor) else v for k, v in entry.items()}, buffer)
        atomic_write_bytes(os.path.join(self.folder, f"batch_{index:06d}.pt"), buffer.getvalue())
