"""What a run's results and its score maps are keyed by: content, never names or paths.

:func:`run_fingerprint` is the identity of a run's results (its resume key; shards share it), :func:`map_key` that of
its score maps (the map cache's key, :mod:`wsol.cache`). Both are the result-relevant settings with what the run is
made of by content (:func:`wsol.identity.run_identity`: wsol's code, the libraries' versions, the device type, the
bytes of the checkpoint, metadata and prediction files).
"""

from __future__ import annotations

import os

from .config import to_dict
from .identity import run_identity
from .state import fingerprint

__all__ = ["map_key", "map_store", "run_fingerprint"]

# speed settings that cannot change a number: the loop's overlap, the box engine's threads, the allocator's reuse
NEUTRAL_SPEED = ("overlap", "box_threads", "keep_freed_memory")


def _plain(config) -> dict:
    return config if isinstance(config, dict) else to_dict(config)


def _result_speed(config: dict) -> dict:
    return {k: v for k, v in (config.get("speed") or {}).items() if k not in NEUTRAL_SPEED}


def run_fingerprint(config) -> str:
    """Identity of the results of a run's ``config`` (typed, or as plain containers).

    Settings that cannot change a number are left out: the box engine (both give identical results, tested), the
    loop's overlap, the box engine's threads and the allocator's reuse, reports, progress output, sharding.
    """
    config = _plain(config)
    localize_cfg = {k: v for k, v in (config.get("localize") or {}).items() if k != "engine"}
    relevant = {**config, "localize": localize_cfg, "speed": _result_speed(config), "identity": run_identity(config)}
    return fingerprint(relevant, drop=("shard", "report", "figures", "progress"))


def map_key(config, weights: str | None = None) -> dict:
    """Everything that determines a run's score maps and top-5 predictions: the dataset, model and method and the
    settings that shape them, with the content identity and the weights the model actually loaded (``weights``:
    :attr:`wsol.models.LoadedModel.weights`)."""
    config = _plain(config)
    keys = ("dataset", "model", "method", "limit", "batch_size", "speed", "seed")
    key = {k: config.get(k) for k in keys}
    key.update(speed=_result_speed(config), target=config["eval"]["target"], identity=run_identity(config),
               weights=weights)
    key["identity"]["files"].pop("eval.predictions", None)  # top-1 / top-5 classes from a file: not in the maps
    key["identity"]["files"].pop("eval.classifier", None)
    return key


def map_store(config, weights: str | None = None, key: dict | None = None) -> str | None:
    """Where a run's score maps are kept: the map cache under ``cache_dir``, keyed by :func:`map_key` (``key``:
    that key, computed already; batches are global, so shards share it); ``None`` without a cache."""
    config = _plain(config)
    if not config.get("cache_dir"):
        return None
    key = map_key(config, weights) if key is None else key
    return os.path.join(os.path.expanduser(config["cache_dir"]), "maps", fingerprint(key))
