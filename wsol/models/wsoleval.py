"""The WSOL field's own models: wsolevaluation's VGG16-GAP, ResNet50 and InceptionV3 in its four
architecture types (Choe et al., *Evaluating Weakly Supervised Object Localization Methods Right*,
CVPR 2020; clovaai/wsolevaluation's ``wsol/vgg.py``, ``resnet.py``, ``inception.py``):

- ``cam``: backbone → global average pooling → classifier (Zhou et al., CVPR 2016); HaS and CutMix
  train this type too;
- ``adl``: ``cam`` with Attention-based Dropout Layers between blocks (Choe & Shim, CVPR 2019);
- ``acol``: two classifier heads, the second fed the features with the first head's attention erased
  (Zhang et al., CVPR 2018);
- ``spg``: a class-map head with self-produced guidance branches (Zhang et al., ECCV 2018).

State-dict keys and shapes are the reference's for every backbone × type × ``large_feature_map``, so
the checkpoints its training saves load unchanged. In eval mode each model's ``forward`` returns the
reference's ``logits``; what acts only in training is inert: ADL is the identity, dropout is off, and
the SPG guidance branches and ACoL's second head, which never reach the logits, are not run by
``forward``. :meth:`WsolevalModel.class_activation_map` is the map the reference's
``model(images, labels, return_cam=True)`` returns, computed from the output of ``cam_layer``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.inception import BasicConv2d, InceptionA, InceptionC
from torchvision.models.resnet import Bottleneck

from ..errors import WsolError

__all__ = ["ARCHITECTURES", "BACKBONES", "ADL", "WsolevalModel", "build_wsoleval", "acol_cam", "checkpoint_classes"]

ARCHITECTURES = ("cam", "adl", "acol", "spg")
# the classifier of each type, [num_classes, ...]
_CLASSIFIER_KEYS = ("fc.weight", "SPG_A4.weight", "SPG_A_4.weight", "classifier_A.4.weight")


class ADL(nn.Module):
    """Attention-based Dropout Layer (Choe & Shim, CVPR 2019): it drops or re-weights activations only while
    training; at evaluation it is the identity, as the reference's is. It holds no parameters."""

    def __init__(self, drop_rate: float = 0.75, drop_threshold: float = 0.8) -> None:
        super().__init__()
        self.drop_rate, self.drop_threshold = drop_rate, drop_threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            raise WsolError("ADL acts only while training; wsol evaluates wsolevaluation models in eval mode")
        return x

    def extra_repr(self) -> str:
        return f"drop_rate={self.drop_rate}, drop_threshold={self.drop_threshold}"


