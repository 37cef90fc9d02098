"""Model building: offline EfficientNet-Lite0, default layers, checkpoints, offline weight errors."""

from __future__ import annotations

import urllib.error

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from wsol.errors import WsolError
from wsol.models import build_model, default_layer, find_layer, list_model_names


def test_efficientnet_lite0_is_real_and_offline():
    import skimage.data

    model = build_model("efficientnet_lite0")
    assert model.num_classes == 1000 and model.categories[285] == "Egyptian cat"
    image = Image.fromarray(skimage.data.chelsea()).resize((224, 224), Image.BILINEAR)
    x = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float()[None] / 255
    x = (x - torch.tensor(model.mean).view(1, 3, 1, 1)) / torch.tensor(model.std).view(1, 3, 1, 1)
    with torch.no_grad():
        assert model.module(x).argmax(1).item() == 285
    assert default_layer(model.module) == "features"


@pytest.mark.parametrize(
    ("name", "layer"),
    [("resnet18", "layer4"), ("vgg11", "features.19"), ("mobilenet_v2", "features"), ("densenet121", "features")],
)
def test_default_layers(name, layer):
    module = torchvision.models.get_model(name, weights=None).eval()
    assert default_layer(module) == layer


def test_find_layer_suggests_close_names():
    module = torchvision.models.resnet18(weights=None)
    assert isinstance(find_layer(module, "layer4.1.conv2"), torch.nn.Conv2d)
    with pytest.raises(WsolError, match=r"no layer 'layer5'.*layer4"):
        find_layer(module, "layer5")


def test_checkpoint_with_num_classes(tmp_path):
    net = torchvision.models.resnet18(weights=None, num_classes=7)
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, path)
    model = build_model("resnet18", checkpoint=str(path), num_classes=7)
    assert model.num_classes == 7 and model.mean == (0.485, 0.456, 0.406)
    tensors = [*model.module.parameters(), *model.module.buffers()]  # built on the meta device, then assigned
    assert all(t.device.type == "cpu" for t in tensors)
    assert torch.equal(model.module.fc.weight, net.fc.weight)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model.module(x), net.eval()(x))
    with pytest.raises(WsolError, match=r"does not fit resnet18 \(5 classes\).*fc.weight \(7, 512\) vs \(5, 512\)"):
        build_model("resnet18", checkpoint=str(path), num_classes=5)
    with pytest.raises(WsolError, match="not found"):
        build_model("resnet18", checkpoint=str(tmp_path / "nope.pth"), num_classes=7)


def test_offline_weights_give_one_line_error(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", no_network)
    with pytest.raises(WsolError) as info:
        build_model("resnet18")
    message = str(info.value)
    assert "resnet18-f37072fd.pth" in message and str(tmp_path) in message and "\n" not in message


def test_unknown_names():
    with pytest.raises(WsolError, match="did you mean: resnet50"):
        build_model("resnet5")
    with pytest.raises(WsolError, match="no weights 'V9'"):
        build_model("resnet18", weights="V9")
    names = list_model_names()
    assert {"efficientnet_lite0", "resnet50", "vit_b_16", "swin_t", "wsoleval_resnet50"} <= set(names)
