"""Any model: a user's own module (``model=custom``), timm's zoo (``model=timm``) and transformers.

Layer outputs in every layout become ``[B, C, h, w]`` maps (``wsol.cams.layout``): the token reshape on
a 2 × 3 grid with class and distillation tokens, and a hand-made token model whose maps are known
exactly; torchvision's and timm's ViT, DeiT and Swin build (random weights, offline), find their default
layers and run the methods defined for them; timm and custom models run end to end through the CLI.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torchvision
from conftest import REPO, compose
from torch import nn

from wsol.cams import METHODS, build_method
from wsol.cams.layout import Layout, LayoutRequest, resolve_layout, token_grid
from wsol.errors import WsolError
from wsol.models import build_model, default_layer

# --- layouts --------------------------------------------------------------------------------------------------


def test_tokens_of_a_2x3_grid_with_class_and_distillation_tokens():
    """Token ``2 + r·3 + c`` is grid cell ``(r, c)``; the prefix tokens are set aside and put back unchanged."""
    batch, channels = 2, 4
    tokens = torch.arange(batch * 8 * channels, dtype=torch.float32).view(batch, 8, channels)
    spatial, rebuild = Layout("tokens", prefix=2).split(tokens, (32, 48))
    assert spatial.shape == (batch, channels, 2, 3)
    for r in range(2):
        for c in range(3):
            torch.testing.assert_close(spatial[:, :, r, c], tokens[:, 2 + 3 * r + c])
    torch.testing.assert_close(rebuild(spatial), tokens)
    edited = spatial.clone()
    edited[:, 1] = 0
    back = rebuild(edited)
    assert back[:, :2].equal(tokens[:, :2]) and (back[:, 2:, 1] == 0).all() and back[:, 2:, 0].equal(tokens[:, 2:, 0])


def test_token_grids_from_counts_or_given():
    assert token_grid(197, (224, 224), None) == (1, 14, 14)  # ViT: class token
    assert token_grid(198, (224, 224), None) == (2, 14, 14)  # DeiT distilled
    assert token_grid(201, (224, 224), None) == (5, 14, 14)  # class + 4 registers
    assert token_grid(8, (32, 48), 2) == (2, 2, 3)
    assert token_grid(8, (32, 48), 2, (3, 2)) == (2, 3, 2)
    with pytest.raises(WsolError, match="cannot lay 8 tokens out as 3 prefix tokens"):
        token_grid(8, (32, 48), 3)


def test_layout_read_off_the_output_and_the_model():
    vit = torchvision.models.VisionTransformer(32, 8, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=8)
    assert resolve_layout(vit, vit.encoder.ln, torch.zeros(1, 17, 8)) == Layout("tokens", 1)  # its class token
    norm = nn.LayerNorm(96)
    assert resolve_layout(nn.Identity(), norm, torch.zeros(1, 7, 7, 96)).kind == "nhwc"
    conv = nn.Conv2d(3, 7, 1)  # 7 channels on a 7×7 grid: the width decides
    assert resolve_layout(nn.Identity(), conv, torch.zeros(1, 7, 7, 7)).kind == "nchw"
    swin_like = nn.Sequential(nn.Linear(3, 64), nn.LayerNorm(64), nn.GELU())
    cnn_like = nn.Sequential(nn.Conv2d(3, 64, 1), nn.ReLU())
    assert resolve_layout(swin_like, swin_like[2], torch.zeros(1, 7, 7, 64)).kind == "nhwc"  # no parameters: the model
    assert resolve_layout(cnn_like, cnn_like[1], torch.zeros(1, 64, 7, 7)).kind == "nchw"
    assert resolve_layout(nn.Identity(), nn.ReLU(), torch.zeros(1, 1, 1, 2)).kind == "nchw"  # nothing to tell: NCHW
    request = LayoutRequest("tokens", prefix=2, grid=(2, 3))
    assert resolve_layout(nn.Identity(), nn.ReLU(), torch.zeros(1, 8, 4), request) == Layout("tokens", 2, (2, 3))
    with pytest.raises(WsolError, match=r"outputs \(1, 5\); CAM methods read"):
        resolve_layout(nn.Identity(), nn.ReLU(), torch.zeros(1, 5))


class TokenNet(nn.Module):
    """A hand-made transformer-like classifier: fixed patch tokens ``T`` on a 2 × 3 grid behind a class token of
    100s (a misplaced prefix would show), an identity ``mix`` layer (the target), logits
    ``S = W · mean over patch tokens``. So ``∂S_c/∂A_k(r, c) = W_ck / 6`` and every gradient method's map
    is known."""

    num_prefix_tokens = 1

    def __init__(self, patches: torch.Tensor, weight: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("patches", patches)  # [6, C], row-major over the 2 × 3 grid
        self.cls = nn.Parameter(torch.full((1, 1, patches.shape[1]), 100.0))
        self.mix = nn.Linear(patches.shape[1], patches.shape[1], bias=False)
        self.mix.weight.data.copy_(torch.eye(patches.shape[1]))
        self.head = nn.Linear(patches.shape[1], weight.shape[0], bias=False)
        self.head.weight.data.copy_(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = 1 + 0 * x.mean((1, 2, 3))[:, None, None]  # depends on the input, equals 1
        tokens = torch.cat([self.cls.expand(len(x), -1, -1), self.patches.expand(len(x), -1, -1) * scale], 1)
        return self.head(self.mix(tokens)[:, 1:].mean(1))


@pytest.fixture
def token_net() -> TokenNet:
    g = torch.Generator().manual_seed(0)
    return TokenNet(torch.randn(6, 5, generator=g), torch.randn(3, 5, generator=g))


def _expected_gradcam(net: TokenNet, target: int) -> torch.Tensor:
    weights = net.head.weight[target] / 6
    out = torch.zeros(2, 3)
    for r in range(2):
        for c in range(3):
            out[r, c] = (weights * net.patches[3 * r + c]).sum()
    return out.clamp_min(0)


@pytest.mark.parametrize("method", ["gradcam", "hirescam", "xgradcam_free", "ablationcam"])
def test_token_maps_are_known_on_a_hand_made_token_model(token_net, method):
    images, target = torch.randn(1, 3, 32, 48), 2  # a 2 : 3 input: the grid is 2 × 3, not 3 × 2
    expected = _expected_gradcam(token_net, target)
    if method == "xgradcam_free":  # LayerCAM: ReLU(∂S/∂A) · A, summed over channels
        grad = (token_net.head.weight[target] / 6).clamp_min(0)
        expected = torch.einsum("k,rck->rc", grad, token_net.patches.view(2, 3, -1)).clamp_min(0)
        method = "layercam"
    if method == "ablationcam":  # w_k = (S − S_k) / |S| = W_ck · mean(A_k) / |S|
        patches = token_net.patches
        score = (token_net.head.weight[target] * patches.mean(0)).sum()
        weights = token_net.head.weight[target] * patches.mean(0) / score.abs()
        expected = torch.einsum("k,rck->rc", weights, patches.view(2, 3, -1)).clamp_min(0)
    out = build_method(method, token_net, "mix")(images, torch.tensor([target]))
    torch.testing.assert_close(out.maps[0], expected, rtol=1e-5, atol=1e-6)


def test_cam_on_tokens_is_one_line_with_the_reason(token_net):
    with pytest.raises(WsolError, match="token sequence, which reaches the classifier through its class token"):
        build_method("cam", token_net, "mix")(torch.randn(1, 3, 32, 48), torch.tensor([0]))


# --- families: torchvision and timm transformers (random weights, offline) -------------------------------------

_FAMILIES = {  # (model arguments, default layer, map size for a 224² input)
    "torchvision vit_b_16": ({"name": "vit_b_16", "weights": None}, "encoder.layers.encoder_layer_11.ln_1", 14),
    "torchvision swin_t": ({"name": "swin_t", "weights": None}, "norm", 7),
    "timm deit_tiny_patch16_224": ({"name": "deit_tiny_patch16_224", "source": "timm", "pretrained": False},
                                   "blocks.11.norm1", 14),
    "timm vit_small_patch16_224": ({"name": "vit_small_patch16_224", "source": "timm", "pretrained": False},
                                   "blocks.11.norm1", 14),
    "timm swin_tiny_patch4_window7_224": ({"name": "swin_tiny_patch4_window7_224", "source": "timm",
                                           "pretrained": False}, "norm", 7),
}
_GRADIENT = ["gradcam", "gradcampp", "xgradcam", "layercam", "hirescam", "eigencam", "eigengradcam", "segeigencam",
             "kpcacam", "fem", "gradcamelementwise", "shapleycam", "finercam", "randomcam"]
_IMAGE_ONLY = ["sobel", "center", "fullgrad"]  # maps at the input's resolution (FullGrad: the patch embedding's bias)
_ATTENTION = ["legrad"]  # reads the blocks' attention probabilities: ViTs, not Swin's windowed stages


@pytest.mark.parametrize("family", list(_FAMILIES))
def test_transformer_families_find_their_layer_and_run_the_gradient_family(family):
    arguments, layer, side = _FAMILIES[family]
    torch.manual_seed(0)
    model = build_model(**arguments)
    assert model.num_classes == 1000 and default_layer(model.module) == layer
    head = [m for m in model.module.modules() if isinstance(m, nn.Linear)][-1]
    nn.init.normal_(head.weight, std=0.02)  # torchvision initialises ViT's head to zeros: all-zero gradients
    images, labels = torch.randn(1, 3, 224, 224), torch.tensor([7])
    for name in _GRADIENT:
        out = build_method(name, model.module, layer)(images, labels)
        assert out.maps.shape == (1, side, side) and torch.isfinite(out.maps).all(), name
        assert out.maps.std() > 0, name
    for name in _IMAGE_ONLY:
        assert build_method(name, model.module, layer)(images, labels).maps.shape == (1, 224, 224), name
    for name in _ATTENTION:
        if "swin" in family:
            with pytest.raises(WsolError, match="legrad reads"):
                build_method(name, model.module, layer)(images, labels)
        else:
            out = build_method(name, model.module, layer)(images, labels)
            assert out.maps.shape == (1, side, side) and out.maps.std() > 0, name
    if family.startswith("timm deit"):  # ViT-ReciproCAM: one tail pass per patch token (196), the class token kept
        recipro = build_method("reciprocam", model.module, layer)(images, labels).maps
        assert recipro.shape == (1, side, side) and recipro.std() > 0 and (recipro <= 1).all()
    if "swin" in family:  # stages of 56², 28², 14², 7²: RefineCAM multiplies the last three, at the finest's size
        refined = build_method("refinecam", model.module, layer)(images, labels).maps
        assert refined.shape[1] == refined.shape[2] > side and torch.isfinite(refined).all()
    else:
        with pytest.raises(WsolError, match="refinecam needs two layers or more"):  # one token grid: name layers
            build_method("refinecam", model.module, layer)
    if "swin" in family:  # Swin's `norm` feeds the mean over the grid and one Linear: CAM is defined
        cam = build_method("cam", model.module, layer, relu=False)(images, labels).maps
        gradcam = build_method("gradcam", model.module, layer, relu=False)(images, labels).maps
        torch.testing.assert_close(gradcam * side * side, cam, rtol=1e-4, atol=1e-5)  # ∂S/∂A = W_c / hw
    else:
        with pytest.raises(WsolError, match="token sequence"):
            build_method("cam", model.module, layer)(images, labels)


@pytest.mark.slow
def test_every_perturbation_method_runs_on_a_vit():
    torch.manual_seed(0)
    model = build_model("deit_tiny_patch16_224", source="timm", pretrained=False).module
    for name in ("scorecam", "sscam", "iscam", "ablationcam", "groupcam", "opticam", "smoothgradcampp"):
        options = {"num_samples": 1} if name in ("sscam", "iscam", "smoothgradcampp") else {}
        options = {"steps": 2} if name == "opticam" else options
        out = build_method(name, model, "blocks.11.norm1", **options)(torch.randn(1, 3, 224, 224), torch.tensor([3]))
        side = 224 if name == "groupcam" else 14  # Group-CAM's map is made of its input-size masks
        assert out.maps.shape == (1, side, side) and torch.isfinite(out.maps).all(), name


def test_the_method_lists_cover_the_registry():
    others = ["cam", "refinecam", "reciprocam", "scorecam", "sscam", "iscam", "ablationcam", "groupcam",
              "opticam", "smoothgradcampp", "polycam"]  # Poly-CAM on a ViT: tests/test_zoo.py
    assert sorted([*_GRADIENT, *_IMAGE_ONLY, *_ATTENTION, *others]) == sorted(METHODS.names())


def test_timm_models_use_their_own_normalisation_and_class_count():
    model = build_model("resnet18", source="timm", pretrained=False, num_classes=7, kwargs={"drop_rate": 0.1})
    assert model.num_classes == 7 and model.mean == (0.485, 0.456, 0.406)
    clip = build_model("vit_base_patch16_clip_224", source="timm", pretrained=False, num_classes=3)
    assert clip.mean != (0.485, 0.456, 0.406)  # CLIP's own statistics, from the model's pretrained config
    with pytest.raises(WsolError, match="unknown timm model 'resnet5000'; did you mean: resnet50"):
        build_model("resnet5000", source="timm", pretrained=False)


def test_timm_offline_pretrained_is_one_line(monkeypatch):
    import timm

    def offline(*_args, pretrained=False, **_kwargs):
        if pretrained:
            raise OSError("We couldn't connect to 'https://huggingface.co' to load this file")
        raise AssertionError

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(WsolError, match="cannot fetch timm's pretrained weights of deit_tiny_patch16_224 "
                                        r"\(OSError: We couldn't connect.*model.pretrained=false"):
        build_model("deit_tiny_patch16_224", source="timm")


# --- your own module ------------------------------------------------------------------------------------------

NETS = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, width=8, classes=5, as_dict=True):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, stride=2))
        self.act = nn.ReLU()
        self.fc = nn.Linear(width, classes)
        self.as_dict = as_dict

    def forward(self, x):
        features = self.act(self.body(x))
        logits = self.fc(features.mean((2, 3)))
        return {"logits": logits, "features": features} if self.as_dict else logits


def build_net(width=8, classes=5, as_dict=True):
    torch.manual_seed(0)
    return Net(width, classes, as_dict)
'''


@pytest.fixture
def nets_file(tmp_path) -> str:
    path = tmp_path / "my_nets.py"
    path.write_text(textwrap.dedent(NETS))
    return str(path)


def test_a_module_from_a_file_with_a_dict_output(nets_file):
    path = list(sys.path)
    model = build_model("custom", source="custom", target=f"{nets_file}:build_net", kwargs={"width": 6},
                        output="logits", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert sys.path == path and "my_nets" not in sys.modules  # loaded from the file, nothing process-wide
    assert model.num_classes == 5 and model.mean == (0.5, 0.5, 0.5) and default_layer(model.module) == "act"
    out = build_method("gradcam", model.module, "act")(torch.randn(2, 3, 64, 64), torch.tensor([1, 4]))
    assert out.maps.shape == (2, 31, 31) and out.logits.shape == (2, 5)
    cam = build_method("cam", model.module, "act", relu=False)(torch.randn(1, 3, 64, 64), torch.tensor([1]))
    assert cam.maps.shape == (1, 31, 31)  # act → mean → fc: CAM is defined


def test_custom_model_errors_are_one_line(nets_file, tmp_path):
    cases = [
        ({"target": "no_such_pkg.nets.build"}, "cannot build model.target=no_such_pkg.nets.build: ModuleNotFoundError"),
        ({"target": f"{nets_file}:build_net"}, r"forward gives a dict \(keys: logits, features\); set model.output"),
        ({"target": f"{nets_file}:build_net", "output": "scores"}, "model.output=scores: the model returns a dict"),
        ({"target": f"{nets_file}:build_net", "output": "logits", "num_classes": 9},
         "gives 5 classes, but model.num_classes=9"),
        ({"target": f"{nets_file}:build_net", "kwargs": {"depth": 3}}, "unexpected keyword argument 'depth'"),
        ({"target": f"{tmp_path}/absent.py:build"}, "model.target: no file"),
        ({"target": f"{nets_file}:build_nett"}, "my_nets.py has no callable build_nett"),
        ({"target": "torch.zeros", "kwargs": {"size": [2]}}, "gave a Tensor, not a torch.nn.Module"),
    ]
    for arguments, message in cases:
        with pytest.raises(WsolError, match=message) as err:
            build_model("custom", source="custom", **arguments)
        assert "\n" not in str(err.value)
    model = build_model("custom", source="custom", target=f"{nets_file}:build_net", kwargs={"as_dict": False})
    with pytest.raises(WsolError, match="no layer 'bdy' in the model; close names: body"):
        build_method("gradcam", model.module, "bdy")


def test_a_checkpoint_for_a_custom_module(nets_file, tmp_path):
    net = build_model("custom", source="custom", target=f"{nets_file}:build_net", output="logits").module
    with torch.no_grad():
        net.fc.weight.mul_(3)
    path = tmp_path / "net.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, path)
    again = build_model("custom", source="custom", target=f"{nets_file}:build_net", output="logits",
                        checkpoint=str(path))
    assert torch.equal(again.module.fc.weight, net.fc.weight)


def test_config_keys_of_the_model_sources():
    from wsol.config import validate

    for overrides, message in [
        (["model=resnet18", "model.pretrained=false"], "model.pretrained is timm's switch"),
        (["model=resnet18", "model.kwargs={depth: 3}"], "model.kwargs is an option of model=timm and model=custom"),
        (["model=resnet18", "model.output=logits"], "model.output is an option"),
        (["model=custom"], "model=custom needs model.target=package.module.builder"),
        (["model=timm"], "model.name is not set"),
        (["model=resnet18", "model.mean=[0.5,0.5]"], r"model.mean must be three numbers"),
        (["model=resnet18", "model.tokens.grid=[14]"], r"model.tokens.grid must be \[h, w\]"),
    ]:
        with pytest.raises(WsolError, match=message):
            validate(compose(*overrides))
    validate(compose("model=timm", "model.name=deit_tiny_patch16_224", "model.pretrained=false", "model.layout=tokens",
                     "model.tokens.prefix=1"))


# --- end to end through the CLI ---------------------------------------------------------------------------------


def _wsol(*args: str, cwd: str = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONPATH": REPO}
    return subprocess.run([sys.executable, "-m", "wsol.run", *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("model", [
    ["model=timm", "model.name=deit_tiny_patch16_224", "model.pretrained=false"],
    ["model=timm", "model.name=swin_tiny_patch4_window7_224", "model.pretrained=false"],
    ["model=vit_b_16", "model.weights=null"],
])
def test_transformers_run_end_to_end(tmp_path, model):
    proc = _wsol(*model, "method=gradcampp", "limit=4", "batch_size=2", "cache_dir=null", "progress=false",
                 f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| gradcampp |" in proc.stdout and (tmp_path / "run" / "metrics.json").is_file()


@pytest.mark.slow
def test_a_module_from_a_file_runs_end_to_end(tmp_path, nets_file):
    proc = _wsol("model=custom", f"model.target={nets_file}:build_net", "model.kwargs={classes: 1000}",
                 "model.output=logits", "method=gradcampp", "limit=4", "batch_size=2", "cache_dir=null",
                 "progress=false", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| gradcampp | build_net | act | demo |" in proc.stdout