class WsolevalModel(nn.Module):
    """A wsolevaluation architecture: ``forward(x)`` gives the logits; ``class_activation_map`` the reference's CAM."""

    cam_layer: str  # the module whose output the reference's CAM reads; wsol's default target layer

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes

    def class_activation_map(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``[B, h, w]``: the reference's ``return_cam=True`` map of class ``targets`` from ``cam_layer``'s output."""
        raise NotImplementedError


def fc_cam(fc: nn.Linear, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``M_c = mean_k w^c_k A_k``: the reference's CAM of the ``cam`` and ``adl`` types (the mean over channels, so
    1/K of Zhou et al.'s sum; no bias)."""
    weights = fc.weight[targets.to(fc.weight.device)].to(features.dtype)
    return (weights[:, :, None, None] * features).mean(1)


def class_map_cam(head: nn.Module, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The target-class channel of a class-map head (a 1×1 convolution, bias included): the reference's CAM of the
    ``spg`` type and of InceptionV3's ``cam`` and ``adl``."""
    return head(features)[torch.arange(len(targets), device=features.device), targets.to(features.device)]


def _minmax(maps: torch.Tensor) -> torch.Tensor:
    """Each ``[h, w]`` map to ``(M − min) / (max − min)`` (the reference's ``normalize_tensor``); a flat map, which
    the reference turns to NaN, becomes zeros."""
    lo, hi = maps.amin((-2, -1), keepdim=True), maps.amax((-2, -1), keepdim=True)
    return torch.where(hi > lo, (maps - lo) / (hi - lo), torch.zeros_like(maps))


def acol_cam(
    head_a: nn.Module, head_b: nn.Module, features: torch.Tensor, targets: torch.Tensor, drop_threshold: float
) -> torch.Tensor:
    """ACoL's CAM: ``max(n(A_c), n(B_c))``, ``n`` the min-max of a map, ``A = head_a(F)`` and
    ``B = head_b(F · [n(A_c) < θ])``: the second head sees the features with the first head's attention at or
    above ``θ`` erased, also at evaluation (the reference's ``_acol_logits`` and ``return_cam``)."""
    rows, targets = torch.arange(len(targets), device=features.device), targets.to(features.device)
    attention = _minmax(head_a(features)[rows, targets])
    keep = ~(attention >= drop_threshold)  # the reference erases where torch.ge holds
    maps_b = head_b(features * keep[:, None].to(features.dtype))[rows, targets]
    return torch.maximum(attention, _minmax(maps_b))


def _conv_relu(*channels: int, kernel_size: int = 3) -> list[nn.Module]:
    """``Conv2d(k, padding=k//2) → ReLU`` for each consecutive pair of ``channels``."""
    layers: list[nn.Module] = []
    for cin, cout in zip(channels[:-1], channels[1:], strict=True):
        layers += [nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2), nn.ReLU(inplace=True)]
    return layers


def _acol_head(in_channels: int, num_classes: int) -> nn.Sequential:
    """An ACoL classifier head: two 3×3 convolutions of 1024 channels, then a 1×1 convolution to class maps."""
    return nn.Sequential(*_conv_relu(in_channels, 1024, 1024), nn.Conv2d(1024, num_classes, 1))


def _guidance(in_channels: int, width: int) -> nn.Sequential:
    """An SPG guidance head: a 3×3 convolution, then a 1×1 convolution to one map."""
    return nn.Sequential(*_conv_relu(in_channels, width), nn.Conv2d(width, 1, 1))


class _AcolHeads:
    """ACoL's two heads on ``cam_layer``'s output: logits from the first; the CAM from both (:func:`acol_cam`)."""

    classifier_A: nn.Module
    classifier_B: nn.Module
    drop_threshold: float

    def _heads(self, in_channels: int, num_classes: int, drop_threshold: float) -> None:
        self.classifier_A = _acol_head(in_channels, num_classes)
        self.classifier_B = _acol_head(in_channels, num_classes)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.drop_threshold = float(drop_threshold)

    def class_activation_map(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return acol_cam(self.classifier_A, self.classifier_B, features, targets, self.drop_threshold)


# --- VGG16 ---------------------------------------------------------------------------------------------------
# a number: 3×3 convolution of that width + ReLU; M: 2×2 max pool; M1: 3×3 stride-2 max pool (padding 1);
# M2: 3×3 stride-1 max pool (padding 1); A: ADL
_VGG_LAYOUTS = {
    ("cam", False): "64 64 M 128 128 M 256 256 256 M 512 512 512 M 512 512 512",
    ("cam", True): "64 64 M 128 128 M 256 256 256 M 512 512 512 512 512 512",
    ("acol", False): "64 64 M1 128 128 M1 256 256 256 M1 512 512 512 M1 512 512 512 M2",
    ("acol", True): "64 64 M1 128 128 M1 256 256 256 M1 512 512 512 M2 512 512 512 M2",
    ("spg", False): "64 64 M 128 128 M 256 256 256 M",
    ("spg", True): "64 64 M 128 128 M 256 256 256 M",
    ("adl", False): "64 64 M 128 128 M 256 256 256 M A 512 512 512 A M 512 512 512 A",
    ("adl", True): "64 64 M 128 128 M 256 256 256 M A 512 512 512 A 512 512 512 A",
}
_VGG_POOLS = {
    "M": lambda: nn.MaxPool2d(2, 2),
    "M1": lambda: nn.MaxPool2d(3, 2, padding=1),
    "M2": lambda: nn.MaxPool2d(3, 1, padding=1),
    "A": ADL,
}


def _vgg_features(layout: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = 3
    for item in layout.split():
        if item in _VGG_POOLS:
            layers.append(_VGG_POOLS[item]())
        else:
            layers += _conv_relu(channels, int(item))
            channels = int(item)
    return nn.Sequential(*layers)


class VGG16Cam(WsolevalModel):
    """VGG16-GAP (``cam``, ``adl``): features → ``conv6`` (3×3, 1024) → ``relu`` → GAP → ``fc``."""

    cam_layer = "relu"

    def __init__(self, num_classes: int, architecture: str = "cam", large_feature_map: bool = False) -> None:
        super().__init__(num_classes)
        self.features = _vgg_features(_VGG_LAYOUTS[architecture, large_feature_map])
        self.conv6 = nn.Conv2d(512, 1024, 3, padding=1)
        self.relu = nn.ReLU(inplace=False)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.relu(self.conv6(self.features(x)))), 1))

    def class_activation_map(self, features, targets):
        return fc_cam(self.fc, features, targets)


