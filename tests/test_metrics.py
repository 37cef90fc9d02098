"""Box metrics against hand-computed values: inclusive IoU, components, counts, MaxBoxAcc(V2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsol.localize import box_iou, level_boxes, localize, sweep_thresholds, threshold_levels
from wsol.localize.regions import component_boxes
from wsol.maps import quantize
from wsol.metrics import BoxAccumulator, topk_correct
from wsol.ops import minmax_normalize


def test_box_iou_inclusive_convention():
    # 10x10 boxes overlapping on 5x5 pixels: 25 / (100 + 100 - 25)
    assert box_iou([[0, 0, 9, 9]], [[5, 5, 14, 14]])[0, 0] == pytest.approx(25 / 175)
    assert box_iou([[0, 0, 9, 9]], [[0, 0, 9, 9]])[0, 0] == 1.0
    assert box_iou([[0, 0, 9, 9]], [[10, 10, 12, 12]])[0, 0] == 0.0
    # a single pixel is a 1x1 box, not an empty one
    assert box_iou([[0, 0, 0, 0]], [[0, 0, 1, 1]])[0, 0] == pytest.approx(1 / 4)
    # touching edges share a row of pixels under the +1 convention: 1x10 / (2*20 - 10)
    assert box_iou([[0, 0, 1, 9]], [[1, 0, 2, 9]])[0, 0] == pytest.approx(10 / 30)


def test_box_iou_shapes_and_empty():
    ious = box_iou(np.zeros((3, 4)), np.zeros((2, 4)))
    assert ious.shape == (3, 2)
    assert box_iou(np.zeros((0, 4)), np.zeros((2, 4))).shape == (0, 2)
    assert box_iou([0, 0, 9, 9], [[5, 5, 14, 14]]).shape == (1, 1)  # a single box is [1, 4]
    a, b = np.tile([0, 0, 1, 1], (5, 1, 1)), np.ones((5, 3, 4))  # a 2×2 box and a 1×1 box inside it
    batched = box_iou(a, b)  # leading dimensions broadcast
    assert batched.shape == (5, 1, 3) and (batched == 1 / 4).all()


def test_component_boxes_reference_convention():
    fg = np.zeros((10, 12), dtype=bool)
    fg[2:5, 3:6] = True  # pixels x 3..5, y 2..4
    fg[7:10, 9:12] = True  # touches the bottom-right border
    boxes, areas = component_boxes(fg)
    # (x_min, y_min, x_max + 1, y_max + 1), far corner clipped to (W-1, H-1) like cv2.boundingRect + clip
    assert boxes.tolist() == [[3, 2, 6, 5], [9, 7, 11, 9]]
    assert areas.tolist() == [9, 9]


def test_component_boxes_eight_connectivity_and_empty():
    fg = np.zeros((6, 6), dtype=bool)
    fg[1, 1] = fg[2, 2] = fg[3, 3] = True  # diagonal chain: one component
    boxes, areas = component_boxes(fg)
    assert boxes.tolist() == [[1, 1, 4, 4]] and areas.tolist() == [3]
    boxes, areas = component_boxes(np.zeros((6, 6), dtype=bool))
    assert boxes.tolist() == [[0, 0, 0, 0]] and areas.tolist() == [0]


def test_level_boxes_largest_and_all():
    m = np.zeros((8, 8), dtype=np.uint8)
    m[0:2, 0:2] = 200  # 4 pixels
    m[4:7, 4:7] = 100  # 9 pixels
    assert level_boxes(m, 50, "largest").tolist() == [[4, 4, 7, 7]]
    assert level_boxes(m, 50, "all").tolist() == [[0, 0, 2, 2], [4, 4, 7, 7]]
    # strictly greater: at level 100 the 100-valued blob is gone
    assert level_boxes(m, 100, "all").tolist() == [[0, 0, 2, 2]]


def test_threshold_levels_and_quantize_truncate():
    t = sweep_thresholds(0.01)
    assert len(t) == 100 and t[0] == 0.0
    levels = threshold_levels(np.array([0.0, 0.01, 0.5, 0.99]), np.array([255, 0]))
    assert levels.tolist() == [[0, 2, 127, 252], [0, 0, 0, 0]]
    q = quantize(torch.tensor([0.0, 0.5, 0.999, 1.0]))
    assert q.tolist() == [0, 127, 254, 255]


def test_minmax_normalize_flat_and_nan_maps():
    maps = torch.stack([torch.arange(4.0).view(2, 2), torch.full((2, 2), 3.0), torch.full((2, 2), float("nan"))])
    out, flat = minmax_normalize(maps)
    assert out[0].flatten().tolist() == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert flat.tolist() == [False, True, True]
    assert out[1:].abs().sum() == 0


def _accumulate(maps, gts, top1, top5, thresholds):
    acc = BoxAccumulator(np.array(thresholds))
    k = max(len(g) for g in gts)
    boxes = np.zeros((len(gts), k, 4), dtype=np.int64)
    valid = np.zeros((len(gts), k), dtype=bool)
    for i, g in enumerate(gts):
        boxes[i, : len(g)] = g
        valid[i, : len(g)] = True
    maps_u8 = np.stack(maps).astype(np.uint8)
    sweep = localize(maps_u8, acc.thresholds, boxes, valid)
    acc.update(sweep, maps_u8.reshape(len(maps), -1).max(1), boxes, valid, np.array(top1), np.array(top5))
    return acc


def _three_images():
    """Hand-made 10x10 maps with known IoUs at the two levels of thresholds (0, 0.5) → cuts at 0 and 127."""
    a = np.zeros((10, 10))
    a[0:4, 0:4] = 255  # strong blob, box (0,0,4,4) → IoU with GT (0,0,3,3) = 16/25
    a[6:10, 6:10] = 100  # weak blob, box (6,6,9,9)
    b = np.zeros((10, 10))
    b[2:8, 2:8] = 255  # box (2,2,8,8) vs GT (2,2,7,7): 36/49
    c = np.zeros((10, 10))  # flat map: empty foreground, box (0,0,0,0)
    gts = [[[0, 0, 3, 3], [6, 6, 9, 9]], [[2, 2, 7, 7]], [[0, 0, 1, 1]]]
    return [a, b, c], gts


def test_accumulator_counts_by_hand():
    maps, gts = _three_images()
    acc = _accumulate(maps, gts, top1=[True, False, True], top5=[True, True, True], thresholds=[0.0, 0.5])
    # image a: t=0 → blobs (0,0,4,4) [16 px] and (6,6,9,9) [16 px]; largest = first (argmax tie) → IoU 16/25=0.64;
    #          all → max(0.64, 1.0) = 1.0. t=0.5 (cut 127) → only (0,0,4,4): 0.64 both.
    # image b: 36/49 = 0.7347 at both thresholds. image c: empty box (0,0,0,0) vs (0,0,1,1): 1/4.
    largest, every = acc.box_acc("largest"), acc.box_acc("all")
    d = {30: 0, 50: 1, 70: 2}
    assert largest[0, d[50]] == pytest.approx(200 / 3)  # a, b hit
    assert largest[0, d[70]] == pytest.approx(100 / 3)  # only b (0.7347)
    assert every[0, d[70]] == pytest.approx(200 / 3)  # a via its second GT box, and b
    assert every[1, d[70]] == pytest.approx(100 / 3)
    assert every[0, d[30]] == pytest.approx(200 / 3)  # c's 0.25 never reaches 0.3
    m = acc.compute()
    assert m["maxboxacc"] == pytest.approx(200 / 3)
    assert m["maxboxacc_threshold"] == 0.0
    assert m["maxboxacc_v2"] == pytest.approx((200 / 3 + 200 / 3 + 200 / 3) / 3)
    assert m["maxboxacc_v2_iou70_threshold"] == 0.0
    assert m["gt_known_loc"] == pytest.approx(200 / 3)
    assert m["top1_loc"] == pytest.approx(100 / 3)  # b is misclassified
    assert m["top5_loc"] == pytest.approx(200 / 3)


def test_accumulator_image_results_and_curves():
    maps, gts = _three_images()
    acc = _accumulate(maps, gts, [True] * 3, [True] * 3, [0.0, 0.5])
    rows = acc.image_results()
    assert rows[0]["box"] == [0, 0, 4, 4] and rows[0]["iou_largest"] == pytest.approx(0.64)
    assert rows[0]["iou_all"] == 1.0
    assert rows[2]["box"] == [0, 0, 0, 0] and rows[2]["iou_all"] == pytest.approx(0.25)
    curves = acc.curves()
    assert len(curves) == 2 * 2 * 3
    assert {r["mode"] for r in curves} == {"largest", "all"}


def test_accumulator_merge_equals_single_pass():
    maps, gts = _three_images()
    whole = _accumulate(maps, gts, [1, 0, 1], [1, 1, 0], [0.0, 0.3, 0.5])
    part1 = _accumulate(maps[:2], gts[:2], [1, 0], [1, 1], [0.0, 0.3, 0.5])
    part2 = _accumulate(maps[2:], gts[2:], [1], [0], [0.0, 0.3, 0.5])
    part1.merge(part2)
    assert part1.compute() == whole.compute()
    assert (part1.hits == whole.hits).all()


def test_topk_correct():
    top3 = np.array([[1, 0, 2], [0, 2, 1]])  # each row's predictions, best first
    labels = np.array([1, 2])
    assert topk_correct(top3, labels, 1).tolist() == [True, False]
    assert topk_correct(top3, labels, 2).tolist() == [True, True]
    assert topk_correct(top3, labels, 5).tolist() == [True, True]  # k capped at the 3 predictions
