"""The method zoo: each formula on small nets where it reduces to a hand-computed value, the GAP
invariants, batch and chunk invariance, determinism, flat inputs, multi-layer fusion, CPU/GPU."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conftest import MeanHead, SquareHead, ToyCamNet
from torch import nn

from wsol.cams import METHODS, build_method
from wsol.cams.core import fuse_layer_maps, seeded_noise
from wsol.cams.eigen import first_component_projection
from wsol.cams.gradcam import gradcampp_weights
from wsol.cams.perturb import activation_masks, chunk_size, forward_bytes
from wsol.errors import WsolError
from wsol.ops import minmax_normalize

TRANSFORMER_ONLY = ("legrad",)  # reads attention probabilities: tested on ViTs below
ALL = [name for name in METHODS.names() if name not in TRANSFORMER_ONLY]
PIXEL_BASELINES = ("sobel", "center")  # maps of the image alone: the layer is not read


def layer_for(name: str, layer: str = "features", before: str = "conv"):
    """The toy networks' target layer; RefineCAM multiplies two layers' maps (one resolution stage here)."""
    return [before, layer] if name == "refinecam" else layer


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


# --- hand values -------------------------------------------------------------------------------


def test_xgradcam_layercam_hirescam_hand_values():
    a = torch.tensor([[[[1.0, 2.0]], [[3.0, 1.0]]]])  # two channels of two pixels
    net = SquareHead(torch.tensor([[1.0, -1.0]]))  # g = 2A for channel 0, -2A for channel 1
    label = torch.tensor([0])
    # XGrad-CAM: w_k = Σ g A / Σ A → w0 = 2·5/3, w1 = -2·10/4; map = w0 A0 + w1 A1
    w0, w1 = 10 / 3, -5.0
    xgrad = build_method("xgradcam", net, "features", relu=False)(a, label).maps[0, 0]
    assert xgrad.tolist() == pytest.approx([w0 * 1 + w1 * 3, w0 * 2 + w1 * 1])
    # LayerCAM: Σ_k ReLU(g_k) ⊙ A_k → only channel 0: 2A0² = [2, 8]
    assert build_method("layercam", net, "features")(a, label).maps[0, 0].tolist() == [2.0, 8.0]
    # HiResCAM: Σ_k g_k ⊙ A_k = 2A0² − 2A1² = [2 − 18, 8 − 2] → ReLU → [0, 6]
    assert build_method("hirescam", net, "features")(a, label).maps[0, 0].tolist() == [0.0, 6.0]


def test_gradcampp_alpha_norm_matches_the_authors_code():
    a = torch.tensor([[[[1.0, 2.0]]]])  # g = 2A = [2, 4]; α = [1/8, 1/14] (paper Eq. 19)
    net = SquareHead(torch.tensor([[1.0]]))
    alpha = torch.tensor([1 / 8, 1 / 14])
    w = float((alpha / alpha.sum() * torch.tensor([2.0, 4.0])).sum())
    out = build_method("gradcampp", net, "features", alpha_norm=True)(a, torch.tensor([0])).maps[0, 0]
    assert out.tolist() == pytest.approx([w, 2 * w], rel=1e-6)


def test_smoothgradcampp_without_noise_is_gradcampp():
    net = ToyCamNet(channels=5, classes=3)
    x, labels = torch.randn(2, 3, 8, 8), torch.tensor([2, 0])
    smooth = build_method("smoothgradcampp", net, "conv", std=0.0)(x, labels).maps
    plain = build_method("gradcampp", net, "conv")(x, labels).maps
    assert torch.allclose(smooth, plain, atol=1e-6)


def test_smoothgradcampp_pairs_each_copys_activations_with_its_gradients():
    # A = X + ε_i on copy i, g = 2A: the weights average Grad-CAM++ of (A_i, g_i); the clean A is weighted
    x = torch.rand(1, 2, 3, 3) + 0.5
    net = SquareHead(torch.tensor([[1.0, 0.5]]))
    noise = seeded_noise((3, 2, 3, 3), 0.2, seed=7, device=torch.device("cpu"))
    v = torch.tensor([1.0, 0.5])[:, None, None]
    weights = torch.stack([gradcampp_weights(x + e, 2 * (x + e) * v) for e in noise])
    expected = (weights.mean(0)[:, :, None, None] * x).sum(1)
    method = build_method("smoothgradcampp", net, "features", num_samples=3, std=0.2, seed=7)
    assert torch.allclose(method(x, torch.tensor([0])).maps, expected, atol=1e-5)


def test_scorecam_family_hand_values():
    # one channel, two pixels X = [1, 3], A = X: mask H = [0, 1], X∘H = [0, 3], mean 1.5,
    # logits (1.5, -1.5) → p_0 = σ(3); the map is p_0 · A
    x = torch.tensor([[[[1.0, 3.0]]]])
    net = MeanHead(torch.tensor([[1.0], [-1.0]]))
    label = torch.tensor([0])
    score = build_method("scorecam", net, "features")(x, label).maps[0, 0]
    assert score.tolist() == pytest.approx([sigmoid(3), 3 * sigmoid(3)], rel=1e-6)
    # IS-CAM, N = 2: scales 1/2 and 1 → (σ(1.5) + σ(3)) / 2; torchcam's cumulative 1/2, 3/2 → (σ(1.5) + σ(4.5)) / 2
    iscam = build_method("iscam", net, "features", num_samples=2)(x, label).maps[0, 0, 0]
    assert float(iscam) == pytest.approx((sigmoid(1.5) + sigmoid(3)) / 2, rel=1e-6)
    cumulative = build_method("iscam", net, "features", num_samples=2, path="cumulative")(x, label).maps[0, 0, 0]
    assert float(cumulative) == pytest.approx((sigmoid(1.5) + sigmoid(4.5)) / 2, rel=1e-6)
    # SS-CAM without noise is Score-CAM
    sscam = build_method("sscam", net, "features", num_samples=3, std=0.0)(x, label).maps[0, 0]
    assert torch.allclose(sscam, score)
    # the libraries' weighting: a softmax over one channel is 1 → the map is A itself
    lib = build_method("scorecam", net, "features", weighting="channel_softmax")(x, label).maps[0, 0]
    assert lib.tolist() == pytest.approx([1.0, 3.0])


def test_score_family_weightings_and_sscam_noise_against_a_direct_computation():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 4, 4)
    weight = torch.randn(5, 3)
    net = MeanHead(weight)
    labels = torch.tensor([4, 1])
    masks = minmax_normalize(x.flatten(0, 1))[0].view(2, 3, 1, 4, 4)  # [B, C, 1, H, W]
    logits = net((x[:, None] * masks).flatten(0, 1)).view(2, 3, 5)  # masked input per channel
    target_logits = logits[torch.arange(2), :, labels]  # [B, C]
    expected = (target_logits.softmax(1)[:, :, None, None] * x).sum(1).clamp_min(0)
    lib = build_method("scorecam", net, "features", weighting="channel_softmax")(x, labels).maps
    assert torch.allclose(lib, expected, atol=1e-6)
    # SS-CAM: one noise field per sample, shared by channels and images, drawn from the seed
    noise = torch.randn((4, 1, 4, 4), generator=torch.Generator().manual_seed(3)) * 0.5
    probs = torch.stack([net((x[:, None] * (masks + e)).flatten(0, 1)).softmax(1).view(2, 3, 5) for e in noise])
    w = probs.mean(0)[torch.arange(2), :, labels]
    expected = (w[:, :, None, None] * x).sum(1).clamp_min(0)
    got = build_method("sscam", net, "features", num_samples=4, std=0.5, seed=3)(x, labels).maps
    assert torch.allclose(got, expected, atol=1e-6)
    # SS-CAM and IS-CAM under the libraries' weighting: softmax over channels of the mean target logit
    noisy = torch.stack([net((x[:, None] * (masks + e)).flatten(0, 1)).view(2, 3, 5) for e in noise])
    w = noisy.mean(0)[torch.arange(2), :, labels].softmax(1)
    expected = (w[:, :, None, None] * x).sum(1).clamp_min(0)
    got = build_method("sscam", net, "features", num_samples=4, std=0.5, seed=3, weighting="channel_softmax")
    assert torch.allclose(got(x, labels).maps, expected, atol=1e-6)
    scaled = torch.stack([net((x[:, None] * masks * i / 3).flatten(0, 1)).view(2, 3, 5) for i in (1, 2, 3)])
    w = scaled.mean(0)[torch.arange(2), :, labels].softmax(1)
    expected = (w[:, :, None, None] * x).sum(1).clamp_min(0)
    got = build_method("iscam", net, "features", num_samples=3, weighting="channel_softmax")
    assert torch.allclose(got(x, labels).maps, expected, atol=1e-6)


def test_ablationcam_hand_values_and_negative_score_guard():
    a = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[4.0, 0.0], [1.0, 1.0]]]])  # means 2.5 and 1.5
    net = MeanHead(torch.tensor([[0.5, 2.0], [-1.0, 0.5]]))
    # class 0: S = 1.25 + 3 = 4.25, S − S_k = W_k mean(A_k) → w = (1.25, 3) / 4.25
    out = build_method("ablationcam", net, "features", relu=False)(a, torch.tensor([0])).maps[0]
    assert torch.allclose(out, (1.25 * a[0, 0] + 3 * a[0, 1]) / 4.25)
    # class 1: S = -2.5 + 0.75 = -1.75 < 0: weights (-2.5, 0.75) / |S|, not divided by S (which flips them)
    out = build_method("ablationcam", net, "features", relu=False)(a, torch.tensor([1])).maps[0]
    assert torch.allclose(out, (-2.5 * a[0, 0] + 0.75 * a[0, 1]) / 1.75)


def test_eigencam_rank_one_and_deterministic_sign():
    s = torch.tensor([0.0, 1.0, 4.0, 2.0])  # spatial pattern over 2×2 positions
    for u in (torch.tensor([1.0, 2.0, 2.0]), torch.tensor([-1.0, -2.0, -2.0])):
        a = (u[:, None] * s[None]).view(1, 3, 2, 2)  # A_k = u_k · s: rank one
        got = first_component_projection(a)[0].flatten()
        # projection = (s − mean s) · |u| up to sign; the sign follows Σ_k A_k = s · Σu
        expected = (s - s.mean()) * u.norm() * torch.sign(u.sum())
        assert torch.allclose(got, expected, atol=1e-5)
    net = ToyCamNet(channels=6)
    x, labels = torch.randn(3, 3, 7, 7), torch.tensor([0, 1, 2])
    method = build_method("eigencam", net, "features")
    maps = method(x, labels).maps
    assert torch.equal(maps, method(x, labels).maps)
    assert torch.equal(maps, method(x, torch.tensor([2, 2, 0])).maps)  # class agnostic


# --- invariants ----------------------------------------------------------------------------------


def test_gap_invariant_cam_gradcam_xgradcam_hirescam_coincide():
    net = ToyCamNet(channels=6, classes=4)
    x, labels = torch.randn(4, 3, 9, 9), torch.tensor([0, 3, 1, 2])
    maps = {m: minmax_normalize(build_method(m, net, layer_for(m))(x, labels).maps)[0] for m in ALL}
    for name in ("gradcam", "xgradcam", "hirescam"):
        assert torch.allclose(maps[name], maps["cam"], atol=1e-5), name
    # the other formulas differ at this layer
    for name in ("gradcampp", "layercam", "scorecam", "eigencam", "ablationcam", "sscam", "iscam"):
        assert not torch.allclose(maps[name], maps["cam"], atol=1e-3), name


@pytest.mark.parametrize("name", ALL)
def test_batch_invariance_chunking_and_determinism(name):
    net = ToyCamNet(channels=5, classes=4)
    x, labels = torch.randn(4, 3, 8, 8), torch.tensor([3, 0, 1, 2])
    options = {"num_samples": 2} if name in ("sscam", "iscam", "smoothgradcampp") else {}
    method = build_method(name, net, layer_for(name), **options)
    batch = method(x, labels).maps
    for i in range(4):
        assert torch.allclose(method(x[i : i + 1], labels[i : i + 1]).maps[0], batch[i], atol=1e-5)
    assert torch.equal(method(x, labels).maps, batch)
    if "memory_budget_mb" in method.__dict__:
        tiny = build_method(name, net, layer_for(name), memory_budget_mb=1e-6, **options)  # one input per forward
        assert torch.allclose(tiny(x, labels).maps, batch, atol=1e-5)


@pytest.mark.parametrize("name", ALL)
def test_flat_channels_and_flat_maps_give_finite_maps(name):
    if name in PIXEL_BASELINES:
        pytest.skip("a map of the image alone: flat activations do not make it flat (tested in test_new_methods)")
    net = ToyCamNet(channels=4, classes=3)
    # a zero input: every channel is its bias, spatially flat, so every method's map is flat (and finite)
    maps = build_method(name, net, layer_for(name))(torch.zeros(2, 3, 6, 6), torch.tensor([0, 1])).maps
    assert torch.isfinite(maps).all() and (maps >= 0).all()
    assert torch.equal(maps.amax((1, 2)), maps.amin((1, 2)))
    # a constant non-zero input: flat inside, but the zero padding makes the border differ: finite, not NaN
    maps = build_method(name, net, layer_for(name))(torch.full((2, 3, 6, 6), 0.7), torch.tensor([0, 1])).maps
    assert torch.isfinite(maps).all() and (maps >= 0).all()
    dead = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    dead[0].bias.data.fill_(-100.0)  # ReLU zeroes every channel
    maps = build_method(name, dead, layer_for(name, "1", "0"))(torch.rand(2, 3, 5, 5), torch.tensor([0, 1])).maps
    if name == "reciprocam":  # a map of probabilities: every masked copy is all zeros, so each map is flat
        assert torch.isfinite(maps).all() and torch.equal(maps.amax((1, 2)), maps.amin((1, 2)))
    else:
        assert torch.isfinite(maps).all() and (maps == 0).all()


def test_perturbation_inputs_are_built_in_chunks_under_the_budget():
    net = ToyCamNet(channels=8, classes=3)
    x, labels = torch.rand(3, 3, 10, 10), torch.tensor([0, 1, 2])
    per_input = forward_bytes(net, x)
    assert per_input >= 3 * 10 * 10 * 4 + 8 * 10 * 10 * 4  # the input and the conv output at least
    budget_mb = 5 * per_input / 2**20
    assert chunk_size(net, x, budget_mb) == 5
    seen: list[int] = []
    hook = net.register_forward_pre_hook(lambda _m, inputs: seen.append(len(inputs[0])))
    try:
        build_method("scorecam", net, "features", weighting="channel_softmax", memory_budget_mb=budget_mb)(x, labels)
    finally:
        hook.remove()
    # the probe forward (1), the clean batch (3), then 3 × 8 masked inputs 5 at a time
    assert max(seen[2:]) == 5 and sum(seen[2:]) == 3 * 8 and seen[0] == 3
    with pytest.raises(WsolError, match="memory_budget_mb"):
        chunk_size(net, x, 0)


def test_activation_masks_orders():
    """One row 0, 4, 0 upsampled to width 4 (bilinear, align_corners=False: source x = 0.75 j − 0.125, clamped):
    0, 2.5, 2.5, 0. Upsampling first and then min-max gives 0, 1, 1, 0; min-max first (0, 1, 0), then
    upsampling, gives 0, 0.625, 0.625, 0. With aligned corners (source x = 2j/3): 0, 8/3, 8/3, 0."""
    a = torch.tensor([[[0.0, 4.0, 0.0]]])
    up = activation_masks(a, (1, 4), "upsample_first")
    down = activation_masks(a, (1, 4), "normalize_first")
    assert up.shape == (1, 1, 1, 4)
    assert up.flatten().tolist() == [0.0, 1.0, 1.0, 0.0]
    assert torch.allclose(down.flatten(), torch.tensor([0.0, 0.625, 0.625, 0.0]))
    aligned = activation_masks(a, (1, 4), "normalize_first", align_corners=True)
    assert torch.allclose(aligned.flatten(), torch.tensor([0.0, 2 / 3, 2 / 3, 0.0]))
    aligned_up = activation_masks(a, (1, 4), "upsample_first", align_corners=True)
    assert torch.allclose(aligned_up.flatten(), torch.tensor([0.0, 1.0, 1.0, 0.0]))
    flat = activation_masks(torch.ones(1, 2, 2), (3, 3))
    assert (flat == 0).all()
    net = ToyCamNet(channels=2, classes=3)
    with pytest.raises(WsolError, match="mask_order"):
        build_method("scorecam", net, "features", mask_order="other")


# --- several layers --------------------------------------------------------------------------------


def test_fusion_hand_values():
    fine = torch.tensor([[[0.0, 1.0], [2.0, 4.0]]])  # min-max → [0, .25, .5, 1]
    coarse = torch.tensor([[[3.0]]])  # flat → zeros after min-max; resized to 2×2
    mean = fuse_layer_maps([fine, coarse], "mean")
    assert mean.flatten().tolist() == [0.0, 0.125, 0.25, 0.5]
    assert fuse_layer_maps([fine, fine / 2], "max").flatten().tolist() == [0.0, 0.25, 0.5, 1.0]
    lc = fuse_layer_maps([fine, coarse], "layercam")  # tanh(2 M / max M), then the maximum
    expected = torch.maximum(torch.tanh(2 * fine / 4), torch.full_like(fine, math.tanh(2.0)))
    assert torch.allclose(lc, expected)
    assert torch.equal(fuse_layer_maps([fine], "layercam"), fine)
    with pytest.raises(WsolError, match="model.fusion must be one of mean, max, layercam"):
        build_method("gradcam", ToyCamNet(), ["conv", "features"], fusion="sum")  # checked once, when built


def test_several_layers_fuse_per_layer_maps():
    net = ToyCamNet(channels=5, classes=3)
    x, labels = torch.randn(2, 3, 6, 6), torch.tensor([1, 2])
    single = build_method("gradcam", net, "features")(x, labels).maps
    assert torch.equal(build_method("gradcam", net, ["features"])(x, labels).maps, single)
    conv = build_method("gradcam", net, "conv")(x, labels).maps
    for fusion in ("mean", "max", "layercam"):
        fused = build_method("gradcam", net, ["conv", "features"], fusion=fusion)(x, labels).maps
        assert torch.allclose(fused, fuse_layer_maps([conv, single], fusion), atol=1e-6)
    with pytest.raises(WsolError, match="empty"):
        build_method("gradcam", net, [])


def test_unknown_method_option_is_one_line():
    expected = ("method gradcam has no option num_samples; its options: aug_smooth, eigen_smooth, fusion, layout, "
                "relu, seed")
    with pytest.raises(WsolError, match=expected):
        build_method("gradcam", ToyCamNet(), "features", num_samples=3)
    with pytest.raises(WsolError, match="weighting"):
        build_method("scorecam", ToyCamNet(), "features", weighting="logits")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ALL)
def test_cpu_and_gpu_agree(name):
    net = ToyCamNet(channels=6, classes=4)
    x, labels = torch.randn(3, 3, 12, 12), torch.tensor([0, 3, 1])
    options = {"num_samples": 3} if name in ("sscam", "iscam", "smoothgradcampp") else {}
    cpu = build_method(name, net, layer_for(name), **options)(x, labels).maps
    gpu = build_method(name, net.cuda(), layer_for(name), **options)(x.cuda(), labels.cuda()).maps.cpu()
    net.cpu()
    assert torch.allclose(minmax_normalize(cpu)[0], minmax_normalize(gpu)[0], atol=1e-4)


# --- the methods the CAM libraries added (parity with them: tests/test_libraries.py) ---------------------------


def test_gradcam_elementwise_and_shapleycam_hand_values():
    a = torch.tensor([[[[1.0, 2.0]], [[3.0, 1.0]]]])
    net = SquareHead(torch.tensor([[1.0, -1.0]]))  # g = 2A and −2A; H·A = 2A and −2A (S is quadratic in A)
    label = torch.tensor([0])
    # Σ_k ReLU(g_k A_k) = ReLU(2A_0²) + ReLU(−2A_1²) = (2, 8)
    assert build_method("gradcamelementwise", net, "features")(a, label).maps[0, 0].tolist() == [2.0, 8.0]
    # w_k = mean(g − ½ H·A) = mean(v_k A_k): (1.5, −2); M = 1.5·A_0 − 2·A_1 = (−4.5, 1)
    shapley = build_method("shapleycam", net, "features", relu=False)(a, label).maps[0, 0]
    assert torch.allclose(shapley, torch.tensor([-4.5, 1.0]))
    # S linear in A (GAP → FC): no Hessian term, ShapleyCAM is Grad-CAM
    linear, x, labels = ToyCamNet(channels=5), torch.randn(2, 3, 6, 6), torch.tensor([0, 2])
    assert torch.allclose(build_method("shapleycam", linear, "features")(x, labels).maps,
                          build_method("gradcam", linear, "features")(x, labels).maps)


def test_fem_is_the_share_above_k_sigma():
    # channel 0: (0, 0, 0, 8): mean 2, σ = √12 ≈ 3.46; channel 1: (1, 2, 3, 4): mean 2.5, σ = √1.25 ≈ 1.12
    a = torch.tensor([[[[0.0, 0.0], [0.0, 8.0]], [[1.0, 2.0], [3.0, 4.0]]]])
    net = MeanHead(torch.eye(2))
    # k = 1: thresholds 5.46 and 3.62 → shares 1/4 and 1/4; k = 0: 2 and 2.5 → 1/4 and 2/4;
    # k = 1.5: 7.20 and 4.18 → 1/4 and 0
    for k, weights in ((1.0, (0.25, 0.25)), (0.0, (0.25, 0.5)), (1.5, (0.25, 0.0))):
        got = build_method("fem", net, "features", k=k, relu=False)(a, torch.tensor([1])).maps[0]
        assert torch.allclose(got, weights[0] * a[0, 0] + weights[1] * a[0, 1]), k
    x = torch.randn(2, 3, 6, 6)
    fem = build_method("fem", ToyCamNet(), "features")
    assert torch.equal(fem(x, torch.tensor([0, 1])).maps, fem(x, torch.tensor([2, 2])).maps)  # class agnostic


def test_pca_family_rank_one_and_sign_rules():
    from wsol.cams.eigen import orient

    s = torch.tensor([0.0, 1.0, 4.0, 2.0])
    u = torch.tensor([1.0, -2.0, 0.5])
    a = (u[:, None] * s[None]).view(1, 3, 2, 2)  # rank one: A_k = u_k · s
    net = SquareHead(torch.tensor([[1.0, 1.0, 1.0]]))  # g = 2A: g ⊙ A = 2 u_k² s², |g| ⊙ A = 2|u_k| u_k s²
    grad_weighted = (2 * u.pow(2)[:, None] * s.pow(2)[None]).view(1, 3, 2, 2)
    eigengrad = build_method("eigengradcam", net, "features", relu=False)(a, torch.tensor([0])).maps[0].flatten()
    expected = first_component_projection(grad_weighted)[0].flatten()
    assert torch.allclose(eigengrad, expected, atol=1e-4)
    centred = 2 * (s.pow(2) - s.pow(2).mean()) * u.pow(2).norm()  # its projection, sign: Σ_k (g ⊙ A)_k ≥ 0 agrees
    assert torch.allclose(eigengrad, centred, atol=1e-4)
    # orient: "activation" follows the reference's correlation, "largest" makes the largest magnitude positive
    p = torch.tensor([[1.0, -3.0, 0.5, 1.5]])
    assert orient(p, -p, "activation").tolist() == [[-1.0, 3.0, -0.5, -1.5]]
    assert orient(p, p, "largest").tolist() == [[-1.0, 3.0, -0.5, -1.5]]
    assert orient(-p, p, "largest").tolist() == [[-1.0, 3.0, -0.5, -1.5]]
    seg = build_method("segeigencam", net, "features", relu=False)(a, torch.tensor([0])).maps[0].flatten()
    assert seg.abs().argmax() == seg.argmax()  # Seg-Eigen-CAM's Eq. 13
    with pytest.raises(WsolError, match="sign"):
        build_method("eigencam", net, "features", sign="up")
    with pytest.raises(WsolError, match="eigen_smooth applies to the methods that weigh the activations"):
        build_method("kpcacam", net, "features", eigen_smooth=True)
    # eigen_smooth: the weighted activations' first component (rank one here: w_k A_k = w_k u_k · s)
    smooth = build_method("gradcam", net, "features", eigen_smooth=True, relu=False)(a, torch.tensor([0])).maps
    weights = 2 * a.mean((2, 3))  # Grad-CAM's w_k = mean(g_k) = mean(2 A_k)
    assert torch.allclose(smooth, first_component_projection(weights[..., None, None] * a), atol=1e-5)


def test_kpcacam_is_scikit_learns_kernel_pca_and_linear_kernel_pca_is_eigencam():
    import numpy as np
    from sklearn.decomposition import KernelPCA

    from wsol.cams.eigen import kernel_pca_projection

    torch.manual_seed(0)
    a = torch.randn(3, 6, 5, 5).relu()
    for kernel, gamma in (("sigmoid", None), ("rbf", 0.3), ("poly", None), ("cosine", None)):
        ours = kernel_pca_projection(a, kernel, gamma, sign="largest").flatten(1).numpy()
        for image, got in zip(a, ours, strict=True):
            x = image.flatten(1).T.double().numpy()
            x = x - x.mean(0)
            theirs = KernelPCA(n_components=1, kernel=kernel, gamma=gamma, eigen_solver="dense").fit_transform(x)[:, 0]
            assert np.allclose(got, theirs, atol=1e-8), kernel
    linear = kernel_pca_projection(a, "linear")
    assert torch.allclose(linear, first_component_projection(a), atol=1e-5)  # kernel PCA with xᵀy is PCA
    flat = kernel_pca_projection(torch.ones(1, 4, 3, 3))
    assert torch.equal(flat, torch.zeros(1, 3, 3))


def test_finercam_contrast_hand_values():
    from wsol.cams.finer import nearest_classes

    logits = torch.tensor([[5.0, 4.0, 1.0, 4.5, 6.0]])
    assert nearest_classes(logits, torch.tensor([0]), 3).tolist() == [[3, 1, 4]]  # |Δ| 0.5, 1, 1; the target out
    # MeanHead: S_c = W_c · mean(A), g = W_c / hw. Rows 1–3 give equal logits (the references of class 0), so the
    # softmax weights are equal and their derivative cancels: S' = S_0 − α·mean(S_1..3) with either weighting
    w = torch.tensor([[2.0, 0.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [-5.0, -5.0]])
    a = torch.tensor([[[[1.0, 3.0]], [[2.0, 2.0]]]])  # means 2 and 2: S = (4, 4, 4, 4, −20)
    net, label = MeanHead(w), torch.tensor([0])
    g = (w[0] - 0.5 * w[1]) / 2  # α = 0.5: ∂S'/∂A = (W_0 − α W_ref) / hw = (0.75, −0.25)
    for weighting in ("probability", "mean"):
        got = build_method("finercam", net, "features", alpha=0.5, weighting=weighting, relu=False)(a, label)
        assert torch.allclose(got.maps[0], g[0] * a[0, 0] + g[1] * a[0, 1]), weighting
    plain = build_method("finercam", net, "features", alpha=0.0)(a, label).maps
    assert torch.allclose(plain, build_method("gradcam", net, "features")(a, label).maps)  # α = 0: Grad-CAM
    for base in ("gradcampp", "layercam"):
        assert torch.allclose(build_method("finercam", net, "features", alpha=0.0, base=base)(a, label).maps,
                              build_method(base, net, "features")(a, label).maps)


def test_refinecam_multiplies_normalised_layer_maps():
    torch.manual_seed(0)
    coarse = torch.tensor([[[0.0, 2.0], [4.0, 4.0]]])
    fine = torch.rand(1, 4, 4)
    fused = fuse_layer_maps([fine, coarse], "product")
    up = torch.nn.functional.interpolate(torch.tensor([[[[0.0, 0.5], [1.0, 1.0]]]]), size=(4, 4), mode="bilinear",
                                         align_corners=False)[0]  # the coarse map min-max'd, then resized
    assert torch.allclose(fused, up * minmax_normalize(fine)[0])
    net = ToyCamNet(channels=4)
    x, labels = torch.randn(2, 3, 6, 6), torch.tensor([0, 1])
    maps = build_method("refinecam", net, ["conv", "features"], fusion="mean")(x, labels).maps  # fusion fixed
    each = [minmax_normalize(build_method("gradcampp", net, n)(x, labels).maps)[0] for n in ("conv", "features")]
    assert torch.allclose(maps, each[0] * each[1])
    with pytest.raises(WsolError, match="two layers or more"):
        build_method("refinecam", net, "features")


def test_stage_layers_find_the_ends_of_resolution_stages():
    import torchvision

    from wsol.models import stage_layers

    assert stage_layers(torchvision.models.resnet50(weights=None), "layer4", 3, 64) == ["layer2", "layer3", "layer4"]
    assert stage_layers(torchvision.models.vgg11(weights=None), "features.19", 3, 64) == [
        "features.9", "features.14", "features.19"]
    assert stage_layers(ToyCamNet(), "features", 3, 8) == ["features"]  # one resolution: nothing before


def test_baselines_sobel_center_random():
    import cv2
    import numpy as np

    from wsol.cams.baselines import center_gaussian, sobel_edges

    image = np.zeros((6, 6, 3), np.uint8)
    image[:, 3:] = 200  # a vertical edge: |∂x| = 4·200 at columns 2–3 (saturated to 255 in 8 bits)
    ours = sobel_edges(torch.from_numpy(image).permute(2, 0, 1)[None].double())[0]
    assert ours[:, 2].tolist() == [400.0] * 6 and ours[:, 3].tolist() == [400.0] * 6 and ours[:, 0].sum() == 0
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    expected = cv2.addWeighted(cv2.convertScaleAbs(cv2.Sobel(grey, cv2.CV_64F, 1, 0, ksize=3)), 0.5,
                               cv2.convertScaleAbs(cv2.Sobel(grey, cv2.CV_64F, 0, 1, ksize=3)), 0.5, 0)
    got = sobel_edges(torch.from_numpy(image).permute(2, 0, 1)[None].double(), uint8=True)[0]
    assert np.array_equal(got.numpy(), expected.astype(np.float64))
    # the center baseline: r² from pixel centres, σ in units of the shorter side
    c = center_gaussian(2, (4, 6), 0.5)
    assert c.shape == (2, 4, 6) and torch.equal(c[0], c[1]) and torch.equal(c[0], c[0].flip(0).flip(1))
    assert c[0, 1, 2].item() == pytest.approx(math.exp(-(0.5**2 + 0.5**2) / (2 * 2.0**2)))
    net, x = ToyCamNet(channels=6), torch.randn(3, 3, 8, 8)
    center = build_method("center", net, "features")(x, torch.tensor([0, 1, 2])).maps
    assert center.shape == (3, 8, 8) and int(center[0].argmax()) in {27, 28, 35, 36}
    random = build_method("randomcam", net, "features", seed=3, relu=False)
    weights = random.channel_weights(random.forward_with_captures(x, lambda logits: logits.argmax(1))[0])
    assert weights.abs().max() <= 1 and torch.equal(weights[0], weights[2])  # one draw, every image
    again = build_method("randomcam", net, "features", seed=3)(x, torch.tensor([2, 2, 2])).maps
    assert torch.equal(random(x, torch.tensor([0, 1, 2])).maps.clamp_min(0), again)  # seeded, class agnostic
    other = build_method("randomcam", net, "features", seed=4)(x, torch.tensor([0, 1, 2])).maps
    assert not torch.equal(other, again)
    sobel = build_method("sobel", net, "features")
    sobel.use_normalization((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # as the scorer tells it the model's
    pixels = torch.rand(1, 3, 8, 8) * 255
    assert torch.allclose(sobel((pixels / 255 - 0.5) / 0.5, torch.tensor([0])).maps, sobel_edges(pixels).float(),
                          atol=1e-3)


def test_reciprocam_is_the_tail_on_each_masked_copy():
    from wsol.cams.recipro import spatial_kernels

    net = ToyCamNet(channels=5, classes=4)
    x, labels = torch.randn(2, 3, 3, 4), torch.tensor([1, 3])
    with torch.no_grad():
        a = net.features(net.conv(x))  # [2, 5, 3, 4]
    for kernel in ("point", "gaussian"):
        weights = spatial_kernels(3, 4, kernel)
        expected = torch.zeros(2, 12)
        for b in range(2):
            for p in range(12):  # copy p: position p's feature vector, spread by row p of the kernel
                copy = a[b].flatten(1)[:, p : p + 1] * weights[p][None]
                expected[b, p] = net.fc(copy.mean(1)[None]).softmax(1)[0, labels[b]]
        got = build_method("reciprocam", net, "features", kernel=kernel, memory_budget_mb=1e-6)(x, labels).maps
        assert torch.allclose(got, expected.view(2, 3, 4), atol=1e-6), kernel
    assert spatial_kernels(3, 3, "gaussian")[4].view(3, 3).mul(16).tolist() == [[1, 2, 1], [2, 4, 2], [1, 2, 1]]
    assert spatial_kernels(3, 3, "gaussian")[0].view(3, 3).mul(16).tolist() == [[4, 2, 0], [2, 1, 0], [0, 0, 0]]


def test_groupcam_follows_the_authors_procedure():
    import numpy as np
    import torch.nn.functional as F

    from wsol.cams.group import gaussian_blur

    torch.manual_seed(0)
    images = torch.randn(1, 3, 60, 60)
    x = torch.arange(51.0) - 25
    g = torch.exp(-(x**2) / 5000)
    k2 = torch.outer(g, g) / g.sum() ** 2  # the 2-d kernel, applied at once
    direct = F.conv2d(F.pad(images, (25,) * 4, mode="reflect"), k2[None, None].expand(3, 1, 51, 51), groups=3)
    assert torch.allclose(gaussian_blur(images), direct, atol=1e-5)
    net = ToyCamNet(channels=6, classes=4)
    x_in, labels = torch.randn(2, 3, 8, 8), torch.tensor([1, 3])
    got = build_method("groupcam", net, "features", groups=3, relu=False, memory_budget_mb=1e-6)(x_in, labels).maps
    # the authors' loop, image by image and group by group
    with torch.no_grad():
        a = net.features(net.conv(x_in))
        alpha = net.fc.weight[labels] / 64  # g = W_c / hw at a layer feeding GAP → FC
        blurred = gaussian_blur(x_in)
        taps = torch.exp(-((torch.arange(15.0) - 7) ** 2) / 5000)  # 8 px: 15 of the 51 taps
        assert torch.allclose(blurred, F.conv2d(F.pad(x_in, (7,) * 4, mode="reflect"),
                                                (torch.outer(taps, taps) / taps.sum() ** 2).expand(3, 1, 15, 15),
                                                groups=3), atol=1e-5)
        expected = torch.zeros(2, 8, 8)
        for b in range(2):
            base = net(blurred[b : b + 1]).softmax(1)[0, labels[b]]
            weighted = alpha[b][:, None, None] * a[b]
            for group in weighted.chunk(3, 0):
                m = group.sum(0).clamp_min(0)
                m = torch.where(m > float(np.percentile(m.numpy(), 70)), m, torch.zeros_like(m))
                if m.max() == m.min():
                    continue
                m = (m - m.min()) / (m.max() - m.min())  # 8×8 is the input size already
                kept = x_in[b] * m + blurred[b] * (1 - m)
                expected[b] += (net(kept[None]).softmax(1)[0, labels[b]] - base) * m
    assert torch.allclose(got, expected, atol=1e-6)


def test_opticam_starts_uniform_and_raises_the_masked_score():
    from wsol.cams.core import target_scores
    from wsol.cams.opti import OptiCAM

    net = ToyCamNet(channels=6, classes=4, seed=1)
    x, labels = torch.randn(3, 3, 8, 8), torch.tensor([0, 2, 3])
    with torch.no_grad():
        a = net.features(net.conv(x)).clamp_min(0)
    start = build_method("opticam", net, "features", steps=0, relu=False)(x, labels).maps
    assert torch.allclose(start, a.mean(1), atol=1e-6)  # u = 0.5 everywhere: α uniform
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(
        1, 3, 1, 1)
    pixels = x * std + mean

    def masked_score(maps):  # the objective: the target's logit on the masked pixels, re-normalised
        weights = torch.linalg.lstsq(a.flatten(2).transpose(1, 2), maps.flatten(1)[..., None]).solution[..., 0]
        u = torch.log(weights.clamp_min(1e-12))  # softmax(u) ∝ the map's channel weights
        mask = OptiCAM.saliency(u, a, (8, 8))
        return target_scores(net((mask[:, None] * pixels - mean) / std), labels)

    with torch.no_grad():
        before = masked_score(start)
        optimised = build_method("opticam", net, "features", steps=30, lr=0.1, relu=False)(x, labels).maps
        after = masked_score(optimised)
    assert (after >= before - 1e-5).all() and (after > before + 1e-3).any()
    assert all(p.grad is None for p in net.parameters())  # the gradients went to the weights u alone


def test_aug_smooth_is_the_mean_of_six_normalised_passes():
    net = ToyCamNet(channels=5, classes=4)
    x, labels = torch.randn(2, 3, 6, 6), torch.tensor([1, 2])
    plain = build_method("gradcampp", net, "features")
    expected = []
    for flip in (False, True):
        for factor in (0.9, 1.0, 1.1):
            maps = minmax_normalize(plain((x.flip(-1) if flip else x) * factor, labels).maps)[0]
            expected.append(maps.flip(-1) if flip else maps)
    out = build_method("gradcampp", net, "features", aug_smooth=True)(x, labels, target="top1")
    assert torch.equal(out.targets, plain(x).targets)  # the clean pass's targets, for every pass
    smoothed = build_method("gradcampp", net, "features", aug_smooth=True)(x, labels).maps
    assert torch.allclose(smoothed, torch.stack(expected).mean(0), atol=1e-6)


def _biased_net(seed: int = 0) -> nn.Module:
    """conv (bias) → BN → ReLU (in place) → conv (no bias) → BN → ReLU → max-pool → conv (bias) → ReLU → GAP → FC:
    both kinds of bias layer, an in-place ReLU after a norm, two resolutions; BN statistics set away from 0/1."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(inplace=True),
                        nn.Conv2d(6, 5, 3, padding=1, bias=False), nn.BatchNorm2d(5), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Conv2d(5, 4, 3, padding=1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.3), m.running_var.uniform_(0.5, 2), m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.3)
    return net.eval()


