"""The reference protocol: contours vs components, reference-exact MaxBoxAcc(V2), PxAP, pointing
games, presets, and the score-map round trip."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from conftest import REPO, SHARED_DATA
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from wsol.data.base import rescale_boxes
from wsol.data.wsoleval import read_wsoleval_metadata
from wsol.localize import level_boxes, quantize, sweep_thresholds
from wsol.metrics import BoxAccumulator, PointingAccumulator, PxAPAccumulator
from wsol.pipeline import evaluate


def test_ring_with_hole_contours_add_the_hole_box():
    m = np.zeros((10, 10), dtype=np.uint8)
    m[2:8, 2:8] = 200
    m[4:6, 4:6] = 0
    assert level_boxes(m, 0, "all", "cc").tolist() == [[2, 2, 8, 8]]
    # RETR_TREE also returns the hole's contour, traced on the ring pixels around it: rect (3, 3, 4, 4)
    assert level_boxes(m, 0, "all", "contours").tolist() == [[2, 2, 8, 8], [3, 3, 7, 7]]
    assert level_boxes(m, 0, "largest", "contours").tolist() == [[2, 2, 8, 8]]


def test_largest_region_pixels_vs_polygon_area():
    m = np.zeros((12, 30), dtype=np.uint8)
    m[1, 2:22] = 255  # a 1x20 line: 20 pixels, contour area 0
    m[5:8, 5:8] = 255  # a 3x3 square: 9 pixels, contour area 4
    assert sorted(level_boxes(m, 0, "all", "cc").tolist()) == sorted(level_boxes(m, 0, "all", "contours").tolist())
    assert level_boxes(m, 0, "largest", "cc").tolist() == [[2, 1, 22, 2]]
    assert level_boxes(m, 0, "largest", "contours").tolist() == [[5, 5, 8, 8]]


@pytest.mark.parametrize("backend", ["cc", "contours"])
def test_single_pixel_and_flat_maps(backend):
    m = np.zeros((8, 8), dtype=np.uint8)
    m[3, 6] = 255
    assert level_boxes(m, 100, "all", backend).tolist() == [[6, 3, 7, 4]]
    m[7, 7] = 255  # bottom-right corner: far corner clipped to (W-1, H-1)
    assert [7, 7, 7, 7] in level_boxes(m, 100, "all", backend).tolist()
    flat = np.zeros((8, 8), dtype=np.uint8)
    assert level_boxes(flat, 0, "all", backend).tolist() == [[0, 0, 0, 0]]


def _reference_oracle(maps: list[np.ndarray], gts: list[np.ndarray], interval: float, multi_contour: bool):
    """wsolevaluation's procedure written out literally from REFERENCE.md §1, one loop per step."""
    import cv2

    thresholds = np.arange(0, 1, interval)
    correct = {d: np.zeros(len(thresholds)) for d in (30, 50, 70)}
    for scoremap, gt in zip(maps, gts, strict=True):
        image = np.expand_dims((scoremap * 255).astype(np.uint8), 2)
        h, w = scoremap.shape
        best = []
        for t in thresholds:
            binary = cv2.threshold(image, int(t * np.max(image)), 255, cv2.THRESH_BINARY)[1]
            contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
            if len(contours) == 0:
                boxes = [[0, 0, 0, 0]]
            else:
                if not multi_contour:
                    contours = [max(contours, key=cv2.contourArea)]
                boxes = []
                for c in contours:
                    x, y, bw, bh = cv2.boundingRect(c)
                    boxes.append([x, y, min(x + bw, w - 1), min(y + bh, h - 1)])
            ious = []
            for b in boxes:
                for g in gt:
                    iw = min(b[2], g[2]) - max(b[0], g[0]) + 1
                    ih = min(b[3], g[3]) - max(b[1], g[1]) + 1
                    inter = max(iw, 0) * max(ih, 0)
                    union = (b[2] - b[0] + 1) * (b[3] - b[1] + 1) + (g[2] - g[0] + 1) * (g[3] - g[1] + 1) - inter
                    ious.append(inter / union)
            best.append(max(ious))
        for d in correct:
            correct[d] += np.asarray(best) >= d / 100
    acc = {d: correct[d] * 100.0 / len(maps) for d in correct}
    return acc[50].max(), np.mean([acc[d].max() for d in acc])


