"""Batch-norm folding (wsol/models/fold.py): the folded weights by hand, the same function as the unfolded
network up to float rounding, and every case where a batch norm must stay."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet18

from wsol.models.fold import fold_batchnorms, foldable_pairs


def _randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Running statistics and affine parameters far from the identity, so that a wrong fold shows."""
    generator = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=generator))
            m.running_var.copy_(torch.rand(n, generator=generator) * 2 + 0.1)
            m.weight.data.copy_(torch.randn(n, generator=generator))
            m.bias.data.copy_(torch.randn(n, generator=generator))
    return model.eval()


def test_folded_weights_by_hand():
    # y = γ (2x + 1 − μ) / √(σ² + ε) + β with γ = 3, μ = 1, σ² = 3, ε = 1, β = 0.5 is y = 3x + 0.5
    model = nn.Sequential(nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1, eps=1.0)).eval()
    with torch.no_grad():
        model[0].weight.fill_(2.0)
        model[0].bias.fill_(1.0)
        model[1].running_mean.fill_(1.0)
        model[1].running_var.fill_(3.0)
        model[1].weight.fill_(3.0)
        model[1].bias.fill_(0.5)
    assert fold_batchnorms(model, torch.zeros(1, 1, 4, 4)) == [("0", "1")]
    assert isinstance(model[1], nn.Identity)
    assert model[0].weight.item() == 3.0 and model[0].bias.item() == 0.5
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert torch.equal(model(x), 3 * x + 0.5)


def test_resnet18_folds_every_norm_and_keeps_its_function_and_names():
    torch.manual_seed(0)
    model = _randomize_norms(resnet18(num_classes=10))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
    names = [n for n, _ in model.named_modules()]
    pairs = fold_batchnorms(model, torch.zeros(1, 3, 64, 64))
    assert len(pairs) == 20 and ("conv1", "bn1") in pairs
    assert ("layer2.0.downsample.0", "layer2.0.downsample.1") in pairs
    assert [n for n, _ in model.named_modules()] == names  # norms became identities under the same names
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    with torch.no_grad():
        after = model(x)
    assert torch.allclose(after, before, rtol=1e-4, atol=1e-4 * before.abs().max().item())


class _Shared(nn.Module):
    """Cases where the norm must stay: ``a`` feeds its norm and a residual, ``b``'s output is changed in place
    before its norm, ``c`` runs twice, ``d`` feeds a norm subclass."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.na = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.b, self.nb = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.c, self.nc = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)
        self.d, self.nd = nn.Conv2d(4, 4, 1), type("Subclass", (nn.BatchNorm2d,), {})(4)
        self.e, self.ne = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)

    def forward(self, x):
        a = self.a(x)
        x = self.na(a) + a
        x = self.nb(torch.relu_(self.b(x)))
        x = self.nc(self.c(self.c(x)))
        x = self.nd(self.d(x))
        return self.ne(self.e(x))


def test_only_a_norm_reading_a_convolution_output_nothing_else_reads_is_folded():
    model = _randomize_norms(_Shared())
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        before = model(x)
    assert foldable_pairs(model, x[:1]) == [("e", "ne")]
    assert foldable_pairs(model, x[:1], keep=("ne",)) == [] and foldable_pairs(model, x[:1], keep=("e",)) == []
    hook = model.e.register_forward_hook(lambda *_: None)
    assert foldable_pairs(model, x[:1]) == []  # a hooked module is someone's: left alone
    hook.remove()
    model.ne.train()
    assert foldable_pairs(model, x[:1]) == []  # training mode: batch statistics, no fixed affine map
    model.ne.eval()
    fold_batchnorms(model, x[:1])
    with torch.no_grad():
        assert torch.allclose(model(x), before, rtol=1e-5, atol=1e-5)
    assert model.training is False and isinstance(model.ne, nn.Identity) and isinstance(model.na, nn.BatchNorm2d)


class _SamePadding(nn.Conv2d):
    """TensorFlow's "same" padding in the forward (EfficientNet-Lite0's convolutions): still a plain
    convolution of its weights, so it folds."""

    def forward(self, x):
        return super().forward(nn.functional.pad(x, (0, 1, 0, 1)))


class _Standardized(nn.Conv2d):
    """Weight standardisation (BiT, NFNets): a fold's per-channel scale is normalised away again."""

    def forward(self, x):
        w = self.weight
        w = (w - w.mean(dim=(1, 2, 3), keepdim=True)) / w.std(dim=(1, 2, 3), keepdim=True)
        return nn.functional.conv2d(x, w, self.bias, self.stride, self.padding)


def test_a_convolution_subclass_folds_only_if_the_folded_layer_gives_the_same_output():
    torch.manual_seed(0)
    model = _randomize_norms(nn.Sequential(_SamePadding(3, 4, 2), nn.BatchNorm2d(4), nn.ReLU(),
                                           _Standardized(4, 4, 3), nn.BatchNorm2d(4)))
    x = torch.randn(2, 3, 9, 9)
    with torch.no_grad():
        before = model(x)
    assert foldable_pairs(model, x[:1]) == [("0", "1"), ("3", "4")]  # the dataflow allows both
    assert fold_batchnorms(model, x[:1]) == [("0", "1")]  # the check undoes the second
    assert isinstance(model[1], nn.Identity) and isinstance(model[4], nn.BatchNorm2d)
    with torch.no_grad():
        assert torch.allclose(model(x), before, rtol=1e-5, atol=1e-5)


def test_a_target_layer_is_left_unfolded():
    torch.manual_seed(0)
    model = _randomize_norms(resnet18(num_classes=10))
    pairs = fold_batchnorms(model, torch.zeros(1, 3, 64, 64), keep=("layer4.1.bn2",))
    assert ("layer4.1.conv2", "layer4.1.bn2") not in pairs and len(pairs) == 19
    assert isinstance(model.layer4[1].bn2, nn.BatchNorm2d)


def test_a_model_without_batch_norms_is_not_run():
    class Refuses(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.norm = nn.Conv2d(3, 4, 1), nn.GroupNorm(2, 4)

        def forward(self, x):
            raise AssertionError("the fold ran a model it has nothing to fold in")

    assert fold_batchnorms(Refuses(), torch.zeros(1, 3, 4, 4)) == []
