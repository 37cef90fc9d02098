"""Stage 5, metrics: accumulate per batch, merge across batches and shards, compute at the end.

Accumulators receive the earlier stages' results (localizations, maps, masks, predictions) and plain
numbers (thresholds, δ, tolerance), never the config; their counts are additive, so shards merge exactly.
"""

from .boxes import BoxAccumulator, BoxRecords
from .classification import topk_correct
from .masks import PxAPAccumulator
from .pointing import PointingAccumulator

__all__ = ["BoxAccumulator", "BoxRecords", "MaxBoxAccV2", "PxAPAccumulator", "PointingAccumulator", "WSOLMetrics",
           "topk_correct"]


def __getattr__(name: str):
    """The metric objects (:mod:`wsol.metrics.metric`), imported on first use: they build on the pipeline's
    stages, which the accumulators alone do not need."""
    if name in ("WSOLMetrics", "MaxBoxAccV2"):
        from . import metric

        return getattr(metric, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