class VGG16Acol(_AcolHeads, WsolevalModel):
    """VGG16 ACoL: features → 3×3 average ``smoothing`` (stride 1) → two heads; logits from ``classifier_A``."""

    cam_layer = "smoothing"

    def __init__(self, num_classes: int, large_feature_map: bool = False, drop_threshold: float = 0.7) -> None:
        super().__init__(num_classes)
        self.features = _vgg_features(_VGG_LAYOUTS["acol", large_feature_map])
        self.smoothing = nn.AvgPool2d(3, stride=1, padding=1)  # the reference's F.avg_pool2d(3, 1, 1)
        self._heads(512, num_classes, drop_threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.avgpool(self.classifier_A(self.smoothing(self.features(x)))), 1)


class VGG16Spg(WsolevalModel):
    """VGG16 SPG: features (to conv3_3) → ``SPG_A_1`` → (3×3 stride-2 pool unless ``large_feature_map``) →
    ``SPG_A_2`` → ``SPG_A_3`` → ``SPG_A_4`` class maps → GAP; guidance heads ``SPG_B_*``, ``SPG_C`` (training)."""

    cam_layer = "SPG_A_3"

    def __init__(self, num_classes: int, large_feature_map: bool = False) -> None:
        super().__init__(num_classes)
        self.large_feature_map = large_feature_map
        self.features = _vgg_features(_VGG_LAYOUTS["spg", large_feature_map])
        self.SPG_A_1 = nn.Sequential(*_conv_relu(256, 512, 512, 512))
        self.SPG_A_2 = nn.Sequential(*_conv_relu(512, 512, 512, 512))
        self.SPG_A_3 = nn.Sequential(*_conv_relu(512, 512, 512))
        self.SPG_A_4 = nn.Conv2d(512, num_classes, 1)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.SPG_B_1a = nn.Sequential(*_conv_relu(512, 512))
        self.SPG_B_2a = nn.Sequential(*_conv_relu(512, 512))
        self.SPG_B_shared = _guidance(512, 512)
        self.SPG_C = _guidance(512, 512)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.SPG_A_1(self.features(x))
        if not self.large_feature_map:
            x = F.max_pool2d(x, 3, stride=2, padding=1)
        return torch.flatten(self.avgpool(self.SPG_A_4(self.SPG_A_3(self.SPG_A_2(x)))), 1)

    def class_activation_map(self, features, targets):
        return class_map_cam(self.SPG_A_4, features, targets)


# --- ResNet50 ------------------------------------------------------------------------------------------------
_ADL_AFTER = {"layer3": (0,), "layer4": (0, 2)}  # ADL after these blocks (the reference's _ADL_POSITION)


def _bottlenecks(inplanes: int, planes: int, blocks: int, stride: int) -> list[nn.Module]:
    """A ResNet stage of torchvision's ``Bottleneck`` blocks (stride on the 3×3 convolution)."""
    out = planes * Bottleneck.expansion
    downsample = None
    if stride != 1 or inplanes != out:
        downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride, bias=False), nn.BatchNorm2d(out))
    return [Bottleneck(inplanes, planes, stride, downsample)] + [Bottleneck(out, planes) for _ in range(blocks - 1)]


class _ResNetTrunk(WsolevalModel):
    """ResNet50's stem and stages with ``layer4`` at stride 1 (14×14 maps for a 224 input); ``large_feature_map``
    puts ``layer3`` at stride 1 too (28×28); ``adl`` inserts ADL after the blocks of ``_ADL_AFTER``."""

    def _trunk(self, large_feature_map: bool, adl: bool = False) -> None:
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = 64
        stages = [("layer1", 64, 3, 1), ("layer2", 128, 4, 2), ("layer3", 256, 6, 1 if large_feature_map else 2),
                  ("layer4", 512, 3, 1)]
        for name, planes, blocks, stride in stages:
            layers = _bottlenecks(inplanes, planes, blocks, stride)
            inplanes = planes * Bottleneck.expansion
            for position in reversed(_ADL_AFTER.get(name, ()) if adl else ()):
                layers.insert(position + 1, ADL())
            self.add_module(name, nn.Sequential(*layers))

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))


class ResNet50Cam(_ResNetTrunk):
    """ResNet50 (``cam``, ``adl``): trunk → ``layer4`` → GAP → ``fc``."""

    cam_layer = "layer4"

    def __init__(self, num_classes: int, architecture: str = "cam", large_feature_map: bool = False) -> None:
        super().__init__(num_classes)
        self._trunk(large_feature_map, adl=architecture == "adl")
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self._stem(x)))))
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def class_activation_map(self, features, targets):
        return fc_cam(self.fc, features, targets)


