"""Datasets: one module per format, all yielding :class:`~wsol.data.base.WsolDataset` samples."""

from ..registry import Registry

DATASETS: Registry = Registry("dataset")

from . import coco, cub, demo, ilsvrc, wsoleval  # noqa: E402,F401  (register the formats)
from .base import Batch, Record, WsolDataset, collate  # noqa: E402

__all__ = ["DATASETS", "Batch", "Record", "WsolDataset", "collate", "build_dataset"]


def build_dataset(name: str, **kwargs) -> WsolDataset:
    """Build the dataset registered under ``name`` with its config keys as keyword arguments."""
    return DATASETS.get(name)(**kwargs)
