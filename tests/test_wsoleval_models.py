"""wsolevaluation's networks (``wsol.models.wsoleval``) against the reference.

Keys, shapes and CAM sizes against the reference's own 24 networks (``tests/data/wsolevaluation/
architectures.json.xz``); each backbone's trunk against torchvision's network rebuilt to the reference's
documented strides and paddings; logits and CAM against an independent computation of the reference's
definitions from the state dict; the training-only layers inert; checkpoints as the reference's training
saves them; every CAM method on every architecture type.
"""

from __future__ import annotations

import json
import lzma
import os

import pytest
import torch
import torch.nn.functional as F
import torchvision
from conftest import REPO, compose

from wsol.cams import METHODS, build_method
from wsol.cams.core import capture_activations
from wsol.errors import WsolError
from wsol.models import build_model, default_layer, find_layer
from wsol.models.wsoleval import ARCHITECTURES, BACKBONES, build_wsoleval

with lzma.open(os.path.join(REPO, "tests", "data", "wsolevaluation", "architectures.json.xz")) as f:
    REFERENCE = json.load(f)["architectures"]  # "vgg16/cam[/large_feature_map]" → state_dict, cam_size, outputs


def _parse(key: str) -> tuple[str, str, bool]:
    backbone, architecture, *large = key.split("/")
    return f"wsoleval_{backbone}", architecture, bool(large)


def _seeded(key: str, classes: int = 200, seed: int = 0):
    torch.manual_seed(seed)
    name, architecture, large = _parse(key)
    return build_wsoleval(name, architecture, classes, large)


