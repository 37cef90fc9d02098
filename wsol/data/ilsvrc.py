"""ImageNet (ILSVRC2012) validation images with their Pascal-VOC XML boxes.

Images ``<root>/ILSVRC2012_val_XXXXXXXX.JPEG``; annotations ``<ann_root>/ILSVRC2012_val_XXXXXXXX.xml``
(from ``ILSVRC2012_bbox_val_v3.tgz``). Box coordinates are taken as written in the XML, as
wsolevaluation's ILSVRC metadata does. Class index = position of the synset in the standard
sorted order of the 1000 wnids: read from ``synsets_file`` (``LOC_synset_mapping.txt`` or one
wnid per line), or, for the full validation set, the sorted wnids found in the annotations.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from typing import Annotated

import numpy as np

from ..errors import WsolError
from ..schema import PROTOCOL, Range
from . import DATASETS
from .base import BoxRescale, Record, WsolDataset, require_dir, require_file

__all__ = ["parse_voc_xml", "read_ilsvrc", "build_ilsvrc"]


def parse_voc_xml(path: str) -> tuple[list[str], np.ndarray, tuple[int, int] | None]:
    """Synset names, boxes ``[K, 4]`` and ``(width, height)`` of one Pascal-VOC XML file."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise WsolError(f"{path}: not valid XML ({e})") from None
    names, boxes = [], []
    for obj in root.iter("object"):
        bb = obj.find("bndbox")
        if bb is None:
            continue
        names.append(obj.findtext("name", "").strip())
        boxes.append([float(bb.findtext(k, "nan")) for k in ("xmin", "ymin", "xmax", "ymax")])
    size = root.find("size")
    wh = None
    if size is not None and size.findtext("width"):
        wh = (int(float(size.findtext("width"))), int(float(size.findtext("height"))))
    return names, np.asarray(boxes, dtype=np.float64).reshape(-1, 4), wh


def _read_synsets(path: str) -> list[str]:
    with open(require_file(path, "dataset.synsets_file")) as f:
        wnids = [line.split()[0] for line in f if line.strip()]
    if len(wnids) != len(set(wnids)):
        raise WsolError(f"{path}: repeated synset ids")
    return wnids


def read_ilsvrc(root: str, ann_root: str, synsets_file: str | None = None) -> list[Record]:
    """Records for every image under ``root`` that has an XML file under ``ann_root``."""
    images = sorted(f for f in os.listdir(root) if f.lower().endswith((".jpeg", ".jpg", ".png")))
    parsed = {}
    for name in images:
        xml = os.path.join(ann_root, os.path.splitext(name)[0] + ".xml")
        parsed[name] = parse_voc_xml(xml) if os.path.isfile(xml) else ([], np.zeros((0, 4)), None)
    if synsets_file:
        wnids = _read_synsets(synsets_file)
    else:
        wnids = sorted({n for names, _, _ in parsed.values() for n in names})
        if len(wnids) != 1000:
            raise WsolError(
                f"the annotations name {len(wnids)} synsets, not 1000, so the class order is unknown; "
                "pass dataset.synsets_file=LOC_synset_mapping.txt"
            )
    index = {w: i for i, w in enumerate(wnids)}
    records = []
    for name, (names, boxes, size) in parsed.items():
        # No object: label 0 with no box (skipped as no_boxes); unknown synset: out of range (skipped).
        label = index.get(names[0], len(wnids)) if names else 0
        keep = [i for i, n in enumerate(names) if n == (names[0] if names else None)]
        records.append(Record(image_id=name, label=label, boxes=boxes[keep], size=size))
    return records


@DATASETS.register("ilsvrc")
def build_ilsvrc(
    *,
    root: str,
    ann_root: str | None = None,
    synsets_file: str | None = None,
    image_size: Annotated[int, Range(1), PROTOCOL] = 224,
    box_rescale: Annotated[BoxRescale, PROTOCOL] = BoxRescale.wsoleval,
    num_classes: int | None = 1000,
) -> WsolDataset:
    """ImageNet val images under ``root`` with XML boxes under ``ann_root`` (default: ``root``)."""
    root = require_dir(root, "dataset.root")
    ann_root = require_dir(ann_root or root, "dataset.ann_root")
    records = read_ilsvrc(root, ann_root, synsets_file)
    return WsolDataset(
        records, root, image_size=image_size, box_rescale=box_rescale, num_classes=num_classes, name="ilsvrc"
    )