def test_fullgrad_decomposition_is_complete():
    """Srinivas & Fleuret §3: a ReLU network's target logit is Σ ∇ₓS ⊙ x + Σ_layers Σ ∇_z S ⊙ b (eval-mode BN's
    bias β − μγ/√(σ²+ε); the classifier's own bias b_c is the one term the map leaves out); and the map is the
    sum of the rescaled terms, each upsampled (hand-built here)."""
    net, x, labels = _biased_net(), torch.randn(3, 3, 8, 8), torch.tensor([0, 2, 1])
    cam = build_method("fullgrad", net, "0")
    assert cam.layer_names == ["0", "1", "4", "7"]  # the biased convs and the norms, not the bias-free conv
    logits, targets, input_term, bias_terms = cam.decompose(x, lambda _: labels)
    total = input_term.sum((1, 2, 3)) + sum(t.sum((1, 2, 3)) for t in bias_terms) + net[-1].bias[labels]
    assert torch.allclose(total, logits.gather(1, labels[:, None])[:, 0], atol=1e-5)
    assert [t.shape[-1] for t in bias_terms] == [8, 8, 8, 4]

    def rescaled(t):  # the authors' ψ: |t| min-max'd over each whole image, ε = 1e-6, summed over channels
        flat = t.abs().flatten(1)
        flat = flat - flat.min(1, keepdim=True).values
        return (flat / (flat.max(1, keepdim=True).values + 1e-6)).view(t.shape).sum(1, keepdim=True)

    expected = rescaled(input_term)[:, 0] + sum(
        nn.functional.interpolate(rescaled(t), size=(8, 8), mode="bilinear", align_corners=True)[:, 0]
        for t in bias_terms)
    assert torch.allclose(cam(x, labels).maps, expected, atol=1e-6)


