"""Metrics: accumulate per batch into fixed-size counts, compute at the end."""

from .boxes import BoxAccumulator, box_iou, sweep_ious
from .classification import topk_correct

__all__ = ["BoxAccumulator", "box_iou", "sweep_ious", "topk_correct"]
