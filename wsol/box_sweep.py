"""Every threshold's boxes in one pass: union-find over the pixels of a map in decreasing value.

The foreground at cut level ``L`` is ``map > L``; lowering ``L`` only adds pixels, so one pass that
adds pixels from the brightest down, merging each with its already-added 8-neighbours
(union-find, Najman & Couprie's component-tree construction), holds after each level exactly the
8-connected components of that level's foreground. Each root carries its component's bounding
box, pixel count, first pixel in raster order and polygon area, so a level's largest region, the
best IoU of its regions with the GT boxes, and its box are read off the live roots. The cost is one
pass over the pixels plus the live roots per level, whatever the number of thresholds.

Two region rules, each identical to its reference backend in :mod:`wsol.localize`:

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

from .errors import WsolError
from .localize import box_iou, region_boxes

__all__ = ["SweepResult", "RULES", "sweep_boxes", "reference_sweep_boxes", "sweep_levels"]

RULES = ("cc", "contours")


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
    index: np.ndarray  # int64 [B, T]
    fallbacks: int = 0  # levels computed by the reference backend (contours rule: holes or ties)


def sweep_levels(levels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct levels of each row of ``levels [B, T]`` (ascending rows): ``(offsets, level, index)``."""
    levels = np.asarray(levels, dtype=np.int64)
    if levels.shape[1] and (np.diff(levels, axis=1) < 0).any():
        raise WsolError("cut levels must be non-decreasing along the thresholds")
    new = np.ones(levels.shape, dtype=bool)
    new[:, 1:] = levels[:, 1:] != levels[:, :-1]
    counts = new.sum(axis=1)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    index = (np.cumsum(new, axis=1) - 1) + offsets[:-1, None]
    return offsets, levels[new], index


def _reference_entry(map_u8: np.ndarray, level: int, gt: np.ndarray, backend: str) -> tuple[float, float, np.ndarray]:
    """``(iou_largest, iou_all, largest box)`` of one level from a reference backend."""
    boxes, largest = region_boxes(map_u8 > level, backend)
    ious = box_iou(boxes, gt).max(axis=1)
    return float(ious[largest]), float(ious.max()), boxes[largest]


def reference_sweep_boxes(maps_u8, levels, gt_boxes, gt_valid, rule: str = "cc") -> SweepResult:
    """:func:`sweep_boxes` computed level by level with the reference backend (scikit-image or OpenCV)."""
    offsets, level, index = sweep_levels(levels)
    n = len(level)
    out = SweepResult(offsets, level, np.zeros(n), np.zeros(n), np.zeros((n, 4), dtype=np.int64), index)
    for b in range(len(maps_u8)):
        gt = np.asarray(gt_boxes[b])[np.asarray(gt_valid[b], dtype=bool)]
        for j in range(offsets[b], offsets[b + 1]):
            out.iou_largest[j], out.iou_all[j], out.box[j] = _reference_entry(maps_u8[b], int(level[j]), gt, rule)
    return out


def sweep_boxes(maps_u8, levels, gt_boxes, gt_valid, rule: str = "cc") -> SweepResult:
    """Region results of every map at every cut level, by the union-find pass.

    Args:
        maps_u8: ``[B, H, W]`` uint8 maps.
        levels: ``[B, T]`` integer cut levels, non-decreasing along ``T`` (foreground = ``map > level``).
        gt_boxes: ``[B, K, 4]`` GT boxes (x0, y0, x1, y1, inclusive) with ``gt_valid [B, K]``, ≥ 1 valid per map.
        rule: ``cc`` or ``contours`` (see the module docstring).
    """
    if rule not in RULES:
        raise WsolError(f"localize.backend must be one of {', '.join(RULES)}, got {rule!r}")
    maps_u8 = np.ascontiguousarray(maps_u8, dtype=np.uint8)
    offsets, level, index = sweep_levels(levels)
    gt_boxes = np.ascontiguousarray(gt_boxes, dtype=np.int64).reshape(len(maps_u8), -1, 4)
    gt_valid = np.ascontiguousarray(gt_valid, dtype=np.bool_).reshape(len(maps_u8), -1)
    if len(maps_u8) and not gt_valid.any(axis=1).all():
        raise WsolError("every map needs at least one valid GT box")
    kernel = _kernel()
    iou_largest, iou_all, box, defer = kernel(
        maps_u8, offsets, level, gt_boxes, gt_valid, rule == "contours", *_QUAD_TABLES, *_NEIGHBOUR_GROUPS
    )
    out = SweepResult(offsets, level, iou_largest, iou_all, box, index)
    deferred = np.flatnonzero(defer)
    if len(deferred):
        owner = np.searchsorted(offsets, deferred, side="right") - 1
        for j, b in zip(deferred, owner, strict=True):
            gt = gt_boxes[b][gt_valid[b]]
            out.iou_largest[j], out.iou_all[j], out.box[j] = _reference_entry(maps_u8[b], int(level[j]), gt, rule)
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
# columns of the per-component rows of the pass (read at a component's root): pixel count, 2 × polygon
# area, first pixel (smallest padded index: raster order), bounding box x0, y0, x1, y1 (inclusive)
COUNT, AREA2, FIRST, X0, Y0, X1, Y1 = range(7)
_KERNEL = None


