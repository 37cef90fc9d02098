"""eval.extra: top-k MaxBoxAcc, TS-CAM's top-1 error decomposition and pixel IoU, against hand-computed cases and
against the code bases' own functions on the same inputs (BagCAMs' and TS-CAM's evaluation, copied unchanged under
tests/data with their licences)."""

from __future__ import annotations

import importlib.util
import os
import sys
import types

import numpy as np
import pytest
from conftest import REPO

import wsol
from wsol.errors import WsolError
from wsol.metrics.extra import LOC_ERRORS, loc_error_kinds, pixel_iou

EXTRA = "eval.extra=[top1_maxboxacc,loc_errors,piou]"
# the copied code's own warnings (a docstring's escape, its precision at 0 / 0)
pytestmark = [pytest.mark.filterwarnings("ignore:invalid escape sequence:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")]


def _load(name: str, path: str, monkeypatch) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def bagcams(monkeypatch) -> types.ModuleType:
    """BagCAMs' libs/evaluation.py; the helpers it imports from its package (config, data loaders) but the tested
    functions do not call are stubs, and its two checks are wsolevaluation's (util.py)."""
    pytest.importorskip("cv2")

    def check_scoremap_validity(scoremap):
        assert isinstance(scoremap, np.ndarray) and scoremap.ndim == 2
        assert not np.isnan(scoremap).any() and scoremap.min() >= 0 and scoremap.max() <= 1

    def check_box_convention(boxes, convention):
        boxes = np.asarray(boxes)
        assert convention == "x0y0x1y1" and boxes.ndim == 2 and boxes.shape[1] == 4
        assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()

    stubs = {"libs": {}, "libs.config": {"str2bool": None},
             "libs.data_loaders": dict.fromkeys(["configure_metadata", "get_image_ids", "get_bounding_boxes",
                                                 "get_image_sizes", "get_mask_paths"]),
             "libs.util": {"check_scoremap_validity": check_scoremap_validity,
                           "check_box_convention": check_box_convention, "t2n": None}}
    monkeypatch.setattr(np, "float", float, raising=False)  # written for NumPy < 1.24, where np.float was float
    for name, attrs in stubs.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, module)
    return _load("bagcams_evaluation", os.path.join(REPO, "tests", "data", "bagcams", "libs", "evaluation.py"),
                 monkeypatch)


@pytest.fixture
def tscam(monkeypatch) -> types.ModuleType:
    """TS-CAM's lib/cams_deit.py (its own lib/utils.py as ``utils``)."""
    pytest.importorskip("cv2")
    lib = os.path.join(REPO, "tests", "data", "tscam", "lib")
    _load("utils", os.path.join(lib, "utils.py"), monkeypatch)
    return _load("tscam_cams_deit", os.path.join(lib, "cams_deit.py"), monkeypatch)