def test_fullgrad_is_the_authors_code_on_the_same_inputs():
    """idiap/fullgrad-saliency's own FullGrad.saliency (MIT, copied in tests/data/fullgrad_saliency) on the same
    network, images and targets: the same map, unnormalised (its default ``normalize=image align_corners=true``)."""
    import sys
    import warnings

    sys.path.insert(0, str(Path(__file__).parent / "data" / "fullgrad_saliency"))
    try:
        from saliency.fullgrad import FullGrad as AuthorsFullGrad
    finally:
        sys.path.pop(0)
    import torchvision

    torch.manual_seed(1)
    for net in (_biased_net(1), torchvision.models.resnet18(num_classes=5).eval()):
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1), m.running_var.uniform_(0.5, 2), m.bias.data.normal_(0, 0.1)
        x, labels = torch.randn(2, 3, 64, 64), torch.tensor([2, 0])
        ours = build_method("fullgrad", net, None)(x, labels).maps  # before its hooks, which stay on the modules
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its register_backward_hook is deprecated
            theirs = AuthorsFullGrad(net, im_size=(3, 64, 64)).saliency(x.clone(), labels[:, None])[:, 0].detach()
        assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-5), (ours - theirs).abs().max()


def test_fullgrad_keeps_every_bias_layer_unfolded():
    """A fold would merge a convolution's bias into its norm's; the CLI and wsol.evaluate fold only what the method
    does not hook, so the folded copy gives FullGrad's map of the network itself."""
    from wsol.api import _fast_copy

    net, x, labels = _biased_net(), torch.randn(2, 3, 8, 8), torch.tensor([0, 1])
    folded, layers = _fast_copy(net, "8", True, False, 8, "fullgrad", {})
    assert sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules()) == 2
    assert torch.equal(build_method("fullgrad", folded, layers)(x, labels).maps,
                       build_method("fullgrad", net, "8")(x, labels).maps)
    gradcam_copy, _ = _fast_copy(net, "8", True, False, 8, "gradcam", {})
    assert sum(isinstance(m, nn.BatchNorm2d) for m in gradcam_copy.modules()) == 0  # the fold is real otherwise


