"""The reference protocol: contours vs components, reference-exact MaxBoxAcc(V2), PxAP, pointing
games, presets, and the score-map round trip."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from conftest import compose, write_image

from wsol.config import protocol_label
from wsol.data.base import rescale_boxes
from wsol.data.wsoleval import read_wsoleval_metadata
from wsol.localize import level_boxes, localize, sweep_thresholds
from wsol.maps import quantize
from wsol.metrics import BoxAccumulator, PointingAccumulator, PxAPAccumulator
from wsol.pipeline import evaluate


def _accumulate(acc: BoxAccumulator, maps_u8: np.ndarray, boxes, valid, rule: str) -> BoxAccumulator:
    """Localize uint8 maps with ``rule`` and add them to ``acc`` (GT-known only: no class flags)."""
    acc.update(localize(maps_u8, acc.thresholds, boxes, valid, rule), maps_u8.reshape(len(maps_u8), -1).max(1),
               boxes, valid)
    return acc


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
    """wsolevaluation's procedure written out literally, one loop per step: ``compute_bboxes_from_scoremaps``,
    ``calculate_multiple_iou`` and ``BoxEvaluator.accumulate / compute`` in its ``evaluation.py``."""
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
    boxes = np.zeros((len(gts), 3, 4), dtype=np.int64)
    valid = np.zeros((len(gts), 3), dtype=bool)
    for i, g in enumerate(gts):
        boxes[i, : len(g)], valid[i, : len(g)] = g, True
    maps_u8 = quantize(torch.from_numpy(np.stack(maps))).numpy()
    acc = _accumulate(BoxAccumulator(sweep_thresholds(interval)), maps_u8, boxes, valid, "contours")
    v1, v2 = _reference_oracle(maps, gts, interval, False), _reference_oracle(maps, gts, interval, True)
    m = acc.compute()
    assert m["maxboxacc"] == v1[0]
    assert m["maxboxacc_v2"] == v2[1]
    # rings make the backends disagree somewhere in the sweep
    cc = _accumulate(BoxAccumulator(sweep_thresholds(interval)), maps_u8, boxes, valid, "cc")
    assert not np.array_equal(cc.hits, acc.hits)


def _gaussian_center_map(size: int = 224, sigma: float = 56.0) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    c = (size - 1) / 2
    m = np.exp(-((xx - c) ** 2 + (yy - c) ** 2) / (2 * sigma**2))
    return ((m - m.min()) / (m.max() - m.min())).astype(np.float32)


@pytest.mark.parametrize(
    ("dataset", "expected"),
    [
        ("CUB", (56.834656541249565, 93.90749050742147, 59.59613393165343, 17.0003451846738)),
        ("ILSVRC", (53.38533333333333, 76.814, 54.062, 29.28)),
    ],
)
def test_matches_the_reference_evaluator_on_real_boxes(dataset, expected, wsoleval_data):
    """A centred Gaussian map on every image of the real test splits, against the reference's numbers
    (measured by running clovaai/wsolevaluation's ``BoxEvaluator`` at commit 96f4b88 on the same metadata,
    ``multi_contour_eval=True``, interval 0.001; the values it printed)."""
    records = read_wsoleval_metadata(os.path.join(wsoleval_data, "metadata", dataset, "test"))
    map_u8 = quantize(torch.from_numpy(_gaussian_center_map())).numpy()
    acc = BoxAccumulator(sweep_thresholds(0.001))
    for start in range(0, len(records), 512):
        chunk = records[start : start + 512]
        gts = [rescale_boxes(r.boxes, r.size, 224) for r in chunk]
        k = max(len(g) for g in gts)
        boxes = np.zeros((len(chunk), k, 4), dtype=np.int64)
        valid = np.zeros((len(chunk), k), dtype=bool)
        for i, g in enumerate(gts):
            boxes[i, : len(g)], valid[i, : len(g)] = g, True
        _accumulate(acc, np.broadcast_to(map_u8, (len(chunk), 224, 224)), boxes, valid, "contours")
    m = acc.compute()
    got = (m["maxboxacc_v2"], m["maxboxacc_v2_iou30"], m["maxboxacc_v2_iou50"], m["maxboxacc_v2_iou70"])
    assert got == pytest.approx(expected, rel=1e-12, abs=0)


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


def _reference_mask(path: str) -> np.ndarray:
    """wsolevaluation's ``load_mask_image`` then ``> 0.5``, written out."""
    import cv2

    mask = np.float32(cv2.imread(path, cv2.IMREAD_GRAYSCALE))
    return cv2.resize(mask, (224, 224), interpolation=cv2.INTER_NEAREST) > 0.5


