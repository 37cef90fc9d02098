"""Models from outside wsol: timm's zoo (``model=timm``) and a user's own ``nn.Module`` (``model=custom``),
with the classifier-output checks both need.

A user's module is built with Hydra's ``instantiate`` from ``model.target`` (a dotted path, or
``path/to/file.py:builder`` for a file on disk) and ``model.kwargs``. A module that returns a dict, a
tuple or a dataclass names its logits with ``model.output``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from collections.abc import Mapping

import torch
from torch import nn

from ..errors import WsolError
from ..extras import require
from ..registry import close_matches

__all__ = ["build_custom", "build_timm", "check_logits", "select_output", "timm_normalization"]


def _one_line(error: BaseException) -> str:
    """The innermost cause of ``error``, on one line."""
    while error.__cause__ is not None:
        error = error.__cause__
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def _hydra_target(target: str):
    """``pkg.mod.attr`` or ``pkg.mod:attr`` → the dotted path Hydra locates; ``path/to/file.py:attr`` → the
    builder itself, the file loaded as a module with importlib (``sys.path`` and ``sys.modules`` untouched)."""
    if ":" not in target:
        return target
    module, attr = target.rsplit(":", 1)
    if not module.endswith(".py"):
        return f"{module}.{attr}"
    path = os.path.abspath(os.path.expanduser(module))
    if not os.path.isfile(path):
        raise WsolError(f"model.target: no file {module}")
    spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
    loaded = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(loaded)
    except Exception as e:  # noqa: BLE001 - the user's file failed: one line, not a traceback
        raise WsolError(f"cannot load model.target={target}: {_one_line(e)}") from None
    if not callable(getattr(loaded, attr, None)):
        raise WsolError(f"model.target: {module} has no callable {attr}")
    return getattr(loaded, attr)


def build_custom(target: str | None, kwargs: Mapping | None = None) -> nn.Module:
    """``hydra.utils.instantiate({"_target_": target, **kwargs})``, which must give an ``nn.Module``."""
    from hydra.utils import instantiate

    if not target:
        raise WsolError("model=custom needs model.target=package.module.builder (or path/to/file.py:builder)")
    builder = _hydra_target(target)
    try:
        if callable(builder):  # loaded from a file: its keyword arguments instantiated as Hydra would
            module = builder(**instantiate(dict(kwargs or {}), _convert_="all"))
        else:
            module = instantiate({"_target_": builder, "_convert_": "all", **dict(kwargs or {})})
    except Exception as e:  # noqa: BLE001 - the user's import or constructor failed: one line, not a traceback
        raise WsolError(f"cannot build model.target={target}: {_one_line(e)}") from None
    if not isinstance(module, nn.Module):
        raise WsolError(f"model.target={target} gave a {type(module).__name__}, not a torch.nn.Module")
    return module


def build_timm(name: str, pretrained: bool, num_classes: int | None, kwargs: Mapping | None = None) -> nn.Module:
    """``timm.create_model(name, pretrained, num_classes=…, **kwargs)`` with one-line errors."""
    timm = require("timm", "timm", "model=timm")
    if not timm.is_model(name):
        hint = close_matches(name, timm.list_models())
        raise WsolError(f"unknown timm model {name!r}; did you mean: {', '.join(hint) or 'see timm.list_models()'}")
    options = {**({"num_classes": num_classes} if num_classes else {}), **dict(kwargs or {})}
    try:
        return timm.create_model(name, pretrained=pretrained, **options)
    except Exception as e:  # noqa: BLE001 - a download or a constructor argument failed
        if pretrained:
            raise WsolError(
                f"cannot fetch timm's pretrained weights of {name} ({_one_line(e)}); run once online (timm keeps them "
                f"in the Hugging Face cache; HF_HUB_OFFLINE=1 then skips the network), or pass "
                f"model.pretrained=false, or model.checkpoint=FILE"
            ) from None
        raise WsolError(f"cannot build timm model {name} with {options}: {_one_line(e)}") from None


def timm_normalization(module: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The input mean and std of a timm model's pretrained configuration (``resolve_model_data_config``)."""
    from timm.data import resolve_model_data_config

    config = resolve_model_data_config(module)
    return tuple(float(v) for v in config["mean"]), tuple(float(v) for v in config["std"])


def _pick(output, key: str):
    """``output[key]`` of a mapping, ``output[int(key)]`` of a sequence, ``output.key`` of an object."""
    if isinstance(output, Mapping):
        if key not in output:
            raise WsolError(f"model.output={key}: the model returns a dict with keys {', '.join(map(str, output))}")
        return output[key]
    if isinstance(output, tuple | list):
        if not key.lstrip("-").isdigit() or not -len(output) <= int(key) < len(output):
            raise WsolError(f"model.output={key}: the model returns a {len(output)}-tuple; give an index")
        return output[int(key)]
    if not hasattr(output, key):
        raise WsolError(f"model.output={key}: the model's {type(output).__name__} output has no attribute {key}")
    return getattr(output, key)


def select_output(module: nn.Module, key: str) -> None:
    """Make ``module(x)`` return ``module(x)``'s entry ``key`` (a forward hook on the module itself: its layer
    names stay as they are)."""
    module.register_forward_hook(lambda _m, _inputs, output: _pick(output, key))


def _describe(output) -> str:
    if isinstance(output, Mapping):
        return f"a dict (keys: {', '.join(map(str, output))}); set model.output to the logits' key"
    if isinstance(output, tuple | list):
        return f"a {len(output)}-tuple; set model.output to the logits' index"
    if dataclasses.is_dataclass(output) or hasattr(output, "__dict__"):
        fields = [f for f in vars(output) if not f.startswith("_")] if hasattr(output, "__dict__") else []
        return f"a {type(output).__name__} ({', '.join(fields)}); set model.output to the logits' attribute"
    if isinstance(output, torch.Tensor):
        return f"a tensor of shape {tuple(output.shape)}"
    return f"a {type(output).__name__}"


def check_logits(module: nn.Module, input_size: int = 224, num_classes: int | None = None) -> int:
    """The class count of ``module``'s logits, from one forward of a zero image; one line when the forward fails
    or gives anything but ``[B, num_classes]``."""
    device = next(module.parameters(), torch.zeros(())).device
    try:
        with torch.no_grad():
            output = module.eval()(torch.zeros(2, 3, input_size, input_size, device=device))
    except WsolError:
        raise
    except Exception as e:  # noqa: BLE001 - the user's forward failed
        size = f"2×3×{input_size}×{input_size}"
        raise WsolError(f"the model's forward of a {size} input failed: {_one_line(e)}") from None
    if not (isinstance(output, torch.Tensor) and output.ndim == 2 and output.shape[0] == 2):
        raise WsolError(f"the model's forward gives {_describe(output)}, not [B, num_classes] logits")
    if num_classes is not None and output.shape[1] != num_classes:
        raise WsolError(f"the model's forward gives {output.shape[1]} classes, but model.num_classes={num_classes}")
    return int(output.shape[1])