class ResNet50Acol(_AcolHeads, _ResNetTrunk):
    """ResNet50 ACoL: trunk → ``layer4`` → two heads; logits from ``classifier_A``."""

    cam_layer = "layer4"

    def __init__(self, num_classes: int, large_feature_map: bool = False, drop_threshold: float = 0.7) -> None:
        super().__init__(num_classes)
        self._trunk(large_feature_map)
        self._heads(2048, num_classes, drop_threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self._stem(x)))))
        return torch.flatten(self.avgpool(self.classifier_A(x)), 1)


class ResNet50Spg(_ResNetTrunk):
    """ResNet50 SPG: ``layer3`` split into ``SPG_A1`` (its first block) and ``SPG_A2`` (the rest), then ``layer4``
    → ``SPG_A4`` class maps → GAP; guidance heads ``SPG_B_*`` (on ``layer3``), ``SPG_C`` (training only)."""

    cam_layer = "layer4"

    def __init__(self, num_classes: int, large_feature_map: bool = False) -> None:
        super().__init__(num_classes)
        self._trunk(large_feature_map)
        layer3 = list(self.layer3)
        del self.layer3
        self.SPG_A1, self.SPG_A2 = nn.Sequential(*layer3[:1]), nn.Sequential(*layer3[1:])
        self.SPG_A4 = nn.Conv2d(2048, num_classes, 1)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.SPG_B_1a = nn.Sequential(*_conv_relu(1024, 1024))
        self.SPG_B_2a = nn.Sequential(*_conv_relu(1024, 1024))
        self.SPG_B_shared = _guidance(1024, 1024)
        self.SPG_C = _guidance(2048, 512)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.SPG_A2(self.SPG_A1(self.layer2(self.layer1(self._stem(x))))))
        return torch.flatten(self.avgpool(self.SPG_A4(x)), 1)

    def class_activation_map(self, features, targets):
        return class_map_cam(self.SPG_A4, features, targets)


