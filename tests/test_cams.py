"""CAM formulas against hand-computed values and analytic invariants."""

from __future__ import annotations

import pytest
import torch
from conftest import MeanHead, SquareHead, ToyCamNet
from torch import nn

from wsol.cams import build_method
from wsol.cams.core import capture_activations
from wsol.cams.gradcam import gradcampp_alpha
from wsol.errors import WsolError
from wsol.ops import minmax_normalize


def test_cam_and_gradcam_hand_values():
    a = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[4.0, 0.0], [1.0, 1.0]]]])  # [1, 2, 2, 2]
    w = torch.tensor([[1.0, -1.0], [0.5, 2.0]])
    net = MeanHead(w)
    cam = build_method("cam", net, "features")(a, torch.tensor([1]))
    # class 1: 0.5*A0 + 2*A1 = [[8.5, 1], [3.5, 4]]
    assert cam.maps[0].tolist() == [[8.5, 1.0], [3.5, 4.0]]
    grad = build_method("gradcam", net, "features")(a, torch.tensor([1]))
    # g = W[1] / 4 everywhere → weights (0.125, 0.5): the CAM map / 4
    assert torch.allclose(grad.maps[0], torch.tensor([[8.5, 1.0], [3.5, 4.0]]) / 4)
    # class 0: A0 - A1 = [[-3, 2], [2, 3]] → ReLU
    cam0 = build_method("cam", net, "features")(a, torch.tensor([0]))
    assert cam0.maps[0].tolist() == [[0.0, 2.0], [2.0, 3.0]]
    raw = build_method("cam", net, "features", relu=False)(a, torch.tensor([0]))
    assert raw.maps[0].tolist() == [[-3.0, 2.0], [2.0, 3.0]]


def test_gradcampp_hand_values():
    # one channel, two pixels A = [1, 2], v = 1 → g = 2A = [2, 4], ΣA = 3
    # α = g² / (2g² + ΣA g³): 4 / (8 + 24) = 0.125 and 16 / (32 + 192) = 1/14
    # w = 0.125 * 2 + 4/14 = 0.25 + 0.285714... ; map = w * A
    a = torch.tensor([[[[1.0, 2.0]]]])
    net = SquareHead(torch.tensor([[1.0]]))
    out = build_method("gradcampp", net, "features")(a, torch.tensor([0]))
    w = 0.125 * 2 + (1 / 14) * 4
    assert out.maps[0, 0].tolist() == pytest.approx([w * 1, w * 2], rel=1e-6)


def test_gradcampp_alpha_zero_where_denominator_vanishes():
    a = torch.ones(1, 1, 1, 2)
    g = torch.tensor([[[[0.0, 1.0]]]])
    alpha = gradcampp_alpha(a, g)
    # pixel 0: g = 0 → 0 (not NaN); pixel 1: 1 / (2 + 2*1) = 0.25
    assert alpha.flatten().tolist() == [0.0, 0.25]


@pytest.mark.parametrize("inplace", [False, True])
def test_cam_equals_gradcam_at_a_gap_fc_layer(inplace):
    net = ToyCamNet(inplace=inplace)
    x = torch.randn(3, 3, 7, 7)
    labels = torch.tensor([0, 2, 1])
    cam = build_method("cam", net, "features")(x, labels).maps
    grad = build_method("gradcam", net, "features")(x, labels).maps
    # g is spatially constant (W[c] / hw), so Grad-CAM = CAM / hw exactly, and equal after min-max
    assert torch.allclose(grad, cam / 49, atol=1e-6)
    assert torch.allclose(minmax_normalize(cam)[0], minmax_normalize(grad)[0], atol=1e-5)


def test_inplace_relu_after_hooked_layer_does_not_corrupt_activations():
    net = ToyCamNet(inplace=True)
    x = torch.randn(2, 3, 5, 5)
    expected = net.conv(x)
    with capture_activations(net.conv) as store:
        net(x)
    assert (store["activations"] < 0).any()  # the stored conv output kept its negative values
    assert torch.allclose(store["activations"], expected)
    # Grad-CAM at the conv (before the in-place ReLU) is the same with and without in-place
    ref = ToyCamNet(inplace=False)
    labels = torch.tensor([1, 0])
    a = build_method("gradcam", net, "conv")(x, labels).maps
    b = build_method("gradcam", ref, "conv")(x, labels).maps
    assert torch.allclose(a, b, atol=1e-6)


def test_hooks_removed_and_modes_restored_even_on_error():
    net = ToyCamNet()
    net.train()
    method = build_method("gradcampp", net, "features")
    method(torch.randn(2, 3, 5, 5), torch.tensor([0, 1]))
    assert net.training and all(m.training for m in net.modules())
    assert not any(m._forward_hooks for m in net.modules())
    with pytest.raises(WsolError):
        method(torch.randn(2, 3, 5, 5), None, target="gt")
    with pytest.raises(RuntimeError):
        method(torch.randn(2, 5, 5, 5), torch.tensor([0, 1]))  # wrong channel count fails inside forward
    assert not any(m._forward_hooks for m in net.modules())
    assert net.training


