"""protocol=tscam against an independent implementation of TS-CAM's evaluation (vasgaowei/TS-CAM,
lib/cams_deit.py: get_bboxes, cal_iou, cls_loc_err, evaluate_cls_loc), written here from its code's behaviour."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import compose

from wsol.localize import localize
from wsol.metrics import BoxAccumulator
from wsol.pipeline import evaluate


def tscam_box(cam_u8: np.ndarray, cam_thr: float) -> list[int]:
    """TS-CAM's get_bboxes on a uint8 map: THRESH_TOZERO at int(thr · max), the largest-contourArea contour's
    bounding rectangle (x, y, x + w, y + h), or [0, 0, 1, 1] without contours."""
    _, kept = cv2.threshold(cam_u8, int(cam_thr * np.max(cam_u8)), 255, cv2.THRESH_TOZERO)
    contours, _ = cv2.findContours(kept, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return [0, 0, 1, 1]
    x, y, w, h = cv2.boundingRect(max(contours, key=cv2.contourArea))
    return [x, y, x + w, y + h]


def tscam_iou(a, b) -> float:
    """TS-CAM's cal_iou: inclusive (+1) areas, float."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    inter = max(iw, 0.0) * max(ih, 0.0)
    return inter / ((a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - inter)


def _cases(size: int = 48):
    """Maps with regions touching the far edges, an empty map, a hole, and a box at IoU exactly 0.5."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    maps, gts = [], []
    for _ in range(10):
        cy, cx, s = rng.uniform(0, size), rng.uniform(size / 2, size + 8), rng.uniform(4, 12)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s)) + 0.2 * rng.random((size, size))
        maps.append((blob / blob.max() * 255).astype(np.uint8))
        x0, y0 = rng.integers(0, size // 2, 2)
        gts.append([[x0, y0, min(x0 + rng.integers(8, size), size - 1), min(y0 + rng.integers(8, size), size - 1)]])
    maps.append(np.zeros((size, size), np.uint8))  # empty: TS-CAM's [0, 0, 1, 1]
    gts.append([[0, 0, 3, 3]])
    ring = np.zeros((size, size), np.uint8)
    ring[10:30, 10:30], ring[15:25, 15:25] = 200, 0  # a hole: an inner contour too
    maps.append(ring)
    gts.append([[12, 12, 40, 40], [0, 0, 5, 5]])
    square = np.zeros((size, size), np.uint8)
    square[0:10, 0:10] = 255  # box (0, 0, 10, 10): 121 px inclusive; the GT's 242: IoU exactly 0.5
    maps.append(square)
    gts.append([[0, 0, 10, 21]])
    return np.stack(maps), gts


@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_tscam_boxes_ious_and_loc_rules_match_its_evaluation(engine):
    maps, gts = _cases()
    threshold = 0.1
    n, k = len(maps), max(len(g) for g in gts)
    boxes, valid = np.zeros((n, k, 4), np.int64), np.zeros((n, k), bool)
    for i, g in enumerate(gts):
        boxes[i, : len(g)], valid[i, : len(g)] = g, True
    top1 = np.arange(n) % 3 != 0
    top5 = top1 | (np.arange(n) % 2 == 0)
    sweep = localize(maps, np.array([threshold]), boxes, valid, "contours", engine, clip=False, empty_box=(0, 0, 1, 1))
    acc = BoxAccumulator(np.array([threshold]), strict_class_loc=True)
    acc.update(sweep, maps.reshape(n, -1).max(1), boxes, valid, top1, top5)
    expected_boxes = [tscam_box(m, threshold) for m in maps]
    expected_iou = [max([0.0] + [tscam_iou(b, g) for g in gt]) for b, gt in zip(expected_boxes, gts, strict=True)]
    rows = acc.image_results()
    assert [r["box"] for r in rows] == expected_boxes
    assert [r["iou_largest"] for r in rows] == pytest.approx(expected_iou, abs=1e-12)
    assert expected_boxes[-3] == [0, 0, 1, 1] and max(b[2] for b in expected_boxes) == maps.shape[-1]  # unclipped
    assert expected_iou[-1] == 0.5
    hit = np.array(expected_iou)
    metrics = acc.compute()
    assert metrics["gt_known_loc"] == pytest.approx(100 * np.mean(hit >= 0.5))
    assert metrics["top1_loc"] == pytest.approx(100 * np.mean((hit > 0.5) & top1))  # the 0.5 image: no top-1 hit
    assert metrics["top5_loc"] == pytest.approx(100 * np.mean((hit > 0.5) & top5))
    assert np.mean(hit >= 0.5) > np.mean(hit > 0.5)  # the two rules differ on these images
    weights = np.ones((1, n), np.uint8)  # the bootstrap's hits follow the same rules
    assert acc.bootstrap(weights)["top1_loc"][0] == pytest.approx(metrics["top1_loc"])


def test_protocol_tscam_end_to_end_on_the_demo():
    cfg = compose("protocol=tscam", "limit=8", "batch_size=4", "eval.bootstrap=50")
    assert cfg.localize.clip_boxes is False and list(cfg.localize.empty_box) == [0, 0, 1, 1]
    assert cfg.eval.strict_class_loc and cfg.eval.clip_gt_boxes and cfg.localize.resize == "bilinear"
    result = evaluate(cfg)
    assert {"top1_loc", "top5_loc", "gt_known_loc"} <= set(result.metrics)
    assert all(0 <= box <= 224 for row in result.images for box in row["box"])
    assert result.metrics["top1_loc"] <= result.metrics["top5_loc"] <= result.metrics["gt_known_loc"]