# --- LeGrad (ViTs; parity with torchcam's, on torchvision's and timm's ViTs: tests/test_libraries.py) ------------


class _AttentionBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, 1, batch_first=True)

    def forward(self, x):
        return x + self.attn(x, x, x, need_weights=False)[0]


class _TokenNet(nn.Module):
    """Pixels as tokens (no prefix) → two residual attention blocks → mean over tokens → Linear."""

    def __init__(self, dim: int = 3, classes: int = 4) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.blocks = nn.Sequential(_AttentionBlock(dim), _AttentionBlock(dim))
        self.head = nn.Linear(dim, classes)

    def forward(self, images):
        return self.head(self.blocks(images.flatten(2).transpose(1, 2)).mean(1))


def _tiny_timm_vit(**kwargs) -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    return VisionTransformer(img_size=32, patch_size=8, embed_dim=16, depth=3, num_heads=2, num_classes=4,
                             **kwargs).eval()


def test_legrad_hand_values_with_a_linear_readout():
    """``x + W_o(A V)`` read by ``s = w · mean_q(tokens)``: ``∂s_c/∂A_qk = w_cᵀ W_o V_k / N`` for every query q,
    so each block's map is ``ReLU(w_cᵀ W_o V_k) / N`` (``V_k = W_v x_k + b_v``, x the block's input), and LeGrad's
    map is the blocks' mean. The MultiheadAttention's own output is unchanged by the rebuild."""
    from wsol.cams.legrad import LeGrad

    class LinearReadout(LeGrad):
        def readout(self, pooled):
            return self.model.head(pooled)

    net, x, labels = _TokenNet().eval(), torch.randn(2, 3, 4, 4), torch.tensor([1, 3])
    with pytest.raises(WsolError, match="override readout"):
        build_method("legrad", net, "blocks.1")
    out = LinearReadout(net, "blocks.1")(x, labels)
    assert torch.allclose(out.logits, net(x), atol=1e-6)
    expected, tokens = [], x.flatten(2).transpose(1, 2)
    for block in net.blocks:
        attn, dim = block.attn, tokens.shape[-1]
        values = tokens @ attn.in_proj_weight[2 * dim:].T + attn.in_proj_bias[2 * dim:]
        weight = net.head.weight[labels] @ attn.out_proj.weight  # w_cᵀ W_o  [B, dim]
        expected.append(torch.einsum("bd,bkd->bk", weight, values).clamp_min(0) / tokens.shape[1])
        tokens = block(tokens)
    assert torch.allclose(out.maps, torch.stack(expected).mean(0).view(2, 4, 4), atol=1e-6)


