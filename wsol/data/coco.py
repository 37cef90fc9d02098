"""A COCO-format annotation file, read with pycocotools.

Each image becomes one WSOL sample: its class is that of its largest non-crowd annotation
(``image_class=largest``), and its GT boxes are all non-crowd annotations of that class.
COCO boxes ``[x, y, w, h]`` become ``x0=x, y0=y, x1=x+w, y1=y+h``. ``category_map`` maps COCO
category ids to classifier class indices (default: categories in id order → 0..N-1); images
whose class is not in the map are skipped and counted.
"""

from __future__ import annotations

import contextlib
import io
import os
from typing import Annotated

import numpy as np

from ..errors import WsolError
from ..extras import require
from ..schema import PROTOCOL, Range
from . import DATASETS
from .base import BoxRescale, Record, WsolDataset, require_dir, require_file

__all__ = ["read_coco", "build_coco"]


def read_coco(ann_file: str, category_map: dict[int, int] | None = None) -> list[Record]:
    COCO = require("pycocotools.coco", "coco", "dataset=coco").COCO

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(require_file(ann_file, "dataset.ann_file"))
    except (ValueError, KeyError, TypeError) as e:
        raise WsolError(f"{ann_file}: not a COCO annotation file ({e})") from None
    if category_map is None:
        category_map = {cat: i for i, cat in enumerate(sorted(coco.getCatIds()))}
    category_map = {int(k): int(v) for k, v in category_map.items()}
    records = []
    for image_id in sorted(coco.getImgIds()):
        info = coco.loadImgs(image_id)[0]
        anns = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=image_id)) if not a.get("iscrowd", 0)]
        size = (int(info["width"]), int(info["height"])) if "width" in info else None
        if not anns:
            records.append(Record(info["file_name"], 0, np.zeros((0, 4)), size))
            continue
        cat = max(anns, key=lambda a: a["bbox"][2] * a["bbox"][3])["category_id"]
        boxes = np.array([a["bbox"] for a in anns if a["category_id"] == cat], dtype=np.float64)
        boxes[:, 2:] += boxes[:, :2]
        label = category_map.get(int(cat), -1)
        records.append(Record(info["file_name"], label, boxes, size))
    return records


@DATASETS.register("coco")
def build_coco(
    *,
    root: str,
    ann_file: str,
    category_map: dict[int, int] | None = None,
    image_size: Annotated[int, Range(1), PROTOCOL] = 224,
    box_rescale: Annotated[BoxRescale, PROTOCOL] = BoxRescale.wsoleval,
    num_classes: int | None = 1000,
) -> WsolDataset:
    """Images under ``root`` annotated by the COCO JSON ``ann_file``."""
    root = require_dir(root, "dataset.root")
    if ann_file and not os.path.isabs(ann_file) and not os.path.isfile(ann_file):
        ann_file = os.path.join(root, ann_file)
    records = read_coco(ann_file, dict(category_map) if category_map else None)
    return WsolDataset(
        records, root, image_size=image_size, box_rescale=box_rescale, num_classes=num_classes, name="coco"
    )
