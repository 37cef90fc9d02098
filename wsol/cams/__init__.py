"""CAM methods: a shared core (:mod:`wsol.cams.core`) and one small class per method."""

import inspect
from collections.abc import Sequence

from ..errors import WsolError
from ..registry import Registry

METHODS: Registry = Registry("method")

from . import (  # noqa: E402,F401
    ablation,
    activation,
    baselines,
    cam,
    eigen,
    finer,
    fullgrad,
    gradcam,
    group,
    legrad,
    opti,
    poly,
    recipro,
    refine,
    score,
)
from .core import CamMethod, CamOutput  # noqa: E402

__all__ = ["METHODS", "CamMethod", "CamOutput", "build", "build_method", "method_layers", "method_options"]


def method_options(name: str) -> list[str]:
    """The keyword options the method ``name`` accepts (its class's and the shared core's)."""
    options: list[str] = []
    for cls in METHODS.get(name).__mro__:
        if "__init__" in vars(cls):
            params = inspect.signature(cls.__init__).parameters.values()
            options += [p.name for p in params if p.kind is p.KEYWORD_ONLY]
    return sorted(set(options))


def method_layers(name: str, model, layer: str | Sequence[str], input_size: int = 224, **options) -> list[str]:
    """The layers method ``name`` hooks when ``layer`` is asked for (:meth:`CamMethod.target_layers`)."""
    layers = [layer] if isinstance(layer, str) else [str(n) for n in layer]
    return METHODS.get(name).target_layers(model, layers, input_size, **options)


def build_method(name: str, model, layer: str | Sequence[str], **kwargs) -> CamMethod:
    """The method registered under ``name``, hooked on ``layer`` (or several layers) of ``model``."""
    allowed = method_options(name)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise WsolError(f"method {name} has no option {', '.join(unknown)}; its options: {', '.join(allowed)}")
    return METHODS.get(name)(model, layer, **kwargs)


def build(name: str, model, layer: str | Sequence[str] | None = None, *, input_size: int = 224,
          **options) -> CamMethod:
    """The CAM method ``name`` on ``model`` (any classifier ``nn.Module`` returning logits), hooked on ``layer``:
    a dotted name of ``model.named_modules()``, a list of names (maps fused), or ``None`` for the model's last
    spatial layer before its pooling, as the CLI picks it (:func:`wsol.models.default_layer`, probed with one
    ``input_size`` image). ``options``: the method's own (:func:`method_options`).

    ``cam(images, targets=None)`` takes normalised images ``[B, 3, H, W]`` and gives a :class:`CamOutput`:
    ``maps [B, h, w]`` at the layer's resolution, ``logits``, ``targets``."""
    if layer is None:
        from ..models import default_layer

        layer = default_layer(model, input_size)
    return build_method(name, model, layer, **options)