def test_legrad_reads_its_blocks_and_leaves_the_model_as_it_was():
    vit = _tiny_timm_vit(reg_tokens=2)  # a class token and two registers: three prefix keys dropped
    x, labels = torch.randn(3, 3, 32, 32), torch.tensor([0, 3, 1])
    assert build_method("legrad", vit, "blocks.2.norm1").layer_names == ["blocks.1", "blocks.2"]  # the authors' −2
    assert build_method("legrad", vit, "blocks.2", blocks=9).layer_names == ["blocks.0", "blocks.1", "blocks.2"]
    assert build_method("legrad", vit, ["blocks.0.mlp", "blocks.2"]).layer_names == ["blocks.0", "blocks.2"]
    hooked = METHODS.get("legrad").target_layers(vit, ["blocks.2.norm1"])  # what the CLI keeps eager, then builds
    assert hooked[:2] == ["blocks.1", "blocks.2"] and "blocks.2.attn.attn_drop" in hooked
    assert build_method("legrad", vit, hooked).layer_names == ["blocks.1", "blocks.2"]
    method = build_method("legrad", vit, "blocks.2.norm1")
    out = method(x, labels)
    assert out.maps.shape == (3, 4, 4) and (out.maps >= 0).all() and out.maps.std() > 0
    assert torch.allclose(out.logits, vit(x), atol=1e-6) and all(b.attn.fused_attn for b in vit.blocks)
    assert not any(b.attn.attn_drop._forward_hooks for b in vit.blocks)
    for i in range(3):
        assert torch.allclose(method(x[i:i + 1], labels[i:i + 1]).maps[0], out.maps[i], atol=1e-6)
    assert torch.equal(method(x, labels).maps, out.maps)
    assert not torch.allclose(build_method("legrad", vit, "blocks.2", pool="token")(x, labels).maps, out.maps)
    with pytest.raises(WsolError, match="legrad reads transformer blocks"):
        build_method("legrad", ToyCamNet(), "features")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_legrad_cpu_and_gpu_agree():
    vit, x, labels = _tiny_timm_vit(), torch.randn(3, 3, 32, 32), torch.tensor([0, 3, 1])
    cpu = build_method("legrad", vit, "blocks.2")(x, labels).maps
    gpu = build_method("legrad", vit.cuda(), "blocks.2")(x.cuda(), labels.cuda()).maps.cpu()
    assert torch.allclose(minmax_normalize(cpu)[0], minmax_normalize(gpu)[0], atol=1e-4)


