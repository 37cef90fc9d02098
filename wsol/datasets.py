"""The datasets the CLI reads, by the names of its ``dataset=`` choices, for :func:`wsol.evaluate` and your own loops.

Each gives a :class:`~wsol.data.base.WsolDataset`: uint8 images resized to ``image_size`` (PIL bilinear, no crop),
GT boxes rescaled to it as the reference does, masks where the dataset has them; the keyword arguments are the
config keys of ``dataset=<name>`` (docs/datasets.md).
"""

from .data.base import WsolDataset, collate
from .data.coco import build_coco as coco
from .data.cub import build_cub as cub
from .data.demo import build_demo as demo
from .data.ilsvrc import build_ilsvrc as ilsvrc
from .data.wsoleval import build_wsoleval as wsoleval

__all__ = ["WsolDataset", "coco", "collate", "cub", "demo", "ilsvrc", "wsoleval"]