def _kernel():
    """The compiled pass (numba, cached on disk after the first compilation)."""
    global _KERNEL
    if _KERNEL is None:
        _KERNEL = _compile()
    return _KERNEL


def _compile():
    import numba

    @numba.njit(cache=True, inline="always")
    def find(parent, i):
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:  # path compression
            parent[i], i = root, parent[i]
        return root

    @numba.njit(cache=True, inline="always")
    def region_box(node, r, w, h):
        """The reference's box of root r's component: (x, y, x + w, y + h), far corner clipped to (W-1, H-1)."""
        return node[r, X0], node[r, Y0], min(node[r, X1] + 1, w - 1), min(node[r, Y1] + 1, h - 1)

    @numba.njit(cache=True, inline="always")
    def best_iou(box, gt, valid):
        """Best inclusive IoU of ``box`` (x0, y0, x1, y1) with the valid GT boxes."""
        bx0, by0, bx1, by1 = box
        best = 0.0
        area = (bx1 - bx0 + 1) * (by1 - by0 + 1)
        for g in range(gt.shape[0]):
            if valid[g]:
                iw = max(min(bx1, gt[g, 2]) - max(bx0, gt[g, 0]) + 1, 0)
                ih = max(min(by1, gt[g, 3]) - max(by0, gt[g, 1]) + 1, 0)
                inter = float(iw * ih)
                union = area + (gt[g, 2] - gt[g, 0] + 1) * (gt[g, 3] - gt[g, 1] + 1) - inter
                best = max(best, inter / union)
        return best

    @numba.njit(cache=True)
    def one_map(m, lv, gt, valid, contours, tables, iou_l, iou_a, box, defer):
        """Fill ``iou_l``, ``iou_a``, ``box`` and ``defer`` for the ascending distinct levels ``lv`` of map ``m``."""
        d_euler4, d_area2, n_groups, group_first = tables
        h, w = m.shape
        n = h * w
        wp = w + 2  # row length of the zero-padded arrays below; padded index = (y + 1) * wp + x + 1
        np_ = (h + 2) * wp
        # pixels in decreasing value, raster order within a value (a counting sort), as padded indices
        above = np.zeros(257, np.int64)  # after the cumsum: above[255 - v] = number of pixels with value > v
        for y in range(h):
            for x in range(w):
                above[256 - m[y, x]] += 1
        for v in range(256):
            above[v + 1] += above[v]
        slot = above[:256].copy()
        order = np.empty(n, np.int32)
        order_x = np.empty(n, np.int32)
        order_y = np.empty(n, np.int32)
        for y in range(h):
            for x in range(w):
                k = slot[255 - m[y, x]]
                order[k], order_x[k], order_y[k] = (y + 1) * wp + x + 1, x, y
                slot[255 - m[y, x]] += 1
        neighbours = np.array([-wp - 1, -wp, -wp + 1, -1, 1, wp - 1, wp, wp + 1])
        added = np.zeros(np_, np.uint8)
        parent = np.empty(np_, np.int32)
        node = np.empty((np_, 8), np.int32)  # per component, read at its root: see the column names above
        roots = np.empty(n, np.int64)
        n_roots = 0
        euler4 = 0  # 4 × Euler number (8-connectivity) of the current foreground
        done = 0
        for j in range(len(lv) - 1, -1, -1):  # levels from the highest down
            end = above[255 - lv[j]]  # the pixels with value > lv[j] are order[:end]
            for pos in range(done, end):
                p, x, y = order[pos], order_x[pos], order_y[pos]
                mask = (  # bits NW, N, NE, W, E, SW, S, SE (branch-free)
                    added[p - wp - 1] | (added[p - wp] << 1) | (added[p - wp + 1] << 2) | (added[p - 1] << 3)
                    | (added[p + 1] << 4) | (added[p + wp - 1] << 5) | (added[p + wp] << 6) | (added[p + wp + 1] << 7)
                )
                added[p] = 1
                euler4 += d_euler4[mask]
                groups = n_groups[mask]  # neighbours adjacent to each other already share a root
                if groups == 0:  # a new component
                    r = p
                    node[p, COUNT], node[p, AREA2], node[p, FIRST] = 1, 0, p
                    node[p, X0], node[p, Y0], node[p, X1], node[p, Y1] = x, y, x, y
                    roots[n_roots] = p
                    n_roots += 1
                else:  # join the first neighbour's component, then merge the others into it
                    r = find(parent, p + neighbours[group_first[mask, 0]])
                    node[r, COUNT] += 1
                    node[r, FIRST] = min(node[r, FIRST], p)
                    node[r, X0], node[r, Y0] = min(node[r, X0], x), min(node[r, Y0], y)
                    node[r, X1], node[r, Y1] = max(node[r, X1], x), max(node[r, Y1], y)
                    for k in range(1, groups):
                        s = find(parent, p + neighbours[group_first[mask, k]])
                        if s == r:
                            continue
                        if node[s, COUNT] > node[r, COUNT]:  # union by size
                            r, s = s, r
                        parent[s] = r
                        node[r, COUNT] += node[s, COUNT]
                        node[r, AREA2] += node[s, AREA2]
                        node[r, FIRST] = min(node[r, FIRST], node[s, FIRST])
                        node[r, X0], node[r, Y0] = min(node[r, X0], node[s, X0]), min(node[r, Y0], node[s, Y0])
                        node[r, X1], node[r, Y1] = max(node[r, X1], node[s, X1]), max(node[r, Y1], node[s, Y1])
                parent[p] = r
                node[r, AREA2] += d_area2[mask]
            done = end
            # read the level off the live roots (compacting the list)
            live = 0
            best = -1
            tied = False  # (contours) another root with the largest area and a different box
            best_all = 0.0
            for i in range(n_roots):
                r = roots[i]
                if parent[r] != r:
                    continue
                roots[live] = r
                live += 1
                best_all = max(best_all, best_iou(region_box(node, r, w, h), gt, valid))
                if best < 0:
                    best = r
                    continue
                key, best_key = (node[r, AREA2], node[best, AREA2]) if contours else (node[r, COUNT], node[best, COUNT])
                if key > best_key or (key == best_key and not contours and node[r, FIRST] < node[best, FIRST]):
                    best, tied = r, False
                elif key == best_key and contours:
                    tied = tied or not (node[r, X0 : Y1 + 1] == node[best, X0 : Y1 + 1]).all()
            n_roots = live
            largest = region_box(node, best, w, h) if live else (0, 0, 0, 0)  # empty foreground: (0, 0, 0, 0)
            iou_l[j] = best_iou(largest, gt, valid)
            iou_a[j] = best_all if live else iou_l[j]
            box[j, 0], box[j, 1], box[j, 2], box[j, 3] = largest
            defer[j] = contours and (tied or 4 * live != euler4)  # a hole or a tie: the reference decides

    @numba.njit(cache=True, parallel=True)
    def kernel(maps, offsets, levels, gt, valid, contours, d_euler4, d_area2, n_groups, group_first):
        total = len(levels)
        iou_l = np.zeros(total)
        iou_a = np.zeros(total)
        box = np.zeros((total, 4), np.int64)
        defer = np.zeros(total, np.bool_)
        for b in numba.prange(len(maps)):
            lo, hi = offsets[b], offsets[b + 1]
            tables = (d_euler4, d_area2, n_groups, group_first)
            one_map(maps[b], levels[lo:hi], gt[b], valid[b], contours, tables, iou_l[lo:hi], iou_a[lo:hi], box[lo:hi],
                    defer[lo:hi])
        return iou_l, iou_a, box, defer

    return kernel
