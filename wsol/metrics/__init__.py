"""Stage 5, metrics: accumulate per batch, merge across batches and shards, compute at the end.

Accumulators receive the earlier stages' results (localizations, maps, masks, predictions) and plain
numbers (thresholds, δ, tolerance), never the config; their counts are additive, so shards merge exactly.
"""

from .boxes import BoxAccumulator, BoxRecords
from .classification import topk_correct
from .masks import PxAPAccumulator
from .pointing import PointingAccumulator

__all__ = ["BoxAccumulator", "BoxRecords", "PxAPAccumulator", "PointingAccumulator", "topk_correct"]