def _images(size: int, n: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("key", list(REFERENCE))
def test_keys_shapes_cam_size_and_default_layer_are_the_references(key):
    name, architecture, large = _parse(key)
    with torch.device("meta"):  # shapes only: no memory, no arithmetic
        model = build_wsoleval(name, architecture, 200, large, initialize=False)
        assert {k: list(v.shape) for k, v in model.state_dict().items()} == REFERENCE[key]["state_dict"]
        layer = find_layer(model, default_layer(model))
        with capture_activations(layer) as store:
            logits = model(torch.empty(2, 3, 224, 224))
        cam = model.class_activation_map(store["activations"], torch.tensor([0, 1]))
    assert list(cam.shape[1:]) == REFERENCE[key]["cam_size"] and tuple(logits.shape) == (2, 200)
    assert "logits" in REFERENCE[key]["outputs"]


def test_every_combination_is_covered():
    assert {_parse(k) for k in REFERENCE} == {
        (n, a, large) for n in BACKBONES for a in ARCHITECTURES for large in (False, True)
    }


def _head_conv(state: dict, prefix: str, x: torch.Tensor) -> torch.Tensor:
    """An ACoL head from its weights: 3×3 conv → ReLU → 3×3 conv → ReLU → 1×1 conv."""
    x = F.relu(F.conv2d(x, state[f"{prefix}.0.weight"], state[f"{prefix}.0.bias"], padding=1))
    x = F.relu(F.conv2d(x, state[f"{prefix}.2.weight"], state[f"{prefix}.2.bias"], padding=1))
    return F.conv2d(x, state[f"{prefix}.4.weight"], state[f"{prefix}.4.bias"])


def _channel_minmax(x: torch.Tensor) -> torch.Tensor:
    flat = x.flatten(-2)
    lo, hi = flat.min(-1).values[..., None, None], flat.max(-1).values[..., None, None]
    return (x - lo) / (hi - lo)


def reference_definition(key: str, state: dict, features: torch.Tensor, labels: torch.Tensor):
    """The reference's logits and ``return_cam`` map from the output of the layer its CAM reads, written from its
    definitions: GAP → fc and ``mean_k w^c_k A_k`` (cam, adl on VGG and ResNet); a 1×1 class-map conv → GAP and
    its class channel (spg; InceptionV3 cam and adl); ACoL's two heads with erasing (acol)."""
    _, architecture, _ = _parse(key)
    rows = torch.arange(len(labels))
    if "fc.weight" in state:
        weight = state["fc.weight"]
        logits = F.linear(features.mean((2, 3)), weight, state["fc.bias"])
        return logits, torch.einsum("bc,bchw->bhw", weight[labels], features) / features.shape[1]
    if architecture == "acol":
        maps_a = _head_conv(state, "classifier_A", features)
        attention = _channel_minmax(maps_a)[rows, labels]
        mask = torch.ones_like(attention)
        mask[attention >= 0.7] = 0.0
        maps_b = _head_conv(state, "classifier_B", features * mask[:, None])
        cam = torch.max(_channel_minmax(maps_a), _channel_minmax(maps_b))[rows, labels]
        return maps_a.mean((2, 3)), cam
    prefix = "SPG_A_4" if "SPG_A_4.weight" in state else "SPG_A4"
    class_maps = F.conv2d(features, state[f"{prefix}.weight"], state[f"{prefix}.bias"])
    return class_maps.mean((2, 3)), class_maps[rows, labels]


@pytest.mark.parametrize("key", list(REFERENCE))
def test_logits_and_cam_are_the_reference_definitions(key):
    """``method=cam method.relu=false`` at the default layer is the reference's ``return_cam`` map; the
    logits its ``model(x)['logits']``."""
    model = _seeded(key, classes=12)
    images, labels = _images(64 if "inception" not in key else 96), torch.tensor([3, 10])
    layer = default_layer(model)
    with torch.no_grad(), capture_activations(find_layer(model, layer)) as store:
        model(images)
    logits, cam = reference_definition(key, model.state_dict(), store["activations"], labels)
    out = build_method("cam", model, [layer], relu=False)(images, labels)
    torch.testing.assert_close(out.logits, logits, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.maps, cam, rtol=1e-4, atol=1e-5)
    assert cam.std() > 0  # a map with structure, not a constant


def _torchvision_resnet(large: bool) -> torch.nn.Module:
    """torchvision's ResNet50 at the reference's strides: ``layer4`` at 1, ``layer3`` at 1 with large maps."""
    net = torchvision.models.resnet50(num_classes=12).eval()
    for stage in [net.layer4] + ([net.layer3] if large else []):
        stage[0].conv2.stride = stage[0].downsample[0].stride = (1, 1)
    return net


@pytest.mark.parametrize("architecture", ["cam", "adl"])
@pytest.mark.parametrize("large", [False, True])
def test_resnet50_is_torchvisions_at_the_reference_strides(architecture, large):
    """ADL blocks hold no weights: the reference's keys skip their positions (``layer3.1``, ``layer4.1``)."""
    model = _seeded(f"resnet50/{architecture}" + ("/large_feature_map" if large else ""), classes=12)
    net = _torchvision_resnet(large)
    assert len(net.state_dict()) == len(model.state_dict())
    net.load_state_dict(dict(zip(net.state_dict(), model.state_dict().values(), strict=True)))
    images = _images(64)
    with torch.no_grad():
        torch.testing.assert_close(model(images), net(images), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("large", [False, True])
def test_vgg16_trunk_is_torchvisions_without_the_dropped_pools(large):
    """The ``cam`` trunk is torchvision's VGG16 ``features`` without its last pool (and the fourth, for 28×28)."""
    model = _seeded("vgg16/cam" + ("/large_feature_map" if large else ""), classes=12)
    drop = {30, 23} if large else {30}
    layers = [m for i, m in enumerate(torchvision.models.vgg16().features) if i not in drop]
    features = torch.nn.Sequential(*layers).eval()
    features.load_state_dict({k.removeprefix("features."): v for k, v in model.state_dict().items()
                              if k.startswith("features.")})
    images = _images(64)
    with torch.no_grad():
        torch.testing.assert_close(model.features(images), features(images))


@pytest.mark.parametrize("large", [False, True])
def test_inception_v3_trunk_is_torchvisions_with_the_reference_paddings(large):
    """torchvision's Inception3 blocks to ``Mixed_6e`` with the reference's changes: ``Conv2d_1a`` padded, pools
    padded with ``ceil_mode``, ``Mixed_6a`` at stride 1 (padding 1), the pool after ``Mixed_5d`` dropped for
    28×28 maps."""
    model = _seeded("inception_v3/cam" + ("/large_feature_map" if large else ""), classes=12)
    net = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False).eval()
    trunk = {k: v for k, v in model.state_dict().items() if k.startswith(("Conv2d", "Mixed"))}
    missing = net.load_state_dict(trunk, strict=False).missing_keys
    assert not [k for k in missing if k.startswith(("Conv2d", "Mixed_5", "Mixed_6"))]
    net.Conv2d_1a_3x3.conv.padding = (1, 1)
    for conv in (net.Mixed_6a.branch3x3.conv, net.Mixed_6a.branch3x3dbl_3.conv):
        conv.stride, conv.padding = (1, 1), (1, 1)

    def trunk_forward(x):
        x = net.Conv2d_2b_3x3(net.Conv2d_2a_3x3(net.Conv2d_1a_3x3(x)))
        x = net.Conv2d_4a_3x3(net.Conv2d_3b_1x1(F.max_pool2d(x, 3, 2, padding=1, ceil_mode=True)))
        x = net.Mixed_5d(net.Mixed_5c(net.Mixed_5b(F.max_pool2d(x, 3, 2, padding=1, ceil_mode=True))))
        if not large:
            x = F.max_pool2d(x, 3, 2, ceil_mode=True)
        b = net.Mixed_6a
        x = torch.cat([b.branch3x3(x), b.branch3x3dbl_3(b.branch3x3dbl_2(b.branch3x3dbl_1(x))),
                       F.max_pool2d(x, 3, 1, padding=1)], 1)
        return net.Mixed_6e(net.Mixed_6d(net.Mixed_6c(net.Mixed_6b(x))))

    images = _images(96)
    with torch.no_grad(), capture_activations(model.Mixed_6e) as store:
        model(images)
        torch.testing.assert_close(store["activations"], trunk_forward(images), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backbone", ["vgg16", "resnet50", "inception_v3"])
def test_adl_is_inert_in_eval_mode(backbone):
    """An ``adl`` network gives the ``cam`` network's logits and CAM with the same weights (ADL holds none);
    in training mode ADL refuses to run rather than act differently from the reference."""
    adl = _seeded(f"{backbone}/adl", classes=12)
    cam = _seeded(f"{backbone}/cam", classes=12, seed=5)
    assert [v.shape for v in adl.state_dict().values()] == [v.shape for v in cam.state_dict().values()]
    cam.load_state_dict(dict(zip(cam.state_dict(), adl.state_dict().values(), strict=True)))
    images, labels = _images(64 if backbone != "inception_v3" else 96), torch.tensor([1, 2])
    a = build_method("cam", adl, [default_layer(adl)], relu=False)(images, labels)
    b = build_method("cam", cam, [default_layer(cam)], relu=False)(images, labels)
    torch.testing.assert_close(a.logits, b.logits)
    torch.testing.assert_close(a.maps, b.maps)
    with pytest.raises(WsolError, match="only while training"):
        adl.train()(images)


@pytest.mark.parametrize("backbone", ["vgg16", "resnet50", "inception_v3"])
def test_spg_guidance_branches_do_not_reach_logits_or_cam(backbone):
    model = _seeded(f"{backbone}/spg", classes=12)
    images, labels = _images(64 if backbone != "inception_v3" else 96), torch.tensor([1, 2])
    before = build_method("cam", model, [default_layer(model)], relu=False)(images, labels)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith(("SPG_B", "SPG_C")):
                p.add_(1.0)
    after = build_method("cam", model, [default_layer(model)], relu=False)(images, labels)
    torch.testing.assert_close(before.logits, after.logits)
    torch.testing.assert_close(before.maps, after.maps)


def test_acol_second_head_shapes_the_cam_not_the_logits():
    """ACoL's logits are the first head's; its CAM takes the second head, fed the erased features, too."""
    model = _seeded("vgg16/acol", classes=12)
    images, labels = _images(64), torch.tensor([1, 2])
    before = build_method("cam", model, ["smoothing"], relu=False)(images, labels)
    with torch.no_grad():
        model.classifier_B[0].weight.mul_(-1.0)
    after = build_method("cam", model, ["smoothing"], relu=False)(images, labels)
    torch.testing.assert_close(before.logits, after.logits)
    assert (before.maps - after.maps).abs().max() > 1e-3


def _save(model, path, prefix: str = "", **extra) -> str:
    torch.save({"state_dict": {prefix + k: v for k, v in model.state_dict().items()}, "epoch": 7, **extra}, path)
    return str(path)


@pytest.mark.parametrize("prefix", ["", "module."])
def test_checkpoint_as_training_saves_it_loads_with_its_class_count(tmp_path, prefix):
    model = _seeded("resnet50/acol/large_feature_map", classes=12)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9).state_dict()
    path = _save(model, tmp_path / "last_checkpoint.pth.tar", prefix, optimizer=optimizer)
    loaded = build_model("wsoleval_resnet50", checkpoint=path, architecture="acol", large_feature_map=True)
    assert loaded.num_classes == 12 and default_layer(loaded.module) == "layer4"
    images = _images(64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(images), model(images), rtol=0, atol=0)


def test_a_checkpoint_of_another_architecture_is_one_line_naming_both(tmp_path):
    path = _save(_seeded("resnet50/adl", classes=12), tmp_path / "adl.pth.tar")
    with pytest.raises(WsolError) as err:
        build_model("wsoleval_resnet50", checkpoint=path)
    message = str(err.value)
    assert "\n" not in message
    expected = "wsoleval_resnet50 (model.architecture=cam, model.large_feature_map=false, 12 classes)"
    assert f"does not fit {expected}" in message
    assert "missing keys (first: layer3.1.conv1.weight" in message
    assert "it fits: model=wsoleval_resnet50 model.architecture=adl" in message


def test_a_vgg_checkpoint_tells_its_feature_map_size(tmp_path):
    """VGG16's 28×28 layouts move the features' indices, so the checkpoint itself tells ``large_feature_map``."""
    path = _save(_seeded("vgg16/cam/large_feature_map", classes=12), tmp_path / "vgg.pth.tar")
    with pytest.raises(WsolError, match="it fits: model=wsoleval_vgg16 model.architecture=cam "
                                        "model.large_feature_map=true"):
        build_model("wsoleval_vgg16", checkpoint=path)


def test_a_wrong_class_count_names_the_shapes(tmp_path):
    path = _save(_seeded("vgg16/spg", classes=12), tmp_path / "spg.pth.tar")
    with pytest.raises(WsolError, match=r"of another shape \(first: SPG_A_4.weight \(12, 512, 1, 1\) vs "
                                        r"\(200, 512, 1, 1\)"):
        build_model("wsoleval_vgg16", checkpoint=path, architecture="spg", num_classes=200)


def test_no_checkpoint_is_a_clear_error_and_null_weights_are_random():
    with pytest.raises(WsolError, match="no downloadable trained weights: pass model.checkpoint=PATH"):
        build_model("wsoleval_inception_v3")
    assert build_model("wsoleval_inception_v3", weights=None, num_classes=7).num_classes == 7


def test_config_options_belong_to_the_wsoleval_models():
    from wsol.config import check_overrides, validate

    with pytest.raises(WsolError, match="model.architecture is an option of the wsoleval_\\* models"):
        validate(compose("model=resnet18", "model.architecture=acol"))
    with pytest.raises(WsolError, match="model.large_feature_map is an option"):
        validate(compose("model=resnet18", "model.large_feature_map=true"))
    with pytest.raises(WsolError, match="model.architecture.*cam, adl, acol, spg"):
        check_overrides(["model=wsoleval_vgg16", "model.architecture=has"])
    validate(compose("model=wsoleval_vgg16", "model.architecture=spg", "model.large_feature_map=true"))


_CHEAP = ["cam", "gradcam", "gradcampp", "smoothgradcampp", "xgradcam", "layercam", "hirescam", "eigencam",
          "eigengradcam", "segeigencam", "kpcacam", "fem", "gradcamelementwise", "shapleycam", "finercam",
          "refinecam", "reciprocam", "randomcam", "sobel", "center", "fullgrad"]
_PERTURBING = ["scorecam", "sscam", "iscam", "ablationcam", "groupcam", "opticam", "polycam"]
_VIT_ONLY = ["legrad"]  # attention probabilities: these CNNs have none (a one-line error, tested below)
_AT_INPUT_SIZE = ("sobel", "center", "groupcam", "fullgrad")  # maps of the image, of input-size masks or terms
_FINER = ("refinecam", "polycam")  # the product of several stages' maps: at the finest stage's resolution


def test_the_method_lists_cover_the_registry():
    assert sorted(_CHEAP + _PERTURBING + _VIT_ONLY) == sorted(METHODS.names())


def _run(key: str, method: str, size: int):
    model = _seeded(key, classes=10)
    options = {"num_samples": 1} if method in ("sscam", "iscam", "smoothgradcampp") else {}
    options = {"steps": 2} if method == "opticam" else options
    options = {"stages": 2} if method == "polycam" else options  # two stages: one masked forward per channel of each
    out = build_method(method, model, [default_layer(model)], **options)(_images(size, n=1), torch.tensor([4]))
    assert out.maps.shape[0] == 1 and torch.isfinite(out.maps).all()
    layer_size = model_output_size(model, size)
    if method in _AT_INPUT_SIZE:
        assert out.maps.shape[1:] == (size, size)
    elif method in _FINER:
        assert out.maps.shape[1] > layer_size[0] and out.maps.shape[2] > layer_size[1], method
    else:
        assert out.maps.shape[1:] == layer_size


def model_output_size(model, size: int) -> tuple[int, int]:
    with torch.no_grad(), capture_activations(find_layer(model, default_layer(model))) as store:
        model(torch.zeros(1, 3, size, size))
    return tuple(store["activations"].shape[2:])


@pytest.mark.parametrize("key", [k for k in REFERENCE if "large" not in k])
def test_every_gradient_and_activation_method_runs_at_the_default_layer(key):
    for method in _CHEAP:
        _run(key, method, 64 if "inception" not in key else 96)


def test_a_vit_method_on_these_cnns_is_a_one_line_error():
    model = _seeded("vgg16/cam", classes=10)
    for method in _VIT_ONLY:
        with pytest.raises(WsolError, match="legrad reads transformer blocks"):
            build_method(method, model, [default_layer(model)])


@pytest.mark.slow
@pytest.mark.parametrize("key", ["vgg16/acol", "resnet50/spg", "inception_v3/adl"])
def test_every_perturbation_method_runs_at_the_default_layer(key):
    for method in _PERTURBING:
        if method == "polycam" and not key.startswith("vgg16"):
            continue  # a masked forward per channel of every stage: once is enough for a smoke test
        _run(key, method, 32 if "inception" not in key else 64)


@pytest.mark.slow
def test_an_evaluation_runs_end_to_end_from_a_checkpoint(tmp_path):
    """``python -m wsol.run model=wsoleval_resnet50 model.checkpoint=…`` on the demo: the map of ``method=cam
    method.relu=false`` is the model's own, through the batched path."""
    from wsol.pipeline import evaluate

    path = _save(_seeded("resnet50/cam/large_feature_map", classes=1000), tmp_path / "r50.pth.tar")
    cfg = compose("model=wsoleval_resnet50", f"model.checkpoint={path}", "model.large_feature_map=true",
                  "method=cam", "method.relu=false", "limit=8", "batch_size=4", "cache_dir=null", "progress=false")
    result = evaluate(cfg)
    assert result.info["layer"] == "layer4" and result.info["images"] == 8
    assert 0 <= result.metrics["maxboxacc_v2"] <= 100