def _reference_pxap(maps, mask_files, ignore_files, interval: float) -> float:
    """wsolevaluation's ``get_mask`` and ``MaskEvaluator.accumulate / compute`` written out, one step per line."""
    edges = np.append(np.arange(0, 1, interval), [1.0, 2.0, 3.0])
    fg_hist, bg_hist = np.zeros(len(edges) - 1), np.zeros(len(edges) - 1)
    for scoremap, files, ignore_file in zip(maps, mask_files, ignore_files, strict=True):
        fg = np.stack([_reference_mask(f) for f in files]).any(axis=0)
        ignore = np.logical_and(_reference_mask(ignore_file), np.logical_not(fg))
        gt = fg.astype(np.uint8) + 255 * ignore.astype(np.uint8)
        scoremap = scoremap.astype(np.float64)
        fg_hist += np.histogram(scoremap[gt == 1], bins=edges)[0]
        bg_hist += np.histogram(scoremap[gt == 0], bins=edges)[0]
    tp = fg_hist[::-1].cumsum()
    fn = fg_hist.sum() - tp
    fp = bg_hist[::-1].cumsum()
    non_zero = (tp + fp) != 0
    with np.errstate(invalid="ignore", divide="ignore"):
        precision, recall = tp / (tp + fp), tp / (tp + fn)
    return float((precision[1:] * np.diff(recall))[non_zero[1:]].sum() * 100)


