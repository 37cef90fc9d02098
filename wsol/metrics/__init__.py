"""Metrics: accumulate per batch into fixed-size counts, compute at the end; shards merge by summing."""

from .boxes import BoxAccumulator, box_iou
from .classification import topk_correct
from .masks import PxAPAccumulator
from .pointing import PointingAccumulator

__all__ = ["BoxAccumulator", "PxAPAccumulator", "PointingAccumulator", "box_iou", "topk_correct"]
