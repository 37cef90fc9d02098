"""Bootstrap intervals: the batched resampling equals recomputing every metric on each resample's images."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wsol.localize import localize
from wsol.metrics import BoxAccumulator, PointingAccumulator, PxAPAccumulator
from wsol.metrics.bootstrap import images_key, percentile_interval, resample_weights, tied_with, weighted_sums
from wsol.metrics.boxes import resampled_box_metrics
from wsol.metrics.masks import image_histograms, pxap_of


def _draws(n: int, resamples: int, seed: int) -> list[np.ndarray]:
    """The image indices of each resample, as resample_weights documents its draws."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, n, size=n) for _ in range(resamples)]


def _images(n: int = 14, size: int = 24, seed: int = 3):
    """Smooth random maps (uint8) with one or two GT boxes each, and class flags."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    maps, gts = [], []
    for _ in range(n):
        cy, cx, s = rng.uniform(4, size - 4), rng.uniform(4, size - 4), rng.uniform(2, 7)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s)) + 0.3 * rng.random((size, size))
        maps.append(np.round(255 * blob / blob.max()).astype(np.uint8))
        x0, y0 = rng.integers(0, size // 2, 2)
        gts.append([[x0, y0, x0 + rng.integers(3, size // 2), y0 + rng.integers(3, size // 2)]])
        if rng.random() < 0.3:
            gts[-1].append([0, 0, size - 1, size - 1])
    top1, top5 = rng.random(n) < 0.6, rng.random(n) < 0.85
    return np.stack(maps), gts, top1, top1 | top5


def _boxes(maps, gts, top1, top5, thresholds, batch=5):
    acc = BoxAccumulator(np.asarray(thresholds))
    for start in range(0, len(maps), batch):
        part = slice(start, start + batch)
        k = max(len(g) for g in gts[part])
        boxes, valid = np.zeros((len(gts[part]), k, 4), np.int64), np.zeros((len(gts[part]), k), bool)
        for i, g in enumerate(gts[part]):
            boxes[i, : len(g)], valid[i, : len(g)] = g, True
        sweep = localize(maps[part], acc.thresholds, boxes, valid)
        acc.update(sweep, maps[part].reshape(len(boxes), -1).max(1), boxes, valid, top1[part], top5[part])
    return acc


def test_resample_weights_are_the_documented_draws():
    weights = resample_weights(9, 5, seed=4)
    assert weights.dtype == np.uint8 and weights.shape == (5, 9) and (weights.sum(axis=1) == 9).all()
    for row, draw in zip(weights, _draws(9, 5, 4), strict=True):
        assert (row == np.bincount(draw, minlength=9)).all()
    assert (resample_weights(9, 5, seed=4) == weights).all() and (resample_weights(9, 5, seed=5) != weights).any()


def test_weighted_sums_equal_per_resample_sums_across_chunks(monkeypatch):
    from wsol.metrics import bootstrap

    monkeypatch.setattr(bootstrap, "_CHUNK", 4)  # several chunks, blocks split across them
    rng = np.random.default_rng(0)
    values = rng.integers(0, 2, (11, 3)).astype(bool)
    weights = resample_weights(11, 7, seed=1)
    sums = weighted_sums(weights, [values[:3], values[3:9], values[9:]])
    naive = np.array([values[d].sum(axis=0) for d in _draws(11, 7, 1)], dtype=np.float64)
    assert (sums == naive).all()
    with pytest.raises(ValueError, match="cover 11 images"):
        weighted_sums(weights, [values[:5]])


def test_box_metrics_of_every_resample_equal_a_fresh_evaluation_of_its_images():
    maps, gts, top1, top5 = _images()
    thresholds = np.arange(0, 1, 0.05)
    acc = _boxes(maps, gts, top1, top5, thresholds)
    resamples = 25
    samples = acc.bootstrap(resample_weights(len(maps), resamples, seed=7))
    for r, draw in enumerate(_draws(len(maps), resamples, 7)):
        naive = _boxes(maps[draw], [gts[i] for i in draw], top1[draw], top5[draw], thresholds).compute()
        for key, values in samples.items():
            assert values[r] == pytest.approx(naive[key], abs=1e-9), (key, r)
    assert set(samples) == {k for k in acc.compute() if not k.endswith("_threshold")}


def _hit_table(columns: dict[str, np.ndarray], t: int, d: int = 3) -> np.ndarray:
    """A hand-made hit table ``[n, (D + 3)·T]`` in :meth:`BoxAccumulator.image_hits`' column order."""
    n = len(next(iter(columns.values())))
    table = np.zeros((n, (d + 3) * t), bool)
    for block, hits in columns.items():
        start = {"largest": 0, "all30": t, "all50": 2 * t, "all70": 3 * t, "top1": 4 * t, "top5": 5 * t}[block]
        table[:, start : start + t] = hits
    return table


def test_box_metrics_of_a_hand_made_hit_table_against_a_per_resample_loop():
    rng = np.random.default_rng(4)
    n, t = 23, 4
    largest = rng.random((n, t)) < 0.5
    columns = {"largest": largest, "all30": largest | (rng.random((n, t)) < 0.4), "all50": largest,
               "all70": largest & (rng.random((n, t)) < 0.5), "top1": largest & (rng.random(n) < 0.6)[:, None],
               "top5": largest & (rng.random(n) < 0.9)[:, None]}
    table = _hit_table(columns, t)
    samples = resampled_box_metrics(weighted_sums(resample_weights(n, 40, 9), [table]), t, (30, 50, 70), n)
    for r, draw in enumerate(_draws(n, 40, 9)):
        acc = {k: 100.0 * v[draw].sum(axis=0) / n for k, v in columns.items()}  # BoxAcc per threshold
        best = int(np.argmax(acc["largest"]))
        assert samples["maxboxacc"][r] == acc["largest"].max() and samples["gt_known_loc"][r] == acc["largest"][best]
        parts = [acc[f"all{delta}"].max() for delta in (30, 50, 70)]
        assert samples["maxboxacc_v2"][r] == pytest.approx(np.mean(parts), abs=1e-12)
        assert samples["maxboxacc_v2_iou70"][r] == parts[2]
        assert samples["top1_loc"][r] == acc["top1"][best] and samples["top5_loc"][r] == acc["top5"][best]


