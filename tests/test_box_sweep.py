"""The union-find box engine: identical to the reference backends, and its parts by hand."""

import cv2
import numpy as np
import pytest
from scipy import ndimage
from skimage.measure import euler_number

from wsol.localize import box_iou, localize, sweep_thresholds, threshold_levels
from wsol.localize.sweep import (
    _NEIGHBOUR_GROUPS,
    _QUAD_TABLES,
    NEIGHBOUR_OFFSETS,
    reference_sweep_boxes,
    sweep_boxes,
    sweep_levels,
)
from wsol.metrics import BoxAccumulator


def _maps(rng, count: int, size: tuple[int, int], kind: str) -> np.ndarray:
    """uint8 maps: white noise (many components and holes), smooth blobs, or rings (holes)."""
    h, w = size
    if kind == "noise":
        return rng.integers(0, 256, (count, h, w)).astype(np.uint8)
    out = []
    for _ in range(count):
        m = ndimage.gaussian_filter(rng.random((h, w)), rng.uniform(0.7, 3))
        if kind == "rings":
            yy, xx = np.mgrid[:h, :w]
            r = np.hypot(yy - rng.uniform(0, h), xx - rng.uniform(0, w))
            m = m + np.exp(-((r - min(h, w) / 4) ** 2) / 4)
        out.append((m - m.min()) / max(m.max() - m.min(), 1e-12))
    return (np.stack(out) * 255).astype(np.uint8)


