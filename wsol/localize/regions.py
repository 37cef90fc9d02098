"""Region boxes of one cut level, by the reference backends (scikit-image and OpenCV), and the one IoU.

At cut level ``L`` the foreground is ``map_u8 > L``. Each region of it gives the box
``(x, y, x + w, y + h)`` of its bounding rectangle ``(x, y, w, h)``, with the far corner clipped to
``(W - 1, H - 1)``; an empty foreground gives the box ``(0, 0, 0, 0)``. Two rules define the regions:

``cc``        8-connected components (scikit-image); *largest* = most pixels, first in raster order on ties;
``contours``  the reference's ``cv2.findContours(RETR_TREE, CHAIN_APPROX_SIMPLE)``: outer *and hole*
              contours; *largest* = largest ``cv2.contourArea`` (first on ties).

The two agree on foregrounds without holes; a hole adds a (smaller) contour box under ``contours``,
and polygon area can rank regions differently from pixel count. :mod:`wsol.localize.sweep` gives
the same boxes for every level at once.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BOX_RULES", "EMPTY_BOX", "box_iou", "box_overlaps", "component_boxes", "contour_boxes", "region_boxes",
           "level_boxes"]

EMPTY_BOX = np.zeros((1, 4), dtype=np.int64)


def _clip_far_corner(boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Clip ``x1, y1`` of ``(x, y, x + w, y + h)`` boxes to ``(W - 1, H - 1)``, as the reference does."""
    boxes[:, 2] = np.minimum(boxes[:, 2], shape[1] - 1)
    boxes[:, 3] = np.minimum(boxes[:, 3], shape[0] - 1)
    return boxes


def component_boxes(foreground: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes ``[M, 4]`` and pixel areas ``[M]`` of the 8-connected components of a bool ``[H, W]`` mask.

    Box convention as in the module docstring; no component gives one box ``(0, 0, 0, 0)`` of area 0.
    """
    from scipy import ndimage
    from skimage.measure import label

    labels, count = label(foreground, connectivity=2, return_num=True)
    if count == 0:
        return EMPTY_BOX.copy(), np.zeros(1, dtype=np.int64)
    slices = ndimage.find_objects(labels)
    boxes = _clip_far_corner(
        np.array([[s[1].start, s[0].start, s[1].stop, s[0].stop] for s in slices], dtype=np.int64), foreground.shape
    )
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    return boxes, areas


def contour_boxes(foreground: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes ``[M, 4]`` and ``cv2.contourArea`` ``[M]`` of the reference's contours of a bool ``[H, W]`` mask.

    ``RETR_TREE`` returns hole contours too, so a ring gives its outer box and its hole's box.
    No contour gives one box ``(0, 0, 0, 0)`` of area 0.
    """
    import cv2

    binary = foreground.astype(np.uint8) * 255
    contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[-2]
    if len(contours) == 0:
        return EMPTY_BOX.copy(), np.zeros(1)
    rects = np.array([cv2.boundingRect(c) for c in contours], dtype=np.int64).reshape(-1, 4)
    rects[:, 2:] += rects[:, :2]  # (x, y, w, h) → (x, y, x + w, y + h)
    boxes = _clip_far_corner(rects, foreground.shape)
    return boxes, np.array([cv2.contourArea(c) for c in contours])


BOX_RULES = {"cc": component_boxes, "contours": contour_boxes}  # the region rules (localize.backend)


def region_boxes(foreground: np.ndarray, rule: str = "cc") -> tuple[np.ndarray, int]:
    """All boxes ``[M, 4]`` of a bool mask and the index of the largest, by the rule (:data:`BOX_RULES`)."""
    boxes, sizes = BOX_RULES[rule](foreground)
    return boxes, int(np.argmax(sizes))


def level_boxes(map_u8: np.ndarray, level: int, mode: str, rule: str = "cc") -> np.ndarray:
    """Boxes of ``map_u8 > level``: all regions (``mode="all"``) or the largest one (``"largest"``)."""
    boxes, largest = region_boxes(map_u8 > level, rule)
    return {"all": boxes, "largest": boxes[[largest]]}[mode]


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Inclusive IoU ``[..., M, K]`` of boxes ``[..., M, 4]`` and ``[..., K, 4]`` (x0, y0, x1, y1; +1 pixel
    convention; leading dimensions broadcast, a single box ``[4]`` is ``[1, 4]``):
    ``inter / (area_a + area_b − inter)`` with ``area = (x1 − x0 + 1)(y1 − y0 + 1)``, in float64. The fast
    engine's compiled twin (:func:`wsol.localize.kernels.best_iou`) computes the same operations, so the two
    agree bit for bit (tested).

    Empty inputs give an empty ``[..., M, K]`` array.
    """
    inter, area_a, area_b = box_overlaps(boxes_a, boxes_b)
    return inter / (area_a + area_b - inter)


def box_overlaps(boxes_a: np.ndarray, boxes_b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(intersection, area_a, area_b)``, each ``[..., M, K]``, of boxes ``[..., M, 4]`` and ``[..., K, 4]`` with
    the inclusive convention of :func:`box_iou` (float64; IoG and IoB are ``inter / area_b``, ``inter / area_a``)."""
    a, b = (np.asarray(x, dtype=np.float64) for x in (boxes_a, boxes_b))
    a, b = (x.reshape(-1, 4) if x.ndim < 2 else x for x in (a, b))
    a, b = a[..., :, None, :], b[..., None, :, :]
    iw = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1
    ih = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    return inter, np.broadcast_to(area_a, inter.shape), np.broadcast_to(area_b, inter.shape)