def _random_maps(n: int, size: int = 64, seed: int = 0):
    """Smooth random maps with rings (holes) and several blobs, and 1–3 GT boxes each."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    maps, gts = [], []
    for _ in range(n):
        m = np.zeros((size, size))
        for _ in range(rng.integers(1, 4)):
            cx, cy, s = rng.uniform(5, size - 5), rng.uniform(5, size - 5), rng.uniform(3, 14)
            r = np.hypot(xx - cx, yy - cy)
            ring = rng.random() < 0.5
            m += rng.uniform(0.3, 1) * (np.exp(-((r - s) ** 2) / 8) if ring else np.exp(-(r**2) / (2 * s**2)))
        m = (m - m.min()) / (m.max() - m.min())
        maps.append(m.astype(np.float32))
        k = rng.integers(1, 4)
        xy = np.sort(rng.integers(0, size, (k, 2, 2)), axis=1)
        gts.append(np.stack([xy[:, 0, 0], xy[:, 0, 1], xy[:, 1, 0], xy[:, 1, 1]], axis=1))
    return maps, gts


@pytest.mark.parametrize("interval", [0.01, 0.05])
def test_contours_backend_equals_the_reference_procedure(interval):
    maps, gts = _random_maps(24)
    acc = BoxAccumulator(sweep_thresholds(interval), backend="contours")
    boxes = np.zeros((len(gts), 3, 4), dtype=np.int64)
    valid = np.zeros((len(gts), 3), dtype=bool)
    for i, g in enumerate(gts):
        boxes[i, : len(g)], valid[i, : len(g)] = g, True
    acc.update(quantize(torch.from_numpy(np.stack(maps))).numpy(), boxes, valid)
    v1, v2 = _reference_oracle(maps, gts, interval, False), _reference_oracle(maps, gts, interval, True)
    m = acc.compute()
    assert m["maxboxacc"] == v1[0]
    assert m["maxboxacc_v2"] == v2[1]
    # rings make the backends disagree somewhere in the sweep
    cc = BoxAccumulator(sweep_thresholds(interval), backend="cc")
    cc.update(quantize(torch.from_numpy(np.stack(maps))).numpy(), boxes, valid)
    assert not np.array_equal(cc.hits, acc.hits)


def _gaussian_center_map(size: int = 224, sigma: float = 56.0) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    c = (size - 1) / 2
    m = np.exp(-((xx - c) ** 2 + (yy - c) ** 2) / (2 * sigma**2))
    return ((m - m.min()) / (m.max() - m.min())).astype(np.float32)


@pytest.mark.skipif(not os.path.isdir(SHARED_DATA), reason="shared wsolevaluation metadata not present")
@pytest.mark.parametrize(
    ("dataset", "expected"),
    [("CUB", (56.83, 93.91, 59.60, 17.00)), ("ILSVRC", (53.39, 76.81, 54.06, 29.28))],
)
def test_matches_the_reference_evaluator_on_real_boxes(dataset, expected):
    """A centred Gaussian map on every image of the real test splits, against the reference's numbers
    (REFERENCE.md §5: measured with wsolevaluation, interval 0.001, all contours)."""
    records = read_wsoleval_metadata(os.path.join(SHARED_DATA, "metadata", dataset, "test"))
    map_u8 = quantize(torch.from_numpy(_gaussian_center_map())).numpy()
    acc = BoxAccumulator(sweep_thresholds(0.001), backend="contours", keep_records=False)
    for start in range(0, len(records), 512):
        chunk = records[start : start + 512]
        gts = [rescale_boxes(r.boxes, r.size, 224) for r in chunk]
        k = max(len(g) for g in gts)
        boxes = np.zeros((len(chunk), k, 4), dtype=np.int64)
        valid = np.zeros((len(chunk), k), dtype=bool)
        for i, g in enumerate(gts):
            boxes[i, : len(g)], valid[i, : len(g)] = g, True
        acc.update(np.broadcast_to(map_u8, (len(chunk), 224, 224)), boxes, valid)
    m = acc.compute()
    got = (m["maxboxacc_v2"], m["maxboxacc_v2_iou30"], m["maxboxacc_v2_iou50"], m["maxboxacc_v2_iou70"])
    assert [round(v, 2) for v in got] == list(expected)


def test_pxap_hand_computed():
    acc = PxAPAccumulator(interval=0.25)  # bins [0,.25) [.25,.5) [.5,.75) [.75,1) [1,2) [2,3]
    maps = np.array([[[1.0, 0.5], [0.25, 0.0]], [[0.875, 0.125], [1.0, 0.375]]], dtype=np.float32)
    masks = np.array([[[1, 1], [0, 255]], [[0, 1], [1, 0]]], dtype=np.uint8)
    acc.update(maps, masks)
    # fg 1.0, 0.5, 0.125, 1.0; bg 0.25, 0.875, 0.375; the ignored 0.0 counts nowhere.
    # from the top bin: tp 0,2,2,3,3,4; fp 0,0,1,1,3,3 → precision ·,1,2/3,3/4,1/2,4/7; recall 0,.5,.5,.75,.75,1
    # PxAP = 1·.5 + 3/4·.25 + 4/7·.25
    assert acc.compute() == pytest.approx(100 * (0.5 + 0.1875 + 1 / 7))
    other = PxAPAccumulator(interval=0.25)
    other.update(maps[:1], masks[:1])
    rest = PxAPAccumulator(interval=0.25)
    rest.update(maps[1:], masks[1:])
    other.merge(rest)
    assert other.compute() == acc.compute()
    with pytest.raises(ValueError, match="no foreground"):
        PxAPAccumulator().compute()


def _point_map(x: int, y: int, size=(30, 30)) -> np.ndarray:
    m = np.zeros(size, dtype=np.float32)
    m[y, x] = 1.0
    return m


@pytest.mark.parametrize(
    ("point", "tolerance", "hit"),
    [((5, 5), 0, True), ((20, 5), 10, True), ((20, 5), 9.99, False), ((13, 14), 5, True), ((13, 14), 4.99, False)],
)
def test_pointing_game_tolerance_edges(point, tolerance, hit):
    acc = PointingAccumulator(tolerance)
    acc.update(_point_map(*point)[None], np.array([False]), np.array([[[0, 0, 10, 10]]]), np.array([[True]]))
    assert acc.compute()["pointing_game"] == (100.0 if hit else 0.0)


def test_pointing_game_flat_ties_and_energy():
    acc = PointingAccumulator(15)
    flat = np.zeros((1, 30, 30), dtype=np.float32)  # its "maximum" (0, 0) is inside the box, still a miss
    acc.update(flat, np.array([True]), np.array([[[0, 0, 10, 10]]]), np.array([[True]]))
    assert acc.compute() == {"pointing_game": 0.0, "energy_pointing_game": 0.0}
    tie = np.zeros((1, 30, 30), dtype=np.float32)
    tie[0, 2, 25] = tie[0, 20, 3] = 1.0  # first maximum in row-major order is (25, 2)
    acc = PointingAccumulator(0)
    acc.update(tie, np.array([False]), np.array([[[20, 0, 29, 5]]]), np.array([[True]]))
    assert acc.compute()["pointing_game"] == 100.0
    energy = np.zeros((1, 30, 30), dtype=np.float32)
    energy[0, 1, 1] = 2.0  # inside the first box
    energy[0, 20, 20] = 1.0  # inside the second box
    energy[0, 29, 0] = 1.0  # outside both
    acc = PointingAccumulator(15)
    boxes = np.array([[[0, 0, 5, 5], [18, 18, 22, 22]]])
    acc.update(energy, np.array([False]), boxes, np.array([[True, True]]))
    assert acc.compute()["energy_pointing_game"] == pytest.approx(75.0)


def _config(*overrides: str) -> dict:
    with initialize_config_dir(config_dir=os.path.join(REPO, "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["num_workers=0", *overrides])
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.parametrize(
    ("preset", "mode", "threshold", "backend", "interval"),
    [
        ("wsoleval_v2", "sweep", None, "contours", 0.001),
        ("wsoleval_v1", "sweep", None, "contours", 0.001),
        ("cam16", "fixed", 0.2, "cc", None),
        ("gradcam17", "fixed", 0.15, "cc", None),
    ],
)
def test_protocol_presets(preset, mode, threshold, backend, interval):
    loc = _config(f"protocol={preset}")["localize"]
    assert (loc["mode"], loc["threshold"], loc["backend"], loc["interval"]) == (mode, threshold, backend, interval)
    # the command line still wins over a preset
    assert _config(f"protocol={preset}", "localize.backend=cc")["localize"]["backend"] == "cc"


def test_save_maps_then_from_files_round_trip(tmp_path):
    maps_dir = str(tmp_path / "maps")
    first = evaluate(_config("limit=12", "save_maps=true", f"maps_dir={maps_dir}"))
    saved = sorted(os.path.relpath(os.path.join(d, f), maps_dir) for d, _, fs in os.walk(maps_dir) for f in fs)
    assert saved == sorted(row["id"] + ".npy" for row in first.images)
    array = np.load(os.path.join(maps_dir, saved[0]))
    assert array.shape == (224, 224) and array.dtype == np.float32 and array.min() >= 0 and array.max() <= 1
    second = evaluate(_config("limit=12", "method=from_files", f"method.maps_dir={maps_dir}"))
    keys = [k for k in second.metrics]
    assert "top1_cls" not in keys and "top1_loc" not in keys and "maxboxacc_v2" in keys and "pxap" in keys
    assert {k: first.metrics[k] for k in keys} == second.metrics
    os.remove(os.path.join(maps_dir, saved[0]))
    third = evaluate(_config("limit=12", "method=from_files", f"method.maps_dir={maps_dir}"))
    assert third.info["skipped"] == {"missing_map": 1} and third.info["images"] == 11


@pytest.mark.skipif(not os.path.isdir(SHARED_DATA), reason="shared wsolevaluation metadata not present")
def test_mask_only_split_gives_pxap_without_box_metrics(tmp_path):
    from conftest import mask_only_split

    overrides, ids = mask_only_split(tmp_path)
    result = evaluate(_config(*overrides))
    assert result.info["images"] == len(ids) >= 3
    assert 0 < result.metrics["pxap"] < 100
    assert "maxboxacc_v2" not in result.metrics and "pointing_game" not in result.metrics
    assert "top1_cls" in result.metrics
