"""Every threshold's boxes in one pass: union-find over the pixels of a map in decreasing value.

The foreground at cut level ``L`` is ``map > L``; lowering ``L`` only adds pixels, so one pass that
adds pixels from the brightest down, merging each with its already-added 8-neighbours
(union-find, Najman & Couprie's component-tree construction), holds after each level exactly the
8-connected components of that level's foreground. Each root carries its component's bounding
box, pixel count, first pixel in raster order and polygon area, so a level's largest region, the
best IoU of its regions with the GT boxes, and its box are read off the live roots. The cost is one
pass over the pixels plus the live roots per level, whatever the number of thresholds.

Two region rules, each identical to its reference backend in :mod:`wsol.localize.regions`:

``cc``        regions = components; largest = most pixels, first in raster order on ties
              (scikit-image ``label`` numbers components in raster order of their first pixel).
``contours``  ``cv2.findContours(RETR_TREE)`` contours. Without holes these are the components'
              outer contours, each of ``cv2.contourArea`` = ½ #(2×2 quads with three foreground
              pixels) + #(quads with four) of its component (a contour through pixel centres with
              8-connected steps). Holes are counted through the Euler number (Gray's bit-quads,
              E₈ = (Q₁ − Q₃ − 2·Q_D) / 4; holes = components − E₈). A level with a hole, or with two
              different boxes tied for the largest area, is handed to the reference backend, so the
              rule is the reference's exactly; such levels are counted in :attr:`SweepResult.fallbacks`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .regions import box_iou, region_boxes

__all__ = ["SweepResult", "sweep_boxes", "reference_sweep_boxes", "sweep_levels"]


@dataclass
class SweepResult:
    """Per map, the distinct cut levels of its thresholds and each level's region results.

    Map ``b`` owns entries ``offsets[b]:offsets[b + 1]`` (its distinct levels, ascending);
    ``index [B, T]`` maps each (map, threshold) to its entry.
    """

    offsets: np.ndarray  # int64 [B + 1]
    level: np.ndarray  # int64 [N]
    iou_largest: np.ndarray  # float64 [N]: IoU of the largest region with its best GT box
    iou_all: np.ndarray  # float64 [N]: best IoU over (all regions) × (GT boxes)
    box: np.ndarray  # int64 [N, 4]: the largest region's box
    best_box: np.ndarray  # int64 [N, 4]: the box of a region with the best IoU (iou_all is its IoU)
    index: np.ndarray  # int64 [B, T]
    fallbacks: int = 0  # levels computed by the reference backend (contours rule: holes or ties)


def sweep_levels(levels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct levels of each row of ``levels [B, T]`` (ascending rows): ``(offsets, level, index)``."""
    levels = np.asarray(levels, dtype=np.int64)
    if levels.shape[1] and (np.diff(levels, axis=1) < 0).any():
        raise ValueError("cut levels must be non-decreasing along the thresholds")
    new = np.ones(levels.shape, dtype=bool)
    new[:, 1:] = levels[:, 1:] != levels[:, :-1]
    counts = new.sum(axis=1)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    index = (np.cumsum(new, axis=1) - 1) + offsets[:-1, None]
    return offsets, levels[new], index


def _reference_entry(map_u8: np.ndarray, level: int, gt: np.ndarray, rule: str):
    """``(iou_largest, iou_all, largest box, best box)`` of one level from a reference backend."""
    boxes, largest = region_boxes(map_u8 > level, rule)
    ious = box_iou(boxes, gt).max(axis=1)
    best = int(np.argmax(ious))
    return float(ious[largest]), float(ious[best]), boxes[largest], boxes[best]


def _prepare(maps_u8, levels, gt_boxes, gt_valid):
    maps_u8 = np.ascontiguousarray(maps_u8, dtype=np.uint8)
    gt_boxes = np.ascontiguousarray(gt_boxes, dtype=np.int64).reshape(len(maps_u8), -1, 4)
    gt_valid = np.ascontiguousarray(gt_valid, dtype=np.bool_).reshape(len(maps_u8), -1)
    if len(maps_u8) and not gt_valid.any(axis=1).all():
        raise ValueError("every map needs at least one valid GT box")
    return maps_u8, gt_boxes, gt_valid, *sweep_levels(levels)


def reference_sweep_boxes(maps_u8, levels, gt_boxes, gt_valid, rule: str = "cc") -> SweepResult:
    """:func:`sweep_boxes` computed level by level with the reference backend (scikit-image or OpenCV)."""
    maps_u8, gt_boxes, gt_valid, offsets, level, index = _prepare(maps_u8, levels, gt_boxes, gt_valid)
    n = len(level)
    out = SweepResult(offsets, level, np.zeros(n), np.zeros(n), np.zeros((n, 4), np.int64), np.zeros((n, 4), np.int64),
                      index)
    for b in range(len(maps_u8)):
        for j in range(offsets[b], offsets[b + 1]):
            _set_reference(out, j, maps_u8[b], gt_boxes[b][gt_valid[b]], rule)
    return out