def test_the_interval_is_of_the_max_the_threshold_chosen_in_each_resample():
    """Two thresholds hit complementary images (21 and 20 of 40, one in both): every resample draws 40 images, so
    one of the two hits at least half of them and MaxBoxAcc ≥ 50 in every resample. Fixing the whole set's best
    threshold instead gives an interval reaching well below 50: the interval of another quantity, wrong here."""
    n = 40
    first, second = np.arange(n) < 21, np.arange(n) >= 20
    table = _hit_table({"largest": np.stack([first, second], axis=1)}, 2)
    weights = resample_weights(n, 2000, seed=0)
    sums = weighted_sums(weights, [table])
    samples = resampled_box_metrics(sums, 2, (30, 50, 70), n)["maxboxacc"]
    fixed = 100.0 * sums[:, 0] / n  # BoxAcc at the whole set's best threshold (the first: 21 hits)
    assert (samples >= 50.0).all() and (samples >= fixed).all()
    lo, hi = percentile_interval(samples)
    fixed_lo, fixed_hi = percentile_interval(fixed)
    assert lo >= 50.0 > fixed_lo and (lo, hi) != (fixed_lo, fixed_hi)


def test_the_box_interval_re_maximises_on_real_localizations():
    maps, gts, top1, top5 = _images(n=30, seed=11)
    thresholds = np.arange(0, 1, 0.05)
    acc = _boxes(maps, gts, top1, top5, thresholds)
    weights = resample_weights(len(maps), 200, seed=0)
    samples = acc.bootstrap(weights)
    best = acc.best_threshold_index()
    hits = np.concatenate([h[:, best] for h in acc.image_hits()])  # largest region, δ = 50, at the fixed threshold
    fixed = 100.0 * (weights.astype(np.float64) @ hits) / len(maps)
    assert (samples["maxboxacc"] >= fixed - 1e-12).all() and (samples["maxboxacc"] > fixed + 1e-9).any()


def test_image_histograms_sum_to_numpy_histogram_including_edge_values():
    rng = np.random.default_rng(2)
    edges = np.append(np.arange(0, 1, 0.01), [1.0, 2.0, 3.0])
    values = rng.random((6, 50))
    values[0, :5] = [0.0, 0.01, 0.5, 0.99, 1.0]  # exactly on edges, and the closed last map value
    groups = rng.random((6, 50)) < 0.5
    per_image = image_histograms(values, groups, edges)
    assert per_image.shape == (6, len(edges) - 1) and per_image.dtype == np.uint16
    assert (per_image.sum(axis=0) == np.histogram(values[groups], bins=edges)[0]).all()
    for i in range(6):
        assert (per_image[i] == np.histogram(values[i][groups[i]], bins=edges)[0]).all()


def test_pxap_of_every_resample_equals_a_fresh_accumulator():
    rng = np.random.default_rng(5)
    maps = rng.random((10, 12, 12)).astype(np.float32)
    masks = (rng.random((10, 12, 12)) < 0.3).astype(np.uint8)
    masks[:, 0, 0] = 255  # ignored pixels
    acc = PxAPAccumulator(0.05)
    acc.update(maps[:4], masks[:4])
    acc.update(maps[4:], masks[4:])
    assert pxap_of(acc.fg_hist, acc.bg_hist) == pytest.approx(acc.compute(), abs=1e-12)
    samples = acc.bootstrap(resample_weights(10, 20, seed=2))["pxap"]
    for r, draw in enumerate(_draws(10, 20, 2)):
        naive = PxAPAccumulator(0.05)
        naive.update(maps[draw], masks[draw])
        assert samples[r] == pytest.approx(naive.compute(), abs=1e-10)


def test_pointing_games_of_every_resample():
    acc = PointingAccumulator()
    acc.hit, acc.energies = [True, False, True, True], [0.5, 0.25, 1.0, 0.0]
    samples = acc.bootstrap(resample_weights(4, 10, seed=3))
    for r, draw in enumerate(_draws(4, 10, 3)):
        assert samples["pointing_game"][r] == pytest.approx(100 * np.mean(np.array(acc.hit)[draw]))
        assert samples["energy_pointing_game"][r] == pytest.approx(100 * np.mean(np.array(acc.energies)[draw]))


def test_percentile_interval_and_paired_ties():
    values = np.arange(1001, dtype=np.float64)
    assert percentile_interval(values) == (25.0, 975.0)
    rng = np.random.default_rng(0)
    base = rng.normal(60, 1, 1000)
    assert tied_with(base, base - rng.normal(0.0, 0.5, 1000))  # a difference centred on 0
    assert not tied_with(base, base - 2.0 - rng.normal(0.0, 0.1, 1000))  # always 2 points worse
    assert images_key(["a", "b"]) != images_key(["b", "a"]) and len(images_key(["a"])) == 16
    assert not math.isnan(percentile_interval([1.0, 1.0])[0])