# --- Poly-CAM (neither library has it; the authors' aenglebert/polycam has no licence to copy it here) -----------


def _two_stage_net(head_scale: float = 1.0) -> nn.Module:
    """conv → ReLU (8×8, ``1``) → max-pool → conv → ReLU (4×4, ``4``) → GAP → FC, seeded; ``head_scale=0``: the
    logits are the FC bias whatever the input."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 5, 3, padding=1),
                        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 3))
    net[-1].weight.data.mul_(head_scale)
    return net.eval()


def test_polycam_robust_normalisation_and_lnorm_hand_values():
    from wsol.cams.poly import local_normalize, robust_normalize

    ramp = torch.arange(1001.0).view(1, 7, 143)  # quantiles 1 and 999 of 0…1000 (linear interpolation)
    expected = ((ramp - 1) / 999).clamp(0, 1)
    assert torch.allclose(robust_normalize(ramp), expected)  # divided by the upper quantile, not the range
    assert torch.equal(robust_normalize(torch.zeros(1, 3, 3)), torch.zeros(1, 3, 3))
    flat = torch.full((1, 4, 4), 3.0)
    assert torch.allclose(local_normalize(flat, (2, 2)), torch.ones(1, 4, 4))  # no local contrast: all ones
    blocks = torch.tensor([[1.0, 3.0], [2.0, 6.0]]).repeat_interleave(2, 0).repeat_interleave(2, 1)[None]
    # downsampling 4×4 → 2×2 with half-pixel centres averages each 2×2 block: a piecewise-constant map divides
    # by the bilinear spread of its block means (the corners, where no neighbour mixes in, are exactly 1)
    normalised = local_normalize(blocks, (2, 2))
    assert torch.allclose(normalised[0, [0, 0, -1, -1], [0, -1, 0, -1]], torch.ones(4))


def test_polycam_with_a_constant_classifier_is_the_product_of_uniformly_weighted_maps():
    """The logits do not depend on the input: every masked probability is p = softmax(b)_c, so PCAM+ weighs every
    channel p, PCAM± p + p − p = p and PCAM− ReLU(p − p) = 0; the map is the paper's recursion over the layers'
    channel sums: P = ReLU(LNorm(M₁) ⊙ U(M₄)), M = ReLU(p Σ_k A_k), then the robust normalisation."""
    from wsol.cams.core import capture_activations
    from wsol.cams.poly import local_normalize, robust_normalize

    net, x, labels = _two_stage_net(head_scale=0.0), torch.randn(2, 3, 8, 8), torch.tensor([2, 0])
    p = net[-1].bias.softmax(0)[labels][:, None, None]
    with torch.no_grad(), capture_activations(net[1]) as early, capture_activations(net[4]) as late:
        net(x)
    coarse = (p * late["activations"].sum(1)).clamp_min(0)
    fine = local_normalize((p * early["activations"].sum(1)).clamp_min(0), (4, 4))
    upsampled = nn.functional.interpolate(coarse[:, None], size=(8, 8), mode="bilinear")[:, 0]
    expected = robust_normalize((fine * upsampled).clamp_min(0))
    for variant in ("plus", "plusminus"):
        maps = build_method("polycam", net, ["1", "4"], variant=variant)(x, labels).maps
        assert torch.allclose(maps, expected, atol=1e-5), variant
    assert (build_method("polycam", net, ["1", "4"], variant="minus")(x, labels).maps == 0).all()
    without = build_method("polycam", net, ["1", "4"], lnorm=False)(x, labels).maps
    plain = robust_normalize((p * early["activations"].sum(1)).clamp_min(0) * upsampled)
    assert torch.allclose(without, plain, atol=1e-5)


def test_polycam_weights_are_the_masked_inputs_probabilities():
    """Each channel's PCAM± weight is p(X ∘ H_k) + p(X) − p(X ∘ (1 − H_k)) (ReLU'd), H_k the robustly normalised
    map upsampled to the input: checked one masked forward at a time, and the layers are the stages' ends."""
    from wsol.cams.core import LayerCapture, capture_activations
    from wsol.cams.poly import robust_normalize

    net, x, labels = _two_stage_net(), torch.randn(2, 3, 8, 8), torch.tensor([2, 0])
    method = build_method("polycam", net, "4", memory_budget_mb=1e-6)  # one masked input per forward
    assert method.layer_names == ["1", "4"]
    with torch.no_grad(), capture_activations(net[4]) as store:
        logits = net(x)
    capture = LayerCapture(net[4], x, store["activations"], None, logits, labels)
    weights = method.channel_weights(capture)
    prob = lambda image, b: net(image[None]).softmax(1)[0, labels[b]]  # noqa: E731
    for b in range(2):
        for k in range(5):
            mask = nn.functional.interpolate(robust_normalize(store["activations"][b, k])[None, None], size=(8, 8),
                                             mode="bilinear")[0]
            expected = prob(x[b] * mask, b) + prob(x[b], b) - prob(x[b] * (1 - mask), b)
            active = bool(store["activations"][b, k].ne(0).any())
            assert torch.isclose(weights[b, k], expected.clamp_min(0) if active else torch.tensor(0.0), atol=1e-6)
    batch = method(x, labels).maps
    assert batch.shape == (2, 8, 8) and torch.allclose(method(x[1:], labels[1:]).maps[0], batch[1], atol=1e-6)


def test_polycam_runs_on_a_vits_token_grid():
    """One token grid, so one layer: PCAM± at a ViT block is its masked-score map, robustly normalised."""
    vit, x, labels = _tiny_timm_vit(dynamic_img_size=True), torch.randn(2, 3, 32, 32), torch.tensor([0, 3])
    method = build_method("polycam", vit, "blocks.2.norm1")  # its stage search probes a 224² input
    maps = method(x, labels).maps
    assert method.layer_names == ["blocks.2.norm1"] and maps.shape == (2, 4, 4)
    assert torch.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1 and maps.std() > 0
