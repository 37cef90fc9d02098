"""Layer outputs as the ``[B, C, h, w]`` maps every method reads, whatever the layer's layout.

- ``nchw``: convolutional feature maps, read as they are;
- ``nhwc``: channels-last stages (Swin, timm's channels-last models), permuted;
- ``tokens``: a transformer's ``[B, N, C]`` sequence (ViT, DeiT, BEiT): the prefix tokens (class,
  distillation, registers) are set aside and the patch tokens laid out on their ``h × w`` grid.

A :class:`Layout` splits an output into its map and a function that puts a map of the same shape back
into the output's layout (with the prefix tokens it set aside), so a hook can hand downstream layers
a tensor computed from the map: gradients reach the map, and a method that edits the map (Ablation-
CAM) edits what the rest of the network sees. ``auto`` reads the layout off the output's shape and the
model's structure (:func:`resolve_layout`); ``model.layout`` and ``model.tokens`` override it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import WsolError

__all__ = ["LAYOUTS", "Layout", "LayoutRequest", "NCHW", "prefix_tokens", "resolve_layout", "token_grid"]

LAYOUTS = ("auto", "nchw", "nhwc", "tokens")
_MAX_PREFIX = 16  # the most prefix tokens inferred from a token count (class + distillation + registers)


@dataclass(frozen=True)
class LayoutRequest:
    """What the config asks for: ``kind`` one of :data:`LAYOUTS`; for tokens, the prefix count and the grid
    (``None``: from the model, or inferred from the token count and the input's aspect ratio)."""

    kind: str = "auto"
    prefix: int | None = None
    grid: tuple[int, int] | None = None


def token_grid(tokens: int, input_hw: tuple[int, int], prefix: int | None, grid=None) -> tuple[int, int, int]:
    """``(prefix, h, w)`` laying ``tokens`` tokens out as ``prefix`` extra tokens and an ``h × w`` grid of the
    input's aspect ratio; ``prefix=None`` takes the smallest count that gives such a grid."""
    height, width = input_hw
    candidates = [prefix] if prefix is not None else range(min(_MAX_PREFIX, tokens - 1) + 1)
    for p in candidates:
        patches = tokens - p
        if grid is not None:
            h, w = grid
        else:
            h = max(1, round(math.sqrt(patches * height / width)))
            w = patches // h
        if p >= 0 and h * w == patches and patches > 0:
            return p, h, w
    given = f"{prefix} prefix tokens" if prefix is not None else "any prefix count up to 16"
    raise WsolError(f"cannot lay {tokens} tokens out as {given} and a grid for a {height}×{width} input; "
                    f"set model.tokens.prefix and model.tokens.grid=[h,w]")


@dataclass(frozen=True)
class Layout:
    """How one layer's output holds its ``[B, C, h, w]`` map."""

    kind: str  # nchw | nhwc | tokens
    prefix: int | None = None  # tokens: extra tokens before the patch grid (None: inferred per output)
    grid: tuple[int, int] | None = None  # tokens: (h, w); None: from the token count and the input's aspect

    def split(self, output: torch.Tensor, input_hw: tuple[int, int]):
        """``(map [B, C, h, w], rebuild)``: ``rebuild(m)`` puts a map ``m`` of the same shape back into the
        output's layout, so what the network sees next is computed from ``m``."""
        expected = 3 if self.kind == "tokens" else 4
        if not isinstance(output, torch.Tensor) or output.ndim != expected:
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
            layout = {"nchw": "(B, C, H, W)", "nhwc": "(B, H, W, C)", "tokens": "(B, tokens, C)"}[self.kind]
            raise WsolError(f"the target layer must output a {layout} tensor for layout {self.kind}, got {shape}")
        if self.kind == "nchw":
            return output, _same
        if self.kind == "nhwc":
            return output.permute(0, 3, 1, 2), _to_channels_last
        batch, tokens, channels = output.shape
        prefix, h, w = token_grid(tokens, input_hw, self.prefix, self.grid)
        head = output[:, :prefix]
        spatial = output[:, prefix:].transpose(1, 2).reshape(batch, channels, h, w)

        def rebuild(m: torch.Tensor) -> torch.Tensor:
            return torch.cat([head, m.flatten(2).transpose(1, 2)], 1)

        return spatial, rebuild


def _same(m: torch.Tensor) -> torch.Tensor:
    return m


def _to_channels_last(m: torch.Tensor) -> torch.Tensor:
    return m.permute(0, 2, 3, 1)


NCHW = Layout("nchw")


def prefix_tokens(model: nn.Module) -> int | None:
    """The model's own count of tokens before the patch grid: timm's ``num_prefix_tokens`` (class, distillation,
    registers), one for torchvision's ``VisionTransformer`` (its ``class_token``); ``None`` when it states none."""
    count = getattr(model, "num_prefix_tokens", None)
    if isinstance(count, int):
        return count
    if isinstance(getattr(model, "class_token", None), torch.Tensor):
        return 1
    return None


def _part_width(m: nn.Module) -> tuple[int, bool] | None:
    """``(channel count, along the last dimension)`` a module produces: convolutions and batch or group norms
    along dimension 1, linear layers and layer norms along the last; ``None`` for any other module."""
    if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
        return m.out_channels, False
    if isinstance(m, nn.BatchNorm2d):
        return m.num_features, False
    if isinstance(m, nn.GroupNorm):
        return m.num_channels, False
    if isinstance(m, nn.Linear):
        return m.out_features, True
    if isinstance(m, nn.LayerNorm) and m.normalized_shape:
        return m.normalized_shape[-1], True
    return None


def channels_last(model: nn.Module, layer: nn.Module, shape: tuple[int, ...]) -> bool:
    """Whether a 4-D output ``shape`` of ``layer`` is ``(B, H, W, C)``: the layer's last part with a channel count
    is a linear layer or a layer norm whose count is the last dimension and not the second; for a layer
    without such parts (an activation, a permutation), some layer norm of ``model`` normalises the last
    dimension's count and no convolution produces the second's."""
    own = [w for m in layer.modules() if (w := _part_width(m)) is not None]
    if own:
        width, along_last = own[-1]
        return along_last and shape[-1] == width and shape[1] != width
    norms = {m.normalized_shape[-1] for m in model.modules() if isinstance(m, nn.LayerNorm) and m.normalized_shape}
    convs = {w for m in model.modules() if (p := _part_width(m)) is not None and not p[1] for w in p[:1]}
    return shape[-1] in norms and shape[1] not in convs


def resolve_layout(model: nn.Module, layer: nn.Module, output, request: LayoutRequest = LayoutRequest()) -> Layout:
    """The layout of ``layer``'s ``output``: the one requested, or for ``auto`` read off its shape (3-D: tokens,
    with the model's prefix count; 4-D: channels-last when :func:`channels_last`, else NCHW)."""
    if request.kind not in LAYOUTS:
        raise WsolError(f"model.layout must be one of {', '.join(LAYOUTS)}, got {request.kind!r}")
    kind = request.kind
    if kind == "auto":
        ndim = output.ndim if isinstance(output, torch.Tensor) else None
        if ndim == 3:
            kind = "tokens"
        elif ndim == 4:
            kind = "nhwc" if channels_last(model, layer, tuple(output.shape)) else "nchw"
        else:
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
            raise WsolError(f"the target layer outputs {shape}; CAM methods read (B, C, H, W), (B, H, W, C) or "
                            f"(B, tokens, C) outputs: choose another model.layer")
    if kind != "tokens":
        return Layout(kind)
    prefix = request.prefix if request.prefix is not None else prefix_tokens(model)
    return Layout("tokens", prefix, tuple(request.grid) if request.grid else None)


def layout_hook(layer_layout: Callable[[torch.Tensor], Layout], input_hw: tuple[int, int], store: dict,
                graph_from_here: bool = False):
    """A forward hook that records ``layer``'s map (``store["activations"]``, ``store["layout"]``) and hands the
    layers after it a copy rebuilt from that map.

    ``graph_from_here``: the forward runs without autograd up to this layer; here the map becomes a leaf that
    requires grad and autograd is switched on for the rest of the forward, so a backward to the map records
    nothing before it (the gradient is the same; the forward costs what inference costs up to the layer)."""

    def hook(_module: nn.Module, _inputs, output):
        layout = layer_layout(output)
        spatial, rebuild = layout.split(output, input_hw)
        if graph_from_here:
            torch.set_grad_enabled(True)  # restored by the caller's grad-mode block
            if not spatial.requires_grad:
                spatial = spatial.detach().requires_grad_(True)
        store["activations"], store["layout"] = spatial, layout
        return rebuild(spatial.clone())

    return hook
