"""CUB-200-2011 in its own layout.

``images.txt`` (``id path``), ``bounding_boxes.txt`` (``id x y width height``),
``image_class_labels.txt`` (``id class`` with classes 1..200), ``train_test_split.txt``
(``id is_training``), images under ``images/``. Boxes become ``x0=x, y0=y, x1=x+width,
y1=y+height`` and labels ``class-1``, exactly as wsolevaluation's CUB metadata.
"""

from __future__ import annotations

import os
from typing import Annotated

import numpy as np

from ..errors import WsolError
from ..schema import PROTOCOL, Range
from . import DATASETS
from .base import BoxRescale, Record, WsolDataset, require_dir, require_file

__all__ = ["read_cub", "build_cub"]


def _table(path: str, n_fields: int) -> dict[str, list[str]]:
    out = {}
    with open(require_file(path, os.path.basename(path))) as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != n_fields:
                raise WsolError(f"{path}:{lineno}: expected {n_fields} fields, got {len(parts)}")
            out[parts[0]] = parts[1:]
    return out


def read_cub(root: str, split: str = "test") -> list[Record]:
    """Records of the ``train`` or ``test`` split of a CUB_200_2011 folder."""
    if split not in ("train", "test"):
        raise WsolError(f"dataset.split must be train or test for CUB, got {split!r}")
    paths = _table(os.path.join(root, "images.txt"), 2)
    boxes = _table(os.path.join(root, "bounding_boxes.txt"), 5)
    labels = _table(os.path.join(root, "image_class_labels.txt"), 2)
    is_train = _table(os.path.join(root, "train_test_split.txt"), 2)
    want = "1" if split == "train" else "0"
    records = []
    for image_id, (path,) in paths.items():
        if is_train.get(image_id, ["?"])[0] != want:
            continue
        x, y, w, h = (float(v) for v in boxes.get(image_id, ["nan"] * 4))
        records.append(
            Record(
                image_id=path,
                label=int(labels[image_id][0]) - 1,
                boxes=np.array([[x, y, x + w, y + h]]),
            )
        )
    return records


@DATASETS.register("cub")
def build_cub(
    *,
    root: str,
    split: str = "test",
    image_size: Annotated[int, Range(1), PROTOCOL] = 224,
    box_rescale: Annotated[BoxRescale, PROTOCOL] = BoxRescale.wsoleval,
    num_classes: int | None = 200,
) -> WsolDataset:
    """CUB-200-2011 from its official folder (the one holding ``images.txt``)."""
    root = require_dir(root, "dataset.root")
    records = read_cub(root, split)
    return WsolDataset(
        records, os.path.join(root, "images"), image_size=image_size, box_rescale=box_rescale,
        num_classes=num_classes, name="cub",
    )