def _gt(rng, count: int, size: tuple[int, int], k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    h, w = size
    xs, ys = np.sort(rng.integers(0, w, (count, k, 2)), -1), np.sort(rng.integers(0, h, (count, k, 2)), -1)
    boxes = np.stack([xs[..., 0], ys[..., 0], xs[..., 1], ys[..., 1]], -1)
    valid = rng.random((count, k)) < 0.6
    valid[:, 0] = True
    return boxes, valid


def _assert_same(a, b, gt=None, valid=None):
    np.testing.assert_array_equal(a.offsets, b.offsets)
    np.testing.assert_array_equal(a.level, b.level)
    np.testing.assert_array_equal(a.index, b.index)
    np.testing.assert_array_equal(a.box, b.box)
    np.testing.assert_array_equal(a.iou_largest, b.iou_largest)  # bitwise: the same float64 formula
    np.testing.assert_array_equal(a.iou_all, b.iou_all)
    if gt is not None:  # the best box of each level has that level's best IoU (boxes tied in IoU may differ)
        owners = np.repeat(np.arange(len(gt)), np.diff(a.offsets))
        for sweep in (a, b):
            best = zip(sweep.best_box, owners, strict=True)
            ious = np.array([box_iou(box, gt[o][valid[o]]).max() for box, o in best])
            np.testing.assert_array_equal(ious, sweep.iou_all)


@pytest.mark.parametrize("rule", ["cc", "contours"])
@pytest.mark.parametrize("kind", ["noise", "smooth", "rings"])
def test_identical_to_the_reference_backend(rule, kind):
    rng = np.random.default_rng(["cc", "contours"].index(rule) * 3 + ["noise", "smooth", "rings"].index(kind))
    for size in [(1, 1), (1, 9), (7, 1), (13, 17), (48, 40)]:
        maps = _maps(rng, 6, size, kind)
        boxes, valid = _gt(rng, len(maps), size)
        for interval in (0.1, 0.01):
            levels = threshold_levels(sweep_thresholds(interval), maps.reshape(len(maps), -1).max(1))
            fast = sweep_boxes(maps, levels, boxes, valid, rule)
            _assert_same(fast, reference_sweep_boxes(maps, levels, boxes, valid, rule), boxes, valid)
            if rule == "cc":
                assert fast.fallbacks == 0


def test_contours_falls_back_exactly_on_holes_and_ties():
    ring = np.zeros((1, 9, 9), np.uint8)
    ring[0, 2:7, 2:7] = 200
    ring[0, 4, 4] = 0  # a one-pixel hole
    gt, valid = np.array([[[4, 4, 4, 4]]]), np.ones((1, 1), bool)
    levels = np.array([[0, 100]])
    fast = sweep_boxes(ring, levels, gt, valid, "contours")
    assert fast.fallbacks == 2  # two levels, each with the hole
    # RETR_TREE adds the hole's contour (the 3×3 pixels around it) with box (3, 3, 6, 6), far corner x + w:
    # 4×4 inclusive, IoU 1/16 with the hole pixel; the outer box (2, 2, 7, 7) is 6×6: IoU 1/36
    assert fast.iou_all.tolist() == [1 / 16, 1 / 16] and fast.box.tolist() == [[2, 2, 7, 7]] * 2
    assert sweep_boxes(ring, levels, gt, valid, "cc").iou_all.tolist() == [1 / 36, 1 / 36]
    two = np.zeros((1, 5, 9), np.uint8)
    two[0, 1, 1] = two[0, 3, 6] = 9  # two single pixels: contour area 0 each, different boxes
    tied = sweep_boxes(two, np.array([[0]]), gt, valid, "contours")
    assert tied.fallbacks == 1
    _assert_same(tied, reference_sweep_boxes(two, np.array([[0]]), gt, valid, "contours"))


def test_cc_largest_is_most_pixels_then_first_in_raster_order():
    m = np.zeros((1, 6, 10), np.uint8)
    m[0, 4, 1:4] = 50  # 3 pixels, lower row
    m[0, 0, 6:9] = 50  # 3 pixels, first in raster order
    m[0, 2, 0] = 50
    out = sweep_boxes(m, np.array([[0]]), np.array([[[0, 0, 9, 5]]]), np.ones((1, 1), bool), "cc")
    assert out.box[0].tolist() == [6, 0, 9, 1]  # (x, y, x + w, y + h)
    m[0, 5, 2] = 50  # the lower component grows to 4 pixels
    out = sweep_boxes(m, np.array([[0]]), np.array([[[1, 4, 4, 5]]]), np.ones((1, 1), bool), "cc")
    assert out.box[0].tolist() == [1, 4, 4, 5]  # far corner clipped to (W - 1, H - 1)
    assert out.iou_largest[0] == 1.0


def test_empty_foreground_is_the_zero_box():
    m = np.full((1, 5, 5), 7, np.uint8)
    gt, valid = np.array([[[0, 0, 1, 1]]]), np.ones((1, 1), bool)
    for rule in ("cc", "contours"):
        out = sweep_boxes(m, np.array([[7]]), gt, valid, rule)
        assert out.box[0].tolist() == [0, 0, 0, 0] and out.iou_largest[0] == out.iou_all[0] == 0.25


def test_quad_tables_give_euler_number_and_contour_area():
    d_euler4, d_area2 = _QUAD_TABLES
    rng = np.random.default_rng(3)
    for _ in range(200):
        mask = rng.random((9, 11)) < rng.uniform(0.2, 0.9)
        added = np.zeros((11, 13), bool)
        euler4 = area2 = 0
        for y, x in rng.permutation(np.argwhere(mask)):  # any order of adding gives the same totals
            bits = sum(1 << k for k, (dy, dx) in enumerate(NEIGHBOUR_OFFSETS) if added[y + 1 + dy, x + 1 + dx])
            added[y + 1, x + 1] = True
            euler4, area2 = euler4 + d_euler4[bits], area2 + d_area2[bits]
        assert euler4 == 4 * euler_number(mask, connectivity=2)
        contours, hierarchy = cv2.findContours(mask.astype(np.uint8), cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[-2:]
        if contours and (hierarchy[0][:, 3] < 0).all():  # no holes: the outer contours' areas add up
            assert area2 == 2 * sum(cv2.contourArea(c) for c in contours)
    # by hand: a 3×3 square is four full quads (area 4); a single pixel has area 0 and Euler number 1
    assert d_area2[0b11111111] - d_area2[0] == 2 * 4 - 2 * 2  # the centre pixel completes four quads
    assert d_euler4[0] == 4 and d_area2[0] == 0


def test_neighbour_groups():
    n_groups, group_first = _NEIGHBOUR_GROUPS
    assert n_groups[0] == 0 and n_groups[0xFF] == 1
    corners = 0b10100101  # NW, NE, SW, SE: four pixels not adjacent to each other
    assert n_groups[corners] == 4 and group_first[corners].tolist() == [0, 2, 5, 7]
    assert n_groups[0b00000011] == 1  # NW and N touch
    assert n_groups[0b00010001] == 2  # NW and E do not
    assert n_groups[0b00010010] == 1  # N and E touch diagonally
    assert n_groups.max() == 4


def test_sweep_levels_and_bad_input():
    offsets, level, index = sweep_levels(np.array([[0, 0, 3, 5], [2, 2, 2, 2]]))
    assert offsets.tolist() == [0, 3, 4] and level.tolist() == [0, 3, 5, 2]
    assert index.tolist() == [[0, 0, 1, 2], [3, 3, 3, 3]]
    with pytest.raises(ValueError, match="non-decreasing"):
        sweep_levels(np.array([[3, 1]]))
    m, gt = np.zeros((1, 3, 3), np.uint8), np.zeros((1, 1, 4), int)
    with pytest.raises(ValueError, match="valid GT box"):
        sweep_boxes(m, np.array([[0]]), gt, np.zeros((1, 1), bool))
    with pytest.raises(KeyError):  # a rule or engine the config did not check
        sweep_boxes(m, np.array([[0]]), gt, np.ones((1, 1), bool), "blobs")


@pytest.mark.parametrize("rule", ["cc", "contours"])
def test_accumulator_engines_agree(rule):
    rng = np.random.default_rng(7)
    maps = np.concatenate([_maps(rng, 5, (32, 32), kind) for kind in ("smooth", "rings", "noise")])
    boxes, valid = _gt(rng, len(maps), (32, 32))
    top1, top5 = rng.random(len(maps)) < 0.5, rng.random(len(maps)) < 0.8
    accs = {}
    for engine in ("fast", "reference"):
        acc = accs[engine] = BoxAccumulator(sweep_thresholds(0.01))
        for part in (slice(0, 7), slice(7, None)):
            sweep = localize(maps[part], acc.thresholds, boxes[part], valid[part], rule, engine)
            peaks = maps[part].reshape(len(maps[part]), -1).max(1)
            acc.update(sweep, peaks, boxes[part], valid[part], top1[part], top5[part])
    fast, ref = accs["fast"], accs["reference"]
    for name in ("hits", "hits_top1", "hits_top5"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(ref, name))
    assert fast.compute() == ref.compute() and fast.image_results() == ref.image_results()
    assert (fast.fallbacks > 0) == (rule == "contours") and ref.fallbacks == 0
    # the compact records give back the counts exactly (what a resumed or merged run recomputes)
    rebuilt = BoxAccumulator(fast.thresholds)
    for records in fast.records:
        rebuilt.merge(BoxAccumulator.from_records(fast.thresholds, fast.deltas, records, True, 0))
    for name in ("hits", "hits_top1", "hits_top5"):
        np.testing.assert_array_equal(getattr(rebuilt, name), getattr(fast, name))
    assert rebuilt.image_results() == fast.image_results()
    assert all(r.largest.dtype == np.uint8 for r in fast.records)  # 32 × 32 maps: one byte per coordinate