def _set_reference(out: SweepResult, j: int, map_u8: np.ndarray, gt: np.ndarray, rule: str) -> None:
    out.iou_largest[j], out.iou_all[j], out.box[j], out.best_box[j] = _reference_entry(map_u8, int(out.level[j]), gt,
                                                                                       rule)


def sweep_boxes(maps_u8, levels, gt_boxes, gt_valid, rule: str = "cc") -> SweepResult:
    """Region results of every map at every cut level, by the union-find pass.

    Args:
        maps_u8: ``[B, H, W]`` uint8 maps.
        levels: ``[B, T]`` integer cut levels, non-decreasing along ``T`` (foreground = ``map > level``).
        gt_boxes: ``[B, K, 4]`` GT boxes (x0, y0, x1, y1, inclusive) with ``gt_valid [B, K]``, ≥ 1 valid per map.
        rule: ``cc`` or ``contours`` (see the module docstring).
    """
    maps_u8, gt_boxes, gt_valid, offsets, level, index = _prepare(maps_u8, levels, gt_boxes, gt_valid)
    iou_largest, iou_all, box, best_box, defer = _kernel()(
        maps_u8, offsets, level, gt_boxes, gt_valid, {"cc": False, "contours": True}[rule], *_QUAD_TABLES,
        *_NEIGHBOUR_GROUPS,
    )
    out = SweepResult(offsets, level, iou_largest, iou_all, box, best_box, index)
    deferred = np.flatnonzero(defer)
    owners = np.searchsorted(offsets, deferred, side="right") - 1
    for j, b in zip(deferred, owners, strict=True):
        _set_reference(out, j, maps_u8[b], gt_boxes[b][gt_valid[b]], rule)
    out.fallbacks = len(deferred)
    return out


NEIGHBOUR_OFFSETS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]  # bit k of a mask


def _quad_tables() -> tuple[np.ndarray, np.ndarray]:
    """Change in 4 × Euler number and in 2 × polygon area when a pixel joins the foreground, by the
    bit mask of its foreground 8-neighbours (bits: NW, N, NE, W, E, SW, S, SE).

    Over the four 2×2 quads holding the pixel, with ``k`` foreground pixels in a quad:
    4E = Σ [k = 1] − [k = 3] − 2 [two diagonal pixels] (Gray's bit-quads, 8-connectivity), and
    2A = Σ [k = 3] + 2 [k = 4].
    """
    bit = {offset: 1 << k for k, offset in enumerate(NEIGHBOUR_OFFSETS)}
    # each quad holding the pixel: its corner diagonal to the pixel, and its two side corners
    quads = [((dy, dx), (dy, 0), (0, dx)) for dy in (-1, 1) for dx in (-1, 1)]
    d_euler4, d_area2 = np.zeros(256, np.int64), np.zeros(256, np.int64)
    for mask in range(256):
        for diagonal, side_a, side_b in quads:
            o, a, b = (bool(mask & bit[c]) for c in (diagonal, side_a, side_b))
            k = o + a + b
            before = (k == 1) - (k == 3) - 2 * (a and b and not o)
            after = (k + 1 == 1) - (k + 1 == 3) - 2 * (o and not a and not b)
            d_euler4[mask] += after - before
            d_area2[mask] += ((k + 1 == 3) + 2 * (k + 1 == 4)) - ((k == 3) + 2 * (k == 4))
    return d_euler4, d_area2


def _neighbour_groups() -> tuple[np.ndarray, np.ndarray]:
    """By the bit mask of a pixel's foreground 8-neighbours: how many groups they form, and the first
    neighbour of each. Neighbours adjacent to each other already share a component, so a new pixel
    needs one union per group (at most four) instead of one per neighbour."""
    offsets = NEIGHBOUR_OFFSETS
    n_groups, group_first = np.zeros(256, np.int64), np.zeros((256, 4), np.int64)
    for mask in range(256):
        present = [k for k in range(8) if mask >> k & 1]
        group = {k: k for k in present}
        for a in present:
            for b in present:
                if max(abs(offsets[a][0] - offsets[b][0]), abs(offsets[a][1] - offsets[b][1])) == 1:
                    ga, gb = group[a], group[b]
                    for k in present:
                        if group[k] == gb:
                            group[k] = ga
        firsts = sorted({min(k for k in present if group[k] == g) for g in set(group.values())})
        n_groups[mask] = len(firsts)
        group_first[mask, : len(firsts)] = firsts
    return n_groups, group_first


_QUAD_TABLES = _quad_tables()
_NEIGHBOUR_GROUPS = _neighbour_groups()


def load_kernel() -> None:
    """Load the compiled kernel (numba's import and its disk cache; compiled on a machine's first run) with a
    one-pixel sweep: the argument types are every call's (:func:`_prepare` fixes them), so the machine code
    loaded is the one later sweeps run. The loop calls it on its CPU thread before the first batch arrives."""
    sweep_boxes(np.zeros((1, 1, 1), np.uint8), np.zeros((1, 1), np.int64), np.zeros((1, 1, 4), np.int64),
                np.ones((1, 1), np.bool_))


def _kernel():
    """The compiled pass (:mod:`wsol.localize.kernels`, imported on first use: numba and the cached machine code
    load only when a sweep runs)."""
    from .kernels import kernel

    return kernel