def _write_mask(path, size: tuple[int, int], rng: np.random.Generator, value: int = 255) -> str:
    """A PNG of ``size`` (w, h) holding 1–3 random ellipses of ``value`` on 0."""
    from PIL import Image

    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    mask = np.zeros((h, w), dtype=np.uint8)
    for _ in range(rng.integers(1, 4)):
        cx, cy, rx, ry = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(2, w / 2), rng.uniform(2, h / 2)
        mask[((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1] = value
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    Image.fromarray(mask).save(path)
    return str(path)


@pytest.mark.parametrize("size", [(333, 500), (37, 41), (500, 333), (224, 224), (225, 223)])
def test_masks_are_resized_with_opencvs_nearest_rule(tmp_path, size):
    """Masks of odd sizes give exactly the reference's pixels; PIL's nearest rule would sample others."""
    from PIL import Image

    from wsol.data.base import read_mask

    rng = np.random.default_rng(sum(size))
    path = _write_mask(tmp_path / "m.png", size, rng)
    got = read_mask(path, 224)
    assert got.dtype == bool and np.array_equal(got, _reference_mask(path))
    pil = np.asarray(Image.open(path).resize((224, 224), Image.NEAREST)) > 127
    assert np.array_equal(pil, got) == (size == (224, 224))  # the rules differ whenever the size does
    low = _write_mask(tmp_path / "low.png", size, rng, value=1)  # a 0/1 mask: foreground is > 0.5, not > 127
    assert read_mask(low, 224).any() and np.array_equal(read_mask(low, 224), _reference_mask(low))


def _masked_split(tmp_path, sizes, rng, score_fn):
    """An OpenImages-style wsoleval split: one image per mask size, 1–2 instance masks and an ignore mask of that
    size each, and a score map ``score_fn(fg, ignore)`` per image (from the reference's masks at 224), saved for
    ``method=from_files``: ``(overrides, maps, mask files, ignore files, reference masks)``."""
    from wsol.cams.from_files import save_maps

    ids, lines, maps, mask_files, ignore_files, gts = [], [], [], [], [], []
    for i, size in enumerate(sizes):
        image_id = f"val/c{i % 3}/img{i:03d}.jpg"
        write_image(str(tmp_path / "images" / image_id), (48, 40), seed=i)
        names = [f"val/c{i % 3}/img{i:03d}_m{j}.png" for j in range(1 + i % 2)]
        files = [_write_mask(tmp_path / "masks" / n, size, rng) for n in names]
        ignore = f"val/c{i % 3}/img{i:03d}_ignore.png"
        ignore_files.append(_write_mask(tmp_path / "masks" / ignore, size, rng))
        lines += [f"{image_id},{n},{ignore if j == 0 else ''}" for j, n in enumerate(names)]
        ids.append(image_id)
        mask_files.append(files)
        fg = np.stack([_reference_mask(f) for f in files]).any(axis=0)
        ignored = _reference_mask(ignore_files[-1]) & ~fg
        gts.append(fg.astype(np.uint8) + 255 * ignored.astype(np.uint8))
        score = np.asarray(score_fn(fg, ignored), dtype=np.float64)
        maps.append(((score - score.min()) / (score.max() - score.min())).astype(np.float32))
    meta = tmp_path / "meta"
    meta.mkdir()
    (meta / "image_ids.txt").write_text("".join(f"{i}\n" for i in ids))
    (meta / "class_labels.txt").write_text("".join(f"{i},0\n" for i in ids))
    (meta / "localization.txt").write_text("\n".join(lines) + "\n")
    save_maps(str(tmp_path / "maps"), ids, np.stack(maps))
    overrides = [
        "dataset=wsoleval",
        f"dataset.root={tmp_path / 'images'}",
        f"dataset.metadata_root={meta}",
        f"dataset.mask_root={tmp_path / 'masks'}",
        "method=from_files",
        f"method.maps_dir={tmp_path / 'maps'}",
        "cache_dir=null",
    ]
    return overrides, maps, mask_files, ignore_files, gts


@pytest.mark.parametrize("interval", [0.01, 0.001])
def test_pxap_equals_the_reference_on_masks_of_mixed_sizes(tmp_path, interval):
    rng = np.random.default_rng(7)
    sizes = [(333, 500), (37, 41), (224, 224), (500, 375), (640, 427), (101, 99), (1024, 683), (64, 64)]
    overrides, maps, masks, ignores, _ = _masked_split(tmp_path, sizes, rng, lambda fg, ign: rng.random(fg.shape) ** 3)
    result = evaluate(_config(*overrides, f"localize.interval={interval}"))
    assert result.info["images"] == len(sizes)
    assert abs(result.metrics["pxap"] - _reference_pxap(maps, masks, ignores, interval)) < 1e-9


def test_pxap_drops_undefined_precision_like_the_reference(tmp_path):
    """Every map's maximum lies in an ignore region, so the [1, 2) bin holds no scored pixel and precision is
    0/0 there. The reference drops that curve point; multiplying it in gives NaN."""
    rng = np.random.default_rng(3)

    def peak_in_ignore(fg, ignored):
        score = rng.random(fg.shape) * 0.9
        spots = np.argwhere(ignored)
        assert len(spots), "the fixture needs an ignore region outside the foreground"
        score[tuple(spots[len(spots) // 2])] = 1.0
        return score

    sizes = [(120, 90), (90, 120), (200, 150), (37, 41)]
    overrides, maps, masks, ignores, gts = _masked_split(tmp_path, sizes, rng, peak_in_ignore)
    plain = PxAPAccumulator(0.01)
    plain.update(np.stack(maps), np.stack(gts))
    precision, recall = plain.curve()
    assert np.isnan(precision[1]) and np.isnan((precision[1:] * np.diff(recall)).sum())  # the case is hit
    expected = _reference_pxap(maps, masks, ignores, 0.01)
    assert 0 < expected < 100 and abs(plain.compute() - expected) < 1e-9
    assert abs(evaluate(_config(*overrides, "localize.interval=0.01")).metrics["pxap"] - expected) < 1e-9


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


def _config(*overrides: str):
    return compose(*overrides)


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
    loc = _config(f"protocol={preset}").localize
    assert (loc.mode, loc.threshold, loc.backend, loc.interval) == (mode, threshold, backend, interval)
    assert protocol_label(_config(f"protocol={preset}")) == (preset, {})
    # the command line still wins over a preset, and a run that changes the preset's settings is not labelled with it
    other = "contours" if backend == "cc" else "cc"
    changed = _config(f"protocol={preset}", f"localize.backend={other}")
    assert changed.localize.backend == other
    assert protocol_label(changed) == ("custom", {"localize.backend": other})


def test_a_localize_choice_that_conflicts_with_the_protocol_is_used_and_labelled_custom():
    """``localize=fixed`` under the default wsoleval_v2 preset: the fixed config's own values (cc regions), the
    user's threshold, and the label ``custom`` with what changed."""
    config = _config("localize=fixed", "localize.threshold=0.5")
    loc = config.localize
    assert (loc.mode, loc.threshold, loc.backend) == ("fixed", 0.5, "cc")
    name, changed = protocol_label(config)
    assert name == "custom"
    assert changed == {"localize.mode": "fixed", "localize.interval": None, "localize.threshold": 0.5,
                       "localize.backend": "cc"}
    assert protocol_label(_config("protocol=none")) == ("custom", {})
    assert protocol_label(_config("protocol=gradcam17", "localize.threshold=0.15")) == ("gradcam17", {})


TSCAM_STYLE = [
    ("localize.resize=bilinear", "localize.resize", "bilinear"),
    ("localize.normalize=before_resize", "localize.normalize", "before_resize"),
    ("localize.clip_boxes=false", "localize.clip_boxes", False),
    ("localize.empty_box=[0,0,1,1]", "localize.empty_box", [0, 0, 1, 1]),
    ("eval.strict_class_loc=true", "eval.strict_class_loc", True),
    ("eval.clip_gt_boxes=true", "eval.clip_gt_boxes", True),
    ("dataset.box_rescale=tscam", "dataset.box_rescale", "tscam"),
    ("dataset.image_size=256", "dataset.image_size", 256),
    ("eval.pointing_tolerance=10", "eval.pointing_tolerance", 10.0),
    ("eval.target=top1", "eval.target", "top1"),
]


@pytest.mark.parametrize(("override", "key", "value"), TSCAM_STYLE)
def test_every_protocol_setting_a_run_changes_makes_it_custom(override, key, value):
    """The issue's examples: TS-CAM-style settings under wsoleval_v2 (and the other settings that change a number):
    each gives ``custom (wsoleval_v2 with k=v)`` in the table, by the settings the schema marks, not a list."""
    from wsol.config import protocol_caption, protocol_settings

    config = _config(override)
    assert key in protocol_settings(config)
    assert protocol_label(config) == ("custom", {key: value})
    assert protocol_caption(config) == f"custom (wsoleval_v2 with {key}={value})"


def test_the_settings_that_change_no_number_keep_the_label():
    for override in ("localize.engine=reference", "batch_size=3", "eval.bootstrap=0", "speed.overlap=false",
                     "eval.records=false", "model=resnet18"):
        assert protocol_label(_config(override)) == ("wsoleval_v2", {}), override
    assert protocol_label(_config("protocol=tscam", "localize.threshold=0.12")) == ("tscam", {})  # free: per dataset
    assert protocol_label(_config("protocol=tscam", "localize.backend=cc"))[0] == "custom"
    assert protocol_label(_config("dataset=cub", "dataset.root=/r")) == ("wsoleval_v2", {})


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


def test_mask_only_split_gives_pxap_without_box_metrics(tmp_path, wsoleval_data):
    from conftest import mask_only_split

    overrides, ids = mask_only_split(tmp_path, wsoleval_data)
    result = evaluate(_config(*overrides))
    assert result.info["images"] == len(ids) >= 3
    assert 0 < result.metrics["pxap"] < 100
    assert "maxboxacc_v2" not in result.metrics and "pointing_game" not in result.metrics
    assert "top1_cls" in result.metrics


def test_target_top1_drops_the_gt_class_metrics():
    """With ``eval.target=top1`` the maps explain the prediction: GT-known loc, top-5 loc and the pointing games
    (defined on the GT class's map) are left out; top-1 loc and MaxBoxAcc of those maps stay."""
    gt = evaluate(_config("limit=4", "batch_size=4")).metrics
    top1 = evaluate(_config("limit=4", "batch_size=4", "eval.target=top1")).metrics
    for key in ("gt_known_loc", "top5_loc", "top5_loc_err", "pointing_game", "energy_pointing_game"):
        assert key in gt and key not in top1, key
    assert "top1_loc" in top1 and "maxboxacc_v2" in top1


def test_size_mismatch_is_reported_in_the_run_facts(tmp_path, caplog):
    for name, size in (("a.jpg", (150, 100)), ("b.jpg", (300, 200)), ("c.jpg", (90, 60))):
        write_image(str(tmp_path / "images" / name), size)
    meta = tmp_path / "meta"
    meta.mkdir()
    (meta / "image_ids.txt").write_text("a.jpg\nb.jpg\nc.jpg\n")
    (meta / "class_labels.txt").write_text("a.jpg,1\nb.jpg,2\nc.jpg,3\n")
    (meta / "image_sizes.txt").write_text("a.jpg,300,200\nb.jpg,300,200\nc.jpg,90,61\n")
    (meta / "localization.txt").write_text("a.jpg,30,20,150,199\nb.jpg,30,20,150,199\nc.jpg,1,1,50,50\n")
    overrides = ["dataset=wsoleval", f"dataset.root={tmp_path / 'images'}", f"dataset.metadata_root={meta}"]
    with caplog.at_level("WARNING", logger="wsol"):
        result = evaluate(_config(*overrides))
    assert result.info["images"] == 3
    assert result.info["size_mismatch"] == 2 and result.info["size_mismatch_ids"] == ["a.jpg", "c.jpg"]
    assert "2 images are not the size image_sizes.txt gives" in caplog.text
