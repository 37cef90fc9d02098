"""Faithfulness metrics: hand-computed curves on a linear toy model, parity with torchcam's and
pytorch-grad-cam's implementations under the options that reproduce them, and the pipeline path."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from conftest import ToyCamNet, compose
from torch import nn

from wsol.config import validate
from wsol.errors import WsolError
from wsol.faithfulness import Faithfulness, FaithfulnessOptions, curve_counts, explanation_inputs
from wsol.pipeline import evaluate


class PixelSum(nn.Module):
    """logit 0 = 255 · Σ channel-0 inputs (the uint8 sum when the input is pixels / 255), logit 1 = its negative."""

    def forward(self, x):
        s = 255.0 * x[:, 0].sum(dim=(1, 2))
        return torch.stack([s, -s], dim=1)


def _faith(model, options, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), metrics=None):
    metrics = metrics or ("average_drop", "increase_in_confidence", "deletion", "insertion")
    return Faithfulness(model, mean, std, torch.device("cpu"), metrics, options)


def test_curve_counts_follow_the_ceil_step_rule():
    assert curve_counts(4, 4) == [0, 1, 2, 3, 4]
    assert curve_counts(10, 4) == [0, 3, 6, 9, 10]
    counts = curve_counts(224 * 224, 20)
    assert len(counts) == 21 and counts[1] == 2509 and counts[-2] == 47671 and counts[-1] == 50176


def test_hand_computed_curves_on_a_linear_model():
    image = torch.zeros(1, 3, 2, 2, dtype=torch.uint8)
    image[0, 0] = torch.tensor([[40, 30], [20, 10]])  # the class-0 logit is 100
    maps = torch.tensor([[[0.9, 0.7], [0.5, 0.1]]])  # ranks the pixels 40, 30, 20, 10
    faith = _faith(PixelSum(), FaithfulnessOptions(score="logit", steps=4, chunk=3))
    out = faith(image, maps, torch.tensor([0]))
    # deletion 100, 60, 30, 10, 0 and insertion 0, 40, 70, 90, 100 at fractions 0, .25, .5, .75, 1
    assert out["deletion"].item() == pytest.approx(0.25 * (80 + 45 + 20 + 5))
    assert out["insertion"].item() == pytest.approx(0.25 * (20 + 55 + 80 + 95))
    # explanation map: 40·.9 + 30·.7 + 20·.5 + 10·.1 = 68 → drop (100 − 68) / 100
    assert out["average_drop"].item() == pytest.approx(0.32) and out["increase_in_confidence"].item() == 0.0
    raw = _faith(PixelSum(), FaithfulnessOptions(score="logit", relative=False))(image, maps, torch.tensor([0]))
    assert raw["average_drop"].item() == pytest.approx(32.0)
    # class 1 (logit −100): masking raises it to −68, an increase in confidence and no drop
    other = faith(image, maps, torch.tensor([1]))
    assert other["increase_in_confidence"].item() == 1.0 and other["average_drop"].item() == 0.0


def test_softmax_scores_and_the_black_and_blur_baselines():
    image = torch.zeros(1, 3, 2, 2, dtype=torch.uint8)
    image[0, 0] = torch.tensor([[2, 1], [1, 0]])  # logits ±4
    maps = torch.tensor([[[1.0, 0.5], [0.5, 0.0]]])
    out = _faith(PixelSum(), FaithfulnessOptions(steps=1))(image, maps, torch.tensor([0]))
    y, base = torch.sigmoid(torch.tensor(8.0)).item(), 0.5  # softmax of (4, −4); all-zero input: (0, 0)
    assert out["deletion"].item() == pytest.approx((y + base) / 2) and out["insertion"].item() == pytest.approx(
        (base + y) / 2)
    black = _faith(PixelSum(), FaithfulnessOptions(score="logit", baseline="black", steps=1), mean=(0.5,) * 3)
    # pixels 0 → input −0.5 everywhere: logit 255 · 4 · (−0.5) = −510 at the all-baseline end
    original = 255.0 * ((image[0, 0].float() / 255) - 0.5).sum().item()
    assert black(image, maps, torch.tensor([0]))["deletion"].item() == pytest.approx((original - 510.0) / 2, rel=1e-6)
    flat = torch.full((1, 3, 8, 8), 77, dtype=torch.uint8)  # blurring a constant image changes nothing
    blurred = _faith(PixelSum(), FaithfulnessOptions(score="logit", baseline="blur", steps=2))
    assert blurred(flat, torch.rand(1, 8, 8), torch.tensor([0]))["deletion"].item() == pytest.approx(77 * 64, rel=1e-5)


def test_explanation_inputs_multiply_the_normalised_tensor_or_the_pixels():
    pixels, maps = torch.full((1, 3, 1, 1), 0.8), torch.full((1, 1, 1), 0.5)
    mean, std = torch.full((1, 3, 1, 1), 0.4), torch.full((1, 3, 1, 1), 0.2)
    assert explanation_inputs(pixels, maps, mean, std, "normalized").flatten()[0].item() == pytest.approx(1.0)
    assert explanation_inputs(pixels, maps, mean, std, "pixels").flatten()[0].item() == pytest.approx(0.0)


def _toy_batch(n=3, size=12, seed=0):
    torch.manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8)
    maps = torch.rand(n, size, size)
    return images, maps, torch.tensor([0, 2, 1][:n])


class _FakeExtractor:
    """torchcam's extractor interface around given maps, so its metrics score exactly those maps."""

    def __init__(self, model, maps):
        self.model, self.maps = model, maps

    def __call__(self, class_idx=None, scores=None, normalized=True, **kwargs):
        return [self.maps]

    def fuse_cams(self, cams):
        return cams[0]

    @contextlib.contextmanager
    def _hooks_off(self):
        yield


MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _normalised(images):
    return (images.float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


@pytest.mark.parametrize("score", ["logit", "softmax"])
def test_torchcam_deletion_insertion_and_classification_metric(score):
    from torchcam.metrics import ClassificationMetric, DeletionInsertionMetric

    model = ToyCamNet(classes=3).eval()
    images, maps, targets = _toy_batch()
    logits_fn = (lambda x: torch.softmax(x, dim=-1)) if score == "softmax" else None
    theirs = DeletionInsertionMetric(_FakeExtractor(model, maps), logits_fn, steps=20, batch_size=7)
    theirs.update(_normalised(images), class_idx=targets.tolist())
    ours = _faith(model, FaithfulnessOptions(score=score, steps=20, chunk=7), MEAN, STD)(images, maps, targets)
    assert ours["deletion"].mean().item() == pytest.approx(theirs.summary()["deletion_auc"], rel=1e-5)
    assert ours["insertion"].mean().item() == pytest.approx(theirs.summary()["insertion_auc"], rel=1e-5)
    metric = ClassificationMetric(_FakeExtractor(model, maps), logits_fn)
    metric.update(_normalised(images), class_idx=targets.tolist())
    assert ours["average_drop"].mean().item() == pytest.approx(metric.summary()["avg_drop"], rel=1e-5, abs=1e-6)
    assert ours["increase_in_confidence"].mean().item() == metric.summary()["conf_increase"]


def test_pytorch_grad_cam_drop_and_increase_in_confidence():
    from pytorch_grad_cam.metrics.cam_mult_image import DropInConfidence, IncreaseInConfidence
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = ToyCamNet(classes=3).eval()
    images, maps, targets = _toy_batch(seed=1)
    wanted = [ClassifierOutputTarget(int(t)) for t in targets]
    drop = DropInConfidence()(_normalised(images), maps.numpy(), wanted, model)
    increase = IncreaseInConfidence()(_normalised(images), maps.numpy(), wanted, model)
    ours = _faith(model, FaithfulnessOptions(score="logit", relative=False), MEAN, STD)(images, maps, targets)
    assert ours["average_drop"].numpy() == pytest.approx(np.asarray(drop, dtype=np.float64).ravel(), rel=1e-5,
                                                         abs=1e-6)
    assert ours["increase_in_confidence"].numpy().tolist() == np.asarray(increase, dtype=np.float64).ravel().tolist()


def test_faithfulness_in_the_pipeline_table_and_resume(tmp_path):
    overrides = ("limit=8", "batch_size=4", "eval.bootstrap=50", "perturbation.steps=5", "perturbation.chunk=16",
                 "eval.faithfulness=[average_drop,increase_in_confidence,deletion,insertion]")
    first = evaluate(compose(*overrides), str(tmp_path))
    assert {"average_drop", "increase_in_confidence", "deletion", "insertion"} <= set(first.metrics)
    assert 0 <= first.metrics["deletion"] <= 100 and set(first.info["ci"]) >= {"deletion", "average_drop"}
    again = evaluate(compose(*overrides), str(tmp_path))  # every batch read back from partials/
    assert again.metrics == first.metrics and again.info["ci"] == first.info["ci"]
    plain = evaluate(compose(*overrides[:3]))
    assert plain.metrics["maxboxacc_v2"] == first.metrics["maxboxacc_v2"] and "deletion" not in plain.metrics
    from wsol.report.compare import paper_tables

    run = {"method": "gradcam", "model": "m", "layer": "l", "dataset": "demo", "metrics": first.metrics,
           "ci": first.info["ci"], "bootstrap": first.info["bootstrap"]}
    md = paper_tables([run], ["maxboxacc_v2", "average_drop", "deletion", "insertion"], "cap")["md"]
    assert "| MaxBoxAccV2 | Avg Drop | Deletion | Insertion |" in md


def test_bad_faithfulness_settings_are_one_line():
    for overrides, message in (
        (["eval.faithfulness=[deletions]"], "unknown metric deletions; valid: average_drop"),
        (["eval.faithfulness=[deletion]", "method=from_files", "method.maps_dir=/tmp"], "not method=from_files"),
        (["eval.faithfulness=[deletion]", "perturbation.steps=0"], "perturbation.steps=0: must be ≥ 1"),
    ):
        with pytest.raises(WsolError, match=message):
            validate(compose(*overrides))


@pytest.mark.slow
def test_a_multirun_tabulates_box_and_faithfulness_metrics_side_by_side(tmp_path):
    import subprocess
    import sys

    from conftest import REPO

    sweep = tmp_path / "sweep"
    result = subprocess.run(
        [sys.executable, "-m", "wsol.run", "-m", "method=cam,gradcampp", "limit=6", "batch_size=6", "num_workers=0",
         "cache_dir=null", "eval.bootstrap=100", "eval.faithfulness=[average_drop,deletion,insertion]",
         "perturbation.steps=4", f"hydra.sweep.dir={sweep}"],
        capture_output=True, text=True, cwd=REPO, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    header = next(line for line in (sweep / "table.md").read_text().splitlines() if line.startswith("| Method"))
    assert "MaxBoxAccV2" in header and "Avg Drop" in header and "Deletion" in header and "Insertion" in header
    assert "Deletion ci_lo" in (sweep / "table.csv").read_text().splitlines()[0]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # numpy on their torch tensors
def test_road_imputation_solves_pytorch_grad_cams_system():
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    from wsol.faithfulness import impute_linear

    torch.manual_seed(0)
    image, keep = torch.randn(3, 14, 17), (torch.rand(14, 17) > 0.6).float()
    theirs = NoisyLinearImputer(noise=0.0)(image, keep)
    ours = impute_linear(image[None], keep[None] == 0)[0]
    assert (ours - theirs).abs().max().item() < 1e-5
    assert torch.equal(ours[:, keep == 1], image[:, keep == 1])  # kept pixels untouched
    # a removed pixel is the weighted mean of its neighbours: the system's defining equation
    flat = torch.zeros(1, 1, 3, 3)
    flat[0, 0, 0] = torch.tensor([0.0, 6.0, 0.0])
    hole = torch.zeros(1, 3, 3, dtype=torch.bool)
    hole[0, 1, 1] = True
    assert impute_linear(flat, hole)[0, 0, 1, 1].item() == pytest.approx(1 / 6 * 6.0 / 1.0)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # numpy on their torch tensors
@pytest.mark.parametrize("score", ["logit", "softmax"])
def test_road_matches_pytorch_grad_cams_road_combined_without_noise(score, monkeypatch):
    from pytorch_grad_cam.metrics import road
    from pytorch_grad_cam.metrics.road import ROADCombined
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget

    monkeypatch.setattr(road.torch, "randn_like", torch.zeros_like)  # their imputation noise, off
    model = ToyCamNet(classes=3).eval()
    images, maps, targets = _toy_batch(seed=2)
    target = ClassifierOutputTarget if score == "logit" else ClassifierOutputSoftmaxTarget
    percentiles = [20, 50, 80]
    theirs = ROADCombined(percentiles)(_normalised(images), maps.numpy(), [target(int(t)) for t in targets], model)
    options = FaithfulnessOptions(score=score, road_percentiles=tuple(percentiles), road_noise=0.0, chunk=5)
    ours = _faith(model, options, MEAN, STD, metrics=("road",))(images, maps, targets)["road"]
    assert ours.numpy() == pytest.approx(np.asarray(theirs, dtype=np.float64), rel=1e-4, abs=1e-5)


def test_road_in_the_pipeline_is_seeded_per_batch(tmp_path):
    overrides = ("limit=4", "batch_size=2", "dataset.image_size=32", "eval.bootstrap=20",
                 "eval.faithfulness=[road]", "perturbation.road_percentiles=[30,70]", "perturbation.chunk=8")
    first = evaluate(compose(*overrides), str(tmp_path))
    again = evaluate(compose(*overrides))  # fresh, not resumed: the same noise, the same number
    assert first.metrics["road"] == again.metrics["road"] and np.isfinite(first.metrics["road"])
    assert "road" in first.info["ci"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # numpy on their torch tensors
def test_road_imputation_solvers_agree_on_removed_regions():
    """ROAD's masks are regions (a map's percentiles), where conjugate gradients need many iterations: the direct
    solve of a batch (its block-diagonal system split over threads) is each image's own solve, pytorch-grad-cam's
    to float32 rounding, and the conjugate gradients' to their tolerance."""
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    from wsol.faithfulness import impute_linear, road_masks

    torch.manual_seed(1)
    yy, xx = torch.meshgrid(torch.arange(40.0), torch.arange(36.0), indexing="ij")
    blob = torch.exp(-((yy - 15) ** 2 + (xx - 20) ** 2) / (2 * 8.0**2))
    removed = torch.cat([road_masks(blob[None], p)[kind] for p in (10, 50, 90) for kind in (0, 1)])
    images = torch.randn(len(removed), 3, 40, 36)
    batch = impute_linear(images, removed, solver="direct")
    for i in range(len(images)):
        alone = impute_linear(images[i : i + 1], removed[i : i + 1], solver="direct")[0]
        assert torch.equal(alone, batch[i])
        theirs = NoisyLinearImputer(noise=0.0)(images[i], (~removed[i]).float())
        assert (batch[i] - theirs).abs().max().item() < 1e-6
    cg = impute_linear(images, removed, solver="cg")
    assert (cg - batch).abs().max().item() < 1e-4
    assert torch.equal(impute_linear(images, torch.zeros_like(removed), solver="direct"), images)


def _explainer(model):
    """A deterministic stand-in for a CAM method: the min-max normalised channel mean of the input, times the
    class's logit sign (so the map depends on both the input and the class)."""

    def explain(inputs, targets):
        with torch.no_grad():
            sign = model(inputs).gather(1, targets[:, None]).sign()[:, :, None]
        maps = inputs.mean(1) * sign
        flat = maps.flatten(1)
        low, high = flat.min(1).values[:, None, None], flat.max(1).values[:, None, None]
        return (maps - low) / (high - low + 1e-12)

    return explain


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # numpy on their torch tensors
@pytest.mark.parametrize("score", ["logit", "softmax"])
def test_arcc_complexity_and_coherency_are_pytorch_grad_cams(score, monkeypatch):
    """pytorch-grad-cam 1.5.7's ARCC (its Complexity, Coherency with the same base method, ROADCombined without
    noise, and its harmonic mean) on the same images, maps, model and targets."""
    from pytorch_grad_cam.metrics import arcc, road
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget

    monkeypatch.setattr(road.torch, "randn_like", torch.zeros_like)
    model = ToyCamNet(classes=3).eval()
    images, maps, targets = _toy_batch(n=3, seed=4)
    explain = _explainer(model)

    class Base:  # pytorch-grad-cam's base_method interface: maps as NumPy arrays
        def __call__(self, input_tensor, targets):
            return explain(input_tensor, torch.tensor([t.category for t in targets])).numpy()

    target = ClassifierOutputTarget if score == "logit" else ClassifierOutputSoftmaxTarget
    their_targets = [target(int(t)) for t in targets]
    percentiles = [20, 40, 60, 80]
    inputs = _normalised(images)
    theirs = {
        "complexity": arcc.Complexity()(maps.numpy()),
        "coherency": arcc.Coherency()(inputs, maps.numpy(), their_targets, model, Base()),
        "arcc": arcc.ARCC(Base(), percentiles)(inputs, maps.numpy(), their_targets, model),
    }
    options = FaithfulnessOptions(score=score, road_percentiles=tuple(percentiles), road_noise=0.0)
    ours = _faith(model, options, MEAN, STD, metrics=tuple(theirs))(images, maps, targets, explain=explain)
    for key, value in theirs.items():
        assert ours[key].numpy() == pytest.approx(np.asarray(value, dtype=np.float64), rel=1e-4, abs=1e-5), key
    assert 0 < ours["arcc"].min() and ours["arcc"].max() < 1


def test_adcc_and_average_gain_hand_computed():
    """ADCC = 3 / (1 / coherency + 1 / (1 − complexity) + 1 / (1 − average drop)) per image, and the average gain
    max(0, O − Y) / (1 − Y), from the model's own probabilities of the image and of map ⊙ image."""
    from wsol.faithfulness import harmonic_mean, pearson

    assert pearson(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[2.0, 4.0, 6.5]])).item() == pytest.approx(
        np.corrcoef([1, 2, 3], [2, 4, 6.5])[0, 1])
    assert harmonic_mean(torch.tensor(0.5), torch.tensor(1.0)).item() == pytest.approx(2 / 3)
    model = ToyCamNet(classes=3).eval()
    images, maps, targets = _toy_batch(n=3, seed=5)
    explain = _explainer(model)
    got = _faith(model, FaithfulnessOptions(), MEAN, STD, metrics=("adcc", "average_gain", "average_drop"))(
        images, maps, targets, explain=explain)
    inputs = _normalised(images)
    with torch.no_grad():
        y = model(inputs).softmax(1).gather(1, targets[:, None])[:, 0].double()
        o = model(inputs * maps[:, None]).softmax(1).gather(1, targets[:, None])[:, 0].double()
    drop = (y - o).clamp(min=0) / y
    coherency = (torch.tensor(np.array([np.corrcoef(explain(inputs * maps[:, None], targets)[i].flatten(),
                                                    maps[i].flatten())[0, 1] for i in range(3)])) + 1) / 2
    complexity = maps.flatten(1).double().mean(1)
    expected = 3 / (1 / coherency + 1 / (1 - complexity) + 1 / (1 - drop))
    assert got["average_drop"].numpy() == pytest.approx(drop.numpy(), rel=1e-5)
    assert got["adcc"].numpy() == pytest.approx(expected.numpy(), rel=1e-5)
    assert got["average_gain"].numpy() == pytest.approx(((o - y).clamp(min=0) / (1 - y)).numpy(), rel=1e-5, abs=1e-9)


def test_faithfulness_extras_in_a_run_and_their_errors(tmp_path):
    """The method itself is run again on the explanation inputs (coherency); average gain needs probabilities."""
    overrides = ("limit=2", "batch_size=2", "dataset.image_size=32", "eval.bootstrap=0",
                 "eval.faithfulness=[coherency,adcc,arcc,average_gain]", "perturbation.road_percentiles=[30,70]")
    result = evaluate(compose(*overrides))
    for key in ("coherency", "adcc", "arcc", "average_gain"):
        assert 0 <= result.metrics[key] <= 100, key
    with pytest.raises(WsolError, match="average_gain .* needs perturbation.score=softmax"):
        validate(compose("eval.faithfulness=[average_gain]", "perturbation.score=logit"))