# --- InceptionV3 ---------------------------------------------------------------------------------------------
class InceptionB(nn.Module):
    """The reference's ``Mixed_6a``: torchvision's InceptionB at stride 1 with padding 1 (no downsampling)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, kernel_size=3, stride=1, padding=1)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        double = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), double, F.max_pool2d(x, 3, stride=1, padding=1)], 1)


class _InceptionTrunk(WsolevalModel):
    """InceptionV3 to ``Mixed_6e`` (768 channels) with the reference's paddings: 14×14 maps for a 224 input;
    ``large_feature_map`` drops the pool after ``Mixed_5d`` (28×28). ``adl`` adds ``ADL_5d`` and ``ADL_6e``."""

    def _trunk(self, large_feature_map: bool, adl: bool = False) -> None:
        self.large_feature_map = large_feature_map
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2, padding=1)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        identity = ADL if adl else nn.Identity
        self.ADL_5d, self.ADL_6e = identity(), identity()

    def _to_6e(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2, padding=1, ceil_mode=True)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2, padding=1, ceil_mode=True)
        x = self.ADL_5d(self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x))))
        if not self.large_feature_map:
            x = F.max_pool2d(x, 3, stride=2, ceil_mode=True)
        x = self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(self.Mixed_6a(x))))
        return self.ADL_6e(self.Mixed_6e(x))


class InceptionV3Cam(_InceptionTrunk):
    """InceptionV3 (``cam``, ``adl``, ``spg``): trunk → ``SPG_A3_1b`` → ``SPG_A3_2b`` (3×3, 1024) → ``SPG_A4`` class
    maps → GAP. ``adl`` adds ``ADL_A3_2b``; ``spg`` the guidance heads ``SPG_B_*`` and ``SPG_C`` (training only)."""

    cam_layer = "SPG_A3_2b"

    def __init__(self, num_classes: int, architecture: str = "cam", large_feature_map: bool = False) -> None:
        super().__init__(num_classes)
        self._trunk(large_feature_map, adl=architecture == "adl")
        self.SPG_A3_1b = nn.Sequential(*_conv_relu(768, 1024))
        self.SPG_A3_2b = nn.Sequential(*_conv_relu(1024, 1024))
        self.ADL_A3_2b = ADL() if architecture == "adl" else nn.Identity()
        self.SPG_A4 = nn.Conv2d(1024, num_classes, 1)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        if architecture == "spg":
            self.SPG_B_1a = nn.Sequential(*_conv_relu(288, 512))
            self.SPG_B_2a = nn.Sequential(*_conv_relu(768, 512))
            self.SPG_B_shared = _guidance(512, 512)
            self.SPG_C = _guidance(1024, 512)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ADL_A3_2b(self.SPG_A3_2b(self.SPG_A3_1b(self._to_6e(x))))  # dropout: training only
        return torch.flatten(self.avgpool(self.SPG_A4(x)), 1)

    def class_activation_map(self, features, targets):
        return class_map_cam(self.SPG_A4, features, targets)


class InceptionV3Acol(_AcolHeads, _InceptionTrunk):
    """InceptionV3 ACoL: trunk → ``Mixed_6e`` → two heads; logits from ``classifier_A``."""

    cam_layer = "Mixed_6e"

    def __init__(self, num_classes: int, large_feature_map: bool = False, drop_threshold: float = 0.7) -> None:
        super().__init__(num_classes)
        self._trunk(large_feature_map)
        self._heads(768, num_classes, drop_threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.avgpool(self.classifier_A(self._to_6e(x))), 1)


def _vgg16(architecture: str, num_classes: int, large_feature_map: bool, drop_threshold: float) -> WsolevalModel:
    if architecture == "acol":
        return VGG16Acol(num_classes, large_feature_map, drop_threshold)
    if architecture == "spg":
        return VGG16Spg(num_classes, large_feature_map)
    return VGG16Cam(num_classes, architecture, large_feature_map)


def _resnet50(architecture: str, num_classes: int, large_feature_map: bool, drop_threshold: float) -> WsolevalModel:
    if architecture == "acol":
        return ResNet50Acol(num_classes, large_feature_map, drop_threshold)
    if architecture == "spg":
        return ResNet50Spg(num_classes, large_feature_map)
    return ResNet50Cam(num_classes, architecture, large_feature_map)


def _inception_v3(architecture: str, num_classes: int, large_feature_map: bool, drop_threshold: float):
    if architecture == "acol":
        return InceptionV3Acol(num_classes, large_feature_map, drop_threshold)
    return InceptionV3Cam(num_classes, architecture, large_feature_map)


BACKBONES: dict[str, Callable[[str, int, bool, float], WsolevalModel]] = {
    "wsoleval_vgg16": _vgg16,
    "wsoleval_resnet50": _resnet50,
    "wsoleval_inception_v3": _inception_v3,
}


def _initialize(module: nn.Module) -> None:
    """Random weights for a network built without a checkpoint (tests, demos): Xavier-uniform convolutions, N(0,
    0.01) linear layers, zero biases, unit batch norm (the reference's ``initialize_weights``, ``xavier`` mode)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def build_wsoleval(
    name: str,
    architecture: str = "cam",
    num_classes: int = 1000,
    large_feature_map: bool = False,
    acol_drop_threshold: float = 0.7,
    initialize: bool = True,
) -> WsolevalModel:
    """The wsolevaluation network ``name`` (:data:`BACKBONES`) of ``architecture`` (:data:`ARCHITECTURES`), in eval
    mode; ``initialize=False`` skips the random initialisation (a checkpoint is assigned next)."""
    if name not in BACKBONES:
        raise WsolError(f"unknown wsolevaluation model {name!r}; valid: {', '.join(BACKBONES)}")
    if architecture not in ARCHITECTURES:
        raise WsolError(f"model.architecture must be one of {', '.join(ARCHITECTURES)} (HaS, CutMix: cam), "
                        f"got {architecture!r}")
    model = BACKBONES[name](architecture, int(num_classes), bool(large_feature_map), float(acol_drop_threshold))
    if initialize:
        _initialize(model)
    return model.eval()


def checkpoint_classes(state: dict[str, torch.Tensor]) -> int | None:
    """The class count of a wsolevaluation state dict (its classifier's first dimension), if it has a classifier."""
    for key in _CLASSIFIER_KEYS:
        if key in state:
            return int(state[key].shape[0])
    return None


def fitting_architectures(state: dict[str, torch.Tensor]) -> list[str]:
    """Every ``model=… model.architecture=… [model.large_feature_map=true]`` whose keys and shapes are exactly
    ``state``'s (built on the meta device: no memory, milliseconds)."""
    num_classes = checkpoint_classes(state) or 1000
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    fits = []
    for name in BACKBONES:
        for architecture in ARCHITECTURES:
            found = []
            for large in (False, True):
                with torch.device("meta"):
                    model = BACKBONES[name](architecture, num_classes, large, 0.7)
                if {k: tuple(v.shape) for k, v in model.state_dict().items()} == shapes:
                    found.append(large)
            if found:
                large = "" if len(found) == 2 else f" model.large_feature_map={str(found[0]).lower()}"
                fits.append(f"model={name} model.architecture={architecture}{large}")
    return fits