def _blob_maps(n: int, size: int, seed: int) -> np.ndarray:
    """``[n, size, size]`` float32 maps in [0, 1] (min 0, max 1): a few Gaussian blobs each, so that thresholds cut
    one or several regions."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    maps = []
    for _ in range(n):
        m = np.zeros((size, size))
        for _ in range(rng.integers(1, 4)):
            (cy, cx), s = rng.uniform(0.15, 0.85, 2) * size, rng.uniform(0.05, 0.2) * size
            m += rng.uniform(0.3, 1.0) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
        m = (m - m.min()) / (m.max() - m.min())
        maps.append(m.astype(np.float32))
    return np.stack(maps)


def _boxes_and_classes(maps: np.ndarray, seed: int):
    """Per map one GT box around its region above a random level, moved a few pixels, and for some a second
    random box; a GT class in 0..2 and a top-5 that holds it (its top-1 right about a third of the time)."""
    rng = np.random.default_rng(seed + 1)
    size, boxes = maps.shape[-1], []
    for m in maps:
        ys, xs = np.nonzero(m > rng.uniform(0.2, 0.6))
        box = np.array([xs.min(), ys.min(), xs.max(), ys.max()]) + rng.integers(-4, 5, 4)
        gts = [np.clip(np.concatenate([np.minimum(box[:2], box[2:]), np.maximum(box[:2], box[2:])]), 0, size - 1)]
        if rng.random() < 0.4:
            corners = np.sort(rng.integers(0, size, (2, 2)), axis=0)  # [(low, high), (x, y)]
            gts.append(corners.ravel())
        boxes.append(np.stack(gts))
    labels = rng.integers(0, 3, len(maps))
    top5 = np.stack([np.roll(np.arange(5), -int(rng.integers(0, 3))) for _ in maps])
    return boxes, labels, top5


def test_top_k_maxboxacc_is_bagcams_compute_top1(bagcams, tmp_path):
    """Both region rules (BagCAMs' multi_contour_eval false: largest region; true: every contour), every δ: BagCAMs'
    accumulate + compute_top1 on the same maps, boxes, labels and predictions give wsol's top-1 MaxBoxAcc (V2)."""
    size, n = 224, 12
    maps = _blob_maps(n, size, 0)
    boxes, labels, top5 = _boxes_and_classes(maps, 0)
    metrics = wsol.metrics.WSOLMetrics(image_size=size, overrides=["localize.interval=0.02", EXTRA])
    ids = [f"im{i}" for i in range(n)]
    metrics.update(maps, [b.tolist() for b in boxes], labels=labels, top5=top5, ids=ids)
    got = metrics.compute()

    root = tmp_path / "run"
    for folder, values in (("image_gts", labels), ("predicts", top5[:, 0])):
        (root / folder).mkdir(parents=True)
        for image_id, v in zip(ids, values, strict=True):
            np.save(root / folder / f"{image_id}.npy", np.array(v))
    deltas = [30, 50, 70]
    for multi_contour in (False, True):
        evaluator = object.__new__(bagcams.BoxEvaluator)  # its __init__ reads a metadata folder; the state it sets:
        evaluator.cam_threshold_list = list(metrics.spec.thresholds)
        evaluator.iou_threshold_list, evaluator.multi_contour_eval = deltas, multi_contour
        evaluator.scoremap_root, evaluator.cnt, evaluator.best_pred_boxes = str(root / "scoremaps"), 0, {}
        evaluator.gt_bboxes = {i: b.tolist() for i, b in zip(ids, boxes, strict=True)}
        evaluator.num_correct, evaluator.num_correct_top1 = (
            {d: np.zeros(len(evaluator.cam_threshold_list)) for d in deltas} for _ in range(2))
        for image_id, m in zip(ids, maps, strict=True):
            evaluator.accumulate(m, image_id)
        theirs = evaluator.compute_top1()
        if multi_contour:
            for d, value in zip(deltas, theirs, strict=True):
                assert got[f"top1_maxboxacc_v2_iou{d}"] == pytest.approx(value, abs=1e-9)
            assert got["top1_maxboxacc_v2"] == pytest.approx(np.mean(theirs), abs=1e-9)
            assert got["maxboxacc_v2"] == pytest.approx(np.mean(evaluator.compute()), abs=1e-9)
        else:
            assert got["top1_maxboxacc"] == pytest.approx(theirs[1], abs=1e-9)
            assert got["maxboxacc"] == pytest.approx(evaluator.compute()[1], abs=1e-9)
    assert 0 < got["top1_maxboxacc"] < got["maxboxacc"]  # the case is not trivial


def test_top_k_maxboxacc_hand_computed():
    """Three copies of one map whose box shrinks at half its peak: two images of the wrong class hit below it, one
    of the right class above it. Top-1 loc is read at GT-known loc's threshold, top-1 MaxBoxAcc at its own."""
    size = 32
    m = np.zeros((size, size), np.float32)
    m[16:32, 16:32], m[20:28, 20:28] = 0.5, 1.0  # uint8 127 and 255: box 16..31 up to t = .25, then 20..27
    maps = np.stack([m, m, m])
    boxes = [[[16, 16, 31, 31]], [[16, 16, 31, 31]], [[20, 20, 27, 27]]]
    labels = np.array([0, 0, 1])
    top5 = np.array([[1, 0, 2, 3, 4], [1, 0, 2, 3, 4], [1, 2, 3, 4, 0]])  # images 0, 1: GT class second
    metrics = wsol.metrics.WSOLMetrics(image_size=size, overrides=["localize.interval=0.25", EXTRA])
    metrics.update(maps, boxes, labels=labels, top5=top5)
    got = metrics.compute()
    # thresholds 0, .25, .5, .75 — GT-known hits 2, 2, 1, 1; top-1 hits 0, 0, 1, 1; top-5 hits 2, 2, 1, 1
    assert got["loc_threshold"] == 0.0 and got["gt_known_loc"] == pytest.approx(200 / 3)
    assert got["top1_loc"] == 0.0 and got["top1_maxboxacc"] == pytest.approx(100 / 3)
    assert got["top1_maxboxacc_threshold"] == 0.5
    assert got["top5_maxboxacc"] == pytest.approx(200 / 3) == got["top5_loc"]
    for k, expected in (("top1", 100 / 3), ("top5", 200 / 3)):  # one region at every threshold: V2 = V1 at each δ
        assert got[f"{k}_maxboxacc_v2_iou50"] == pytest.approx(expected)
        assert got[f"{k}_maxboxacc_v2_iou70"] == pytest.approx(expected)


def _kind_cases():
    """(predicted box, GT boxes, class right): one case of each kind of failure and a hit, then random ones."""
    cases = [
        ([10, 10, 40, 40], [[12, 12, 40, 40]], True),  # IoU 0.84: a hit
        ([10, 10, 40, 40], [[12, 12, 40, 40]], False),  # wrong class
        ([0, 0, 63, 30], [[0, 0, 20, 30], [40, 0, 63, 30]], True),  # covers two GT boxes: multi instance
        ([20, 20, 30, 30], [[10, 10, 50, 50]], True),  # inside the GT box: part
        ([0, 0, 63, 63], [[20, 20, 40, 40]], True),  # contains the GT box: too large
        ([0, 0, 10, 10], [[40, 40, 60, 60]], True),  # elsewhere: wrong location
        ([0, 0, 20, 20], [[0, 0, 20, 41]], True),  # IoU = 441 / 882 = 0.5 exactly: a failure when strict
    ]
    rng = np.random.default_rng(3)
    for _ in range(300):
        k = int(rng.integers(1, 4))
        gt = [sorted(rng.integers(0, 64, 2).tolist()) for _ in range(2 * k)]
        gts = [[gt[2 * j][0], gt[2 * j + 1][0], gt[2 * j][1], gt[2 * j + 1][1]] for j in range(k)]
        x, y = sorted(rng.integers(0, 64, 2).tolist()), sorted(rng.integers(0, 64, 2).tolist())
        cases.append(([x[0], y[0], x[1], y[1]], gts, bool(rng.random() < 0.8)))
    return cases


def test_loc_error_kinds_are_tscams_get_badcase_detail(tscam):
    """TS-CAM's cls_loc_err (its top-1 loc rule, IoU > 0.5) and get_badcase_detail on each case, against
    loc_error_kinds with the same hit rule."""
    cases = _kind_cases()
    k = max(len(g) for _, g, _ in cases)
    box = np.array([c[0] for c in cases])
    gt = np.zeros((len(cases), k, 4), np.int64)
    valid = np.zeros((len(cases), k), bool)
    for i, (_, gts, _) in enumerate(cases):
        gt[i, : len(gts)], valid[i, : len(gts)] = gts, True
    top1 = np.array([c[2] for c in cases])
    iou = np.array([max(tscam.cal_iou(b, g)[0] for g in gts) for b, gts, _ in cases])
    kinds = loc_error_kinds(box, gt, valid, top1, iou > 0.5)
    seen = set()
    for i, (b, gts, right) in enumerate(cases):
        label = 7
        _, (loc,), details = tscam.cls_loc_err([[[label if right else 8, *b]]], label, np.ravel(gts).tolist())
        assert (kinds[i] == -1) == bool(loc), i
        if kinds[i] >= 0:
            assert details.index(1) == kinds[i], (i, details)
            seen.add(int(kinds[i]))
        else:
            assert sum(details) == 0
    assert seen == set(range(len(LOC_ERRORS)))
    assert kinds[:7].tolist() == [-1, 0, 1, 2, 3, 4, 2]  # the last: inside its GT box, a part
    assert loc_error_kinds(box[6:7], gt[6:7], valid[6:7], top1[6:7], iou[6:7] >= 0.5).tolist() == [-1]


def test_loc_errors_split_the_top1_loc_error(tmp_path):
    """Through the metric objects: per image the kind of its failure, the shares of the failures summing to 100
    and the failures being exactly top-1 loc's misses, under wsolevaluation's rule and TS-CAM's."""
    size, n = 64, 40
    maps = _blob_maps(n, size, 5)
    boxes, labels, top5 = _boxes_and_classes(maps, 5)
    for protocol in ("wsoleval_v2", "tscam"):
        metrics = wsol.metrics.WSOLMetrics(protocol, image_size=size, overrides=[EXTRA, "eval.bootstrap=0"])
        metrics.update(maps, [b.tolist() for b in boxes], labels=labels, top5=top5)
        result = metrics.result()
        shares = [result.metrics[f"loc_errors_{k}"] for k in LOC_ERRORS]
        failures = sum(row["loc_error"] != "" for row in result.images)
        assert failures == round(result.metrics["top1_loc_err"] * n / 100) > 0
        assert sum(shares) == pytest.approx(100.0)
        for kind, share in zip(LOC_ERRORS, shares, strict=True):
            assert share == pytest.approx(100.0 * sum(row["loc_error"] == kind for row in result.images) / failures)
        wrong = [row["loc_error"] == "wrong_class" for row in result.images]
        assert wrong == (top5[:, 0] != labels).tolist()


def _write_mask(path, mask: np.ndarray) -> str:
    from PIL import Image

    Image.fromarray(mask.astype(np.uint8) * 255).save(path)
    return os.path.basename(path)


def test_piou_is_bagcams_mask_evaluator(bagcams, tmp_path):
    """BagCAMs' MaskEvaluator.accumulate + compute (its masks read from PNGs, the ignore region set aside) on the same
    maps: PxAP and the IoU curve's max and mean equal wsol's pxap, piou_max and piou_mean."""
    size, n = 224, 6
    maps = _blob_maps(n, size, 9)
    rng = np.random.default_rng(9)
    masks, evaluator = [], object.__new__(bagcams.MaskEvaluator)
    evaluator.mask_root, evaluator.mask_paths, evaluator.ignore_paths = str(tmp_path), {}, {}
    interval = 0.01
    evaluator.cam_threshold_list = list(np.arange(0, 1, interval))
    evaluator.threshold_list_right_edge = np.append(evaluator.cam_threshold_list, [1.0, 2.0, 3.0])
    evaluator.gt_true_score_hist = np.zeros(len(evaluator.cam_threshold_list) + 2)
    evaluator.gt_false_score_hist = np.zeros(len(evaluator.cam_threshold_list) + 2)
    for i, m in enumerate(maps):
        fg = (m + rng.normal(0, 0.15, m.shape)) > 0.4
        ignore = np.zeros_like(fg)
        ignore[: size // 4, : size // 4] = True
        evaluator.mask_paths[f"im{i}"] = [_write_mask(tmp_path / f"im{i}.png", fg)]
        evaluator.ignore_paths[f"im{i}"] = _write_mask(tmp_path / f"im{i}_ignore.png", ignore)
        masks.append(np.where(fg, 1, np.where(ignore, 255, 0)))
        evaluator.accumulate(m, f"im{i}")
    pxap, iou = evaluator.compute()
    metrics = wsol.metrics.WSOLMetrics(image_size=size, overrides=[f"localize.interval={interval}", EXTRA])
    metrics.update(maps, masks=np.stack(masks))
    got = metrics.compute()
    assert got["pxap"] == pytest.approx(pxap, abs=1e-9)
    assert got["piou_max"] == pytest.approx(np.max(iou), abs=1e-9)
    assert got["piou_mean"] == pytest.approx(np.mean(iou[~np.isnan(iou)]), abs=1e-9)


def test_pixel_iou_hand_computed():
    """Two bins and the two above 1: 3 foreground pixels (2 scored high), 2 background (1 high)."""
    fg, bg = np.array([1, 2, 0, 0]), np.array([1, 1, 0, 0])  # bins [0, .5), [.5, 1), [1, 2), [2, 3]
    # from the top: TP 0, 0, 2, 3; FP 0, 0, 1, 2; FN 3, 3, 1, 0 → IoU 0, 0, 2/4, 3/5
    got = pixel_iou(fg, bg)
    assert got["piou_max"] == pytest.approx(60.0) and got["piou_mean"] == pytest.approx(100 * (0.5 + 0.6) / 4)
    perfect = pixel_iou(np.array([0, 0, 5, 0]), np.array([7, 0, 0, 0]))
    assert perfect["piou_max"] == pytest.approx(100.0)


def test_extras_have_bootstrap_intervals_that_hold_the_estimate():
    """Every extra metric has a 95 % interval; with every image kept once, a resample is the whole set."""
    size, n = 64, 30
    maps = _blob_maps(n, size, 2)
    boxes, labels, top5 = _boxes_and_classes(maps, 2)
    masks = (maps > 0.5).astype(np.uint8)
    metrics = wsol.metrics.WSOLMetrics(image_size=size, overrides=[EXTRA, "localize.interval=0.05"])
    metrics.update(maps, [b.tolist() for b in boxes], labels=labels, top5=top5, masks=masks)
    stage_result = metrics.result()
    acc, pxap = stage_result_accumulators(metrics)
    ones = np.ones((1, n))
    point = stage_result.metrics
    for key, values in {**acc.bootstrap(ones, class_parts=True), **pxap.bootstrap(ones, piou=True)}.items():
        assert values[0] == pytest.approx(point[key]), key


def stage_result_accumulators(metrics):
    """The merged box and PxAP accumulators of a metric object's batches."""
    (result,) = metrics.results
    return result.boxes, result.pxap


def test_unknown_extra_is_a_one_line_error():
    with pytest.raises(WsolError, match="eval.extra: unknown metric toplocc; valid: top1_maxboxacc, loc_errors"):
        wsol.metrics.WSOLMetrics(overrides=["eval.extra=[toplocc]"])


def test_a_run_writes_the_extras_beside_maxboxaccv2(tmp_path):
    """The CLI's run on the demo: every extra in metrics.json with its interval, the table's extra columns after
    the protocol's, each image's failure kind in per_image.csv, and the report's stacked bar."""
    from conftest import compose

    from wsol.run import run

    overrides = ["limit=10", "batch_size=5", "report=true", "figures.num_images=2", "figures.extremes=1", EXTRA]
    summary = run(compose(*overrides), str(tmp_path), overrides)
    metrics, ci = summary["metrics"], summary["ci"]
    for key in ("top1_maxboxacc", "top5_maxboxacc_v2", "top1_maxboxacc_v2_iou70", "piou_max", "piou_mean"):
        assert ci[key][0] <= metrics[key] <= ci[key][1], key
    assert sum(metrics[f"loc_errors_{k}"] for k in LOC_ERRORS) == pytest.approx(100.0)
    header = (tmp_path / "table.md").read_text().splitlines()[2]
    assert header.index("MaxBoxAccV2") < header.index("Top-1 MaxBoxAcc") < header.index("Fail: Class")
    assert "pIoU" in header and "Fail: Location" in header
    rows = (tmp_path / "per_image.csv").read_text().splitlines()
    assert rows[0].endswith(",loc_error") and sum(not r.endswith(",") for r in rows[1:]) == round(
        metrics["top1_loc_err"] / 10)
    assert (tmp_path / "figures" / "loc_errors.png").is_file()
    assert 'src="figures/loc_errors.png"' in (tmp_path / "report.html").read_text()
