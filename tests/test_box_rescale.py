"""GT boxes rescale to the eval size in each reference's own floating-point order, checked on every box of the
real CUB and ILSVRC metadata (clovaai/wsolevaluation's, ``tests/data/wsolevaluation/``)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from wsol.config import compose_config
from wsol.data.base import BoxRescale, rescale_boxes
from wsol.data.wsoleval import read_wsoleval_metadata

SPLITS = [("CUB", "test"), ("CUB", "val"), ("ILSVRC", "test"), ("ILSVRC", "val")]


def _reference_metadata(folder: str) -> tuple[dict, dict]:
    """Boxes and sizes read as wsolevaluation's ``data_loaders.get_bounding_boxes`` / ``get_image_sizes`` read
    them (``int`` of each field)."""
    boxes, sizes = {}, {}
    with open(os.path.join(folder, "localization.txt")) as f:
        for line in f.readlines():
            image_id, x0s, y0s, x1s, y1s = line.strip("\n").split(",")
            boxes.setdefault(image_id, []).append((int(x0s), int(y0s), int(x1s), int(y1s)))
    with open(os.path.join(folder, "image_sizes.txt")) as f:
        for line in f.readlines():
            image_id, ws, hs = line.strip("\n").split(",")
            sizes[image_id] = (int(ws), int(hs))
    return boxes, sizes


def wsoleval_resize_bbox(box, image_size, resize_size):
    """wsolevaluation's ``evaluation.py`` ``resize_bbox`` (commit 96f4b88), as it is written there."""
    box_x0, box_y0, box_x1, box_y1 = map(float, box)
    image_w, image_h = map(float, image_size)
    new_image_w, new_image_h = map(float, resize_size)
    newbox_x0 = box_x0 * new_image_w / image_w
    newbox_y0 = box_y0 * new_image_h / image_h
    newbox_x1 = box_x1 * new_image_w / image_w
    newbox_y1 = box_y1 * new_image_h / image_h
    return int(newbox_x0), int(newbox_y0), int(newbox_x1), int(newbox_y1)


def tscam_cub_box(box, image_width, image_height, resize_size=224, crop_size=224, shift_size=0):
    """TS-CAM's ``lib/datasets/cub.py`` test ``__getitem__`` (commit 25aece4) as written there, from the box
    ``x, y, bbox_width, bbox_height`` of CUB's ``bounding_boxes.txt``."""
    [x, y, bbox_width, bbox_height] = box
    left_bottom_x = int(max(x / image_width * resize_size - shift_size, 0))
    left_bottom_y = int(max(y / image_height * resize_size - shift_size, 0))
    right_top_x = int(min((x + bbox_width) / image_width * resize_size - shift_size, crop_size - 1))
    right_top_y = int(min((y + bbox_height) / image_height * resize_size - shift_size, crop_size - 1))
    return left_bottom_x, left_bottom_y, right_top_x, right_top_y


def tscam_imagenet_boxes(bbox, image_width, image_height, resize_size=224, crop_size=224, shift_size=0):
    """TS-CAM's ``lib/datasets/imagenet.py`` test ``__getitem__`` (several boxes, NumPy) as written there."""
    [x1, y1, x2, y2] = np.split(bbox, 4, 1)
    left_bottom_x = np.maximum(x1 / image_width * resize_size - shift_size, 0).astype(int)
    left_bottom_y = np.maximum(y1 / image_height * resize_size - shift_size, 0).astype(int)
    right_top_x = np.minimum(x2 / image_width * resize_size - shift_size, crop_size - 1).astype(int)
    right_top_y = np.minimum(y2 / image_height * resize_size - shift_size, crop_size - 1).astype(int)
    return np.concatenate((left_bottom_x, left_bottom_y, right_top_x, right_top_y), axis=1)


def _split(wsoleval_data: str, dataset: str, split: str):
    folder = os.path.join(wsoleval_data, "metadata", dataset, split)
    return read_wsoleval_metadata(folder), *_reference_metadata(folder)


def _former(record) -> np.ndarray:
    """wsol's former order, ``trunc(x * (S / w))``: one pixel off on some real boxes of every split."""
    w, h = record.size
    return np.trunc(record.boxes.reshape(-1, 4) * np.array([224 / w, 224 / h, 224 / w, 224 / h])).astype(np.int64)


@pytest.mark.parametrize(("dataset", "split"), SPLITS)
def test_every_box_rescales_as_wsolevaluation_computes_it(dataset, split, wsoleval_data):
    records, boxes, sizes = _split(wsoleval_data, dataset, split)
    ours = np.concatenate([rescale_boxes(r.boxes, r.size, 224, BoxRescale.wsoleval) for r in records])
    theirs = np.array([wsoleval_resize_bbox(b, sizes[r.image_id], (224, 224))
                       for r in records for b in boxes[r.image_id]])
    assert len(theirs) == sum(len(b) for b in boxes.values()) and len(theirs) >= 1000
    np.testing.assert_array_equal(ours, theirs)
    assert (np.concatenate([_former(r) for r in records]) != theirs).any(axis=1).sum() >= 1  # the test can fail


@pytest.mark.parametrize(("dataset", "split"), SPLITS)
def test_every_box_rescales_as_tscam_computes_it(dataset, split, wsoleval_data):
    """TS-CAM's loaders also clip the far corner to S − 1 (``eval.clip_gt_boxes=true`` in ``protocol=tscam``)."""
    records, boxes, sizes = _split(wsoleval_data, dataset, split)
    ours = np.concatenate([np.minimum(rescale_boxes(r.boxes, r.size, 224, "tscam"), 223) for r in records])
    if dataset == "CUB":  # CUB's own x, y, width, height; wsolevaluation's x1 = x + width
        theirs = [tscam_cub_box((b[0], b[1], b[2] - b[0], b[3] - b[1]), *sizes[r.image_id])
                  for r in records for b in boxes[r.image_id]]
    else:
        theirs = [tscam_imagenet_boxes(np.array(boxes[r.image_id], dtype=float), *sizes[r.image_id]) for r in records]
    theirs = np.concatenate([np.reshape(t, (-1, 4)) for t in theirs])
    np.testing.assert_array_equal(ours, theirs)
    assert (np.minimum(np.concatenate([_former(r) for r in records]), 223) != theirs).any(axis=1).sum() >= 1


def test_presets_choose_their_references_order():
    assert compose_config([]).dataset.box_rescale == BoxRescale.wsoleval
    assert compose_config(["protocol=tscam"]).dataset.box_rescale == BoxRescale.tscam
    assert compose_config(["protocol=wsoleval_v1"]).dataset.box_rescale == BoxRescale.wsoleval