@pytest.mark.parametrize("name", ["cam", "gradcam", "gradcampp"])
def test_batch_invariance_and_determinism(name):
    net = ToyCamNet(channels=6, classes=4)
    x = torch.randn(5, 3, 9, 9)
    labels = torch.tensor([3, 0, 1, 2, 1])
    method = build_method(name, net, "features")
    batch = method(x, labels).maps
    for i in range(5):
        alone = method(x[i : i + 1], labels[i : i + 1]).maps[0]
        assert torch.allclose(alone, batch[i], atol=1e-5)
    assert torch.equal(method(x, labels).maps, batch)


def test_per_sample_targets_top1_vs_gt():
    net = ToyCamNet(classes=3)
    x = torch.randn(4, 3, 6, 6)
    method = build_method("gradcam", net, "features")
    top1 = method(x, target="top1")
    assert torch.equal(top1.targets, top1.logits.argmax(1))
    for c in range(3):
        forced = method(x, torch.full((4,), c))
        same = top1.targets == c
        assert torch.allclose(forced.maps[same], top1.maps[same])
        assert (forced.targets == c).all()


def test_gradients_flow_with_frozen_parameters():
    x, labels = torch.randn(2, 3, 5, 5), torch.tensor([0, 1])
    expected = build_method("gradcam", ToyCamNet(), "features")(x, labels).maps
    net = ToyCamNet()
    for p in net.parameters():
        p.requires_grad_(False)
    out = build_method("gradcam", net, "features")(x, labels)
    assert expected.abs().amax((1, 2)).min() > 0  # a map per image with something in it
    assert torch.equal(out.maps, expected)


def test_cam_needs_a_gap_fc_layer():
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 1), nn.ReLU6(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(WsolError, match="CAM needs .* 1: its output reaches the classifier through Convolution"):
        build_method("cam", net, "1")(torch.randn(1, 3, 5, 5), torch.tensor([0]))
    # up to element-wise activations: the convolution before the ReLU6 feeds the pooling too
    for layer in ("2", "3"):
        assert build_method("cam", net, layer)(torch.randn(1, 3, 5, 5), torch.tensor([0])).maps.shape == (1, 3, 3)


def test_cam_checks_every_layer_it_fuses():
    """Several layers: each is checked, not only the first (layer4 feeds GAP → FC; layer4.1.bn2 does not)."""
    import torchvision

    net = torchvision.models.resnet18(weights=None).eval()
    x, label = torch.randn(1, 3, 64, 64), torch.tensor([3])
    with pytest.raises(WsolError, match=r"layer4\.1\.bn2: its output reaches the classifier through AddBackward"):
        build_method("cam", net, ["layer4", "layer4.1.bn2"])(x, label)
    assert build_method("cam", net, ["layer4", "layer4.1"])(x, label).maps.shape == (1, 2, 2)


def test_cam_refuses_a_layer_with_the_right_width_that_does_not_feed_the_pooling():
    """ResNet's last ``bn2`` has as many channels as the pooled features, but the residual sum follows it."""
    import torchvision

    net = torchvision.models.resnet18(weights=None).eval()
    x, label = torch.randn(1, 3, 64, 64), torch.tensor([3])
    with pytest.raises(WsolError, match=r"layer4\.1\.bn2: its output reaches the classifier through AddBackward"):
        build_method("cam", net, "layer4.1.bn2")(x, label)
    for layer in ("layer4", "layer4.1"):
        assert build_method("cam", net, layer)(x, label).maps.shape == (1, 2, 2)
    with pytest.raises(WsolError, match="AddmmBackward"):  # VGG: the pooled features pass two more Linear layers
        build_method("cam", torchvision.models.vgg11(weights=None).eval(), "features.19")(x, label)


def test_unknown_method_and_layer_errors():
    net = ToyCamNet()
    with pytest.raises(WsolError, match="did you mean: gradcam"):
        build_method("gradcm", net, "features")
    with pytest.raises(WsolError, match="close names: features"):
        build_method("gradcam", net, "feature")


def test_autograd_starts_at_the_target_layer_and_the_gradient_is_unchanged():
    """The layers before the target run without autograd (as in inference); the gradient at the layer equals
    one taken through a full graph, and the model's parameters keep requires_grad."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    images, labels = torch.randn(2, 3, 64, 64), torch.tensor([3, 7])
    recorded = []
    handle = model.layer3.register_forward_hook(lambda _m, _i, out: recorded.append(out.requires_grad))
    maps = build_method("gradcam", model, ["layer4"])(images, labels).maps
    handle.remove()
    assert recorded == [False] and torch.is_grad_enabled()  # no graph before layer4; the grad mode restored
    with capture_activations(model.layer4) as store, torch.enable_grad():
        logits = model(images.requires_grad_(True))  # the full graph, from the input
        (grads,) = torch.autograd.grad(logits.gather(1, labels[:, None]).sum(), store["activations"])
    weights = grads.mean(dim=(2, 3))
    expected = torch.relu(torch.einsum("bc,bchw->bhw", weights, store["activations"].detach()))
    assert torch.equal(maps, expected)
    assert all(p.requires_grad for p in model.parameters())
