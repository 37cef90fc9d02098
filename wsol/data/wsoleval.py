"""The metadata layout of clovaai/wsolevaluation (CUB, ILSVRC, OpenImages).

``<metadata_root>/{image_ids,class_labels,image_sizes,localization}.txt``:
``path``; ``path,int``; ``path,w,h``; ``path,x0,y0,x1,y1`` one line per box, or for OpenImages
``path,mask.png,ignore.png`` one line per mask with the ignore path on the first line only.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from typing import Annotated

import numpy as np

from ..errors import WsolError
from ..schema import PROTOCOL, Range
from . import DATASETS
from .base import BoxRescale, Record, WsolDataset, require_dir, require_file

__all__ = ["read_wsoleval_metadata", "build_wsoleval"]


def _lines(path: str) -> list[list[str]]:
    with open(path) as f:
        return [line.strip().split(",") for line in f if line.strip()]


def read_wsoleval_metadata(metadata_root: str) -> list[Record]:
    """Parse one split's metadata folder into records (original pixel space)."""
    metadata_root = require_dir(metadata_root, "dataset.metadata_root")
    ids = [row[0] for row in _lines(require_file(os.path.join(metadata_root, "image_ids.txt"), "image_ids.txt"))]
    repeated = [i for i, n in Counter(ids).items() if n > 1]
    if repeated:
        raise WsolError(f"image_ids.txt lists {repeated[0]} twice")
    labels = {row[0]: int(row[1]) for row in _lines(os.path.join(metadata_root, "class_labels.txt"))}
    sizes_path = os.path.join(metadata_root, "image_sizes.txt")
    sizes = {r[0]: (int(r[1]), int(r[2])) for r in _lines(sizes_path)} if os.path.isfile(sizes_path) else {}
    boxes: dict[str, list[list[float]]] = defaultdict(list)
    masks: dict[str, list[str]] = defaultdict(list)
    ignores: dict[str, str] = {}
    loc_path = require_file(os.path.join(metadata_root, "localization.txt"), "localization.txt")
    for lineno, row in enumerate(_lines(loc_path), 1):
        if len(row) == 5:
            try:
                boxes[row[0]].append([float(v) for v in row[1:]])
            except ValueError:
                raise WsolError(f"{loc_path}:{lineno}: box coordinates are not numbers: {','.join(row)}") from None
        elif len(row) in (2, 3):
            masks[row[0]].append(row[1])
            if len(row) == 3 and row[2]:
                ignores.setdefault(row[0], row[2])
        else:
            expected = "path,x0,y0,x1,y1 or path,mask[,ignore]"
            raise WsolError(f"{loc_path}:{lineno}: expected {expected}; got {','.join(row)}")
    missing = [i for i in ids if i not in labels]
    if missing:
        raise WsolError(f"class_labels.txt has no label for {len(missing)} image(s), e.g. {missing[0]}")
    return [
        Record(
            image_id=i,
            label=labels[i],
            boxes=np.asarray(boxes.get(i, []), dtype=np.float64).reshape(-1, 4),
            size=sizes.get(i),
            mask_paths=tuple(masks.get(i, ())),
            ignore_path=ignores.get(i),
        )
        for i in ids
    ]


@DATASETS.register("wsoleval")
def build_wsoleval(
    *,
    root: str,
    metadata_root: str,
    split: str | None = None,
    mask_root: str | None = None,
    image_size: Annotated[int, Range(1), PROTOCOL] = 224,
    box_rescale: Annotated[BoxRescale, PROTOCOL] = BoxRescale.wsoleval,
    num_classes: int | None = 1000,
) -> WsolDataset:
    """A wsolevaluation split: images under ``root``, metadata under ``metadata_root``, or under
    ``metadata_root/split`` when ``split`` is set (``metadata/CUB`` with ``split=val`` or ``test``: the
    reference's layout, so a sweep over ``dataset.split=val,test`` evaluates both)."""
    root = require_dir(root, "dataset.root")
    if split is not None:
        require_dir(metadata_root, "dataset.metadata_root")
        metadata_root = os.path.join(metadata_root, split)
        if not os.path.isdir(metadata_root):
            splits = sorted(d for d in os.listdir(os.path.dirname(metadata_root)) if not d.startswith("."))
            raise WsolError(f"dataset.split={split}: no folder {metadata_root} (splits there: {', '.join(splits)})")
    records = read_wsoleval_metadata(metadata_root)
    has_masks = any(r.mask_paths for r in records)
    if has_masks and mask_root is None:
        raise WsolError("this split has masks (OpenImages): set dataset.mask_root=/path/to/masks")
    return WsolDataset(
        records,
        root,
        image_size=image_size,
        box_rescale=box_rescale,
        num_classes=num_classes,
        mask_root=mask_root,
        requires_boxes=not has_masks,
        name="wsoleval",
    )
