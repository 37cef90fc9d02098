"""The compiled union-find pass of :mod:`wsol.localize.sweep` (numba).

Every function here is compiled at module level with ``cache=True``, so numba keeps the machine code
on disk and a new process loads it instead of compiling: next to this file (``__pycache__``) where
that is writable, else in the user's cache directory (``$XDG_CACHE_HOME/numba`` or
``~/.cache/numba``; ``NUMBA_CACHE_DIR`` overrides both). numba keys each cached entry by this
file's content hash, the argument types and the CPU (name and features), so an edited file or
another machine's cache is never loaded: it is compiled again and added. The whole pass lives in
this one file so that the content hash covers all of it. Imported lazily, on the first sweep.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["kernel"]

# columns of the per-component rows of the pass (read at a component's root): pixel count, 2 × polygon
# area, first pixel (smallest padded index: raster order), bounding box x0, y0, x1, y1 (inclusive)
COUNT, AREA2, FIRST, X0, Y0, X1, Y1 = range(7)


@numba.njit(cache=True, inline="always")
def find(parent, i):
    """The root of ``i``'s component, compressing the path."""
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
def one_map(m, lv, gt, valid, contours, tables, iou_l, iou_a, box, best_box, defer):
    """Fill ``iou_l``, ``iou_a``, ``box`` (the largest region's), ``best_box`` (the region with the best IoU)
    and ``defer`` for the ascending distinct levels ``lv`` of map ``m``."""
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
        best_all = -1.0
        best_all_root = -1
        for i in range(n_roots):
            r = roots[i]
            if parent[r] != r:
                continue
            roots[live] = r
            live += 1
            iou = best_iou(region_box(node, r, w, h), gt, valid)
            if iou > best_all:
                best_all, best_all_root = iou, r
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
        closest = region_box(node, best_all_root, w, h) if live else (0, 0, 0, 0)
        iou_l[j] = best_iou(largest, gt, valid)
        iou_a[j] = best_all if live else iou_l[j]
        box[j, 0], box[j, 1], box[j, 2], box[j, 3] = largest
        best_box[j, 0], best_box[j, 1], best_box[j, 2], best_box[j, 3] = closest
        defer[j] = contours and (tied or 4 * live != euler4)  # a hole or a tie: the reference decides


@numba.njit(cache=True, parallel=True, nogil=True)
def kernel(maps, offsets, levels, gt, valid, contours, d_euler4, d_area2, n_groups, group_first):
    total = len(levels)
    iou_l = np.zeros(total)
    iou_a = np.zeros(total)
    box = np.zeros((total, 4), np.int64)
    best_box = np.zeros((total, 4), np.int64)
    defer = np.zeros(total, np.bool_)
    for b in numba.prange(len(maps)):
        lo, hi = offsets[b], offsets[b + 1]
        tables = (d_euler4, d_area2, n_groups, group_first)
        one_map(maps[b], levels[lo:hi], gt[b], valid[b], contours, tables, iou_l[lo:hi], iou_a[lo:hi], box[lo:hi],
                best_box[lo:hi], defer[lo:hi])
    return iou_l, iou_a, box, best_box, defer
