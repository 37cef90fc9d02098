"""CAM methods: a shared core (:mod:`wsol.cams.core`) and one small class per method."""

import inspect
from collections.abc import Sequence

from ..errors import WsolError
from ..registry import Registry

METHODS: Registry = Registry("method")

from . import ablation, cam, eigen, gradcam, score  # noqa: E402,F401  (register the methods)
from .core import CamMethod, CamOutput  # noqa: E402

__all__ = ["METHODS", "CamMethod", "CamOutput", "build_method", "method_options"]


def method_options(name: str) -> list[str]:
    """The keyword options the method ``name`` accepts (its class's and the shared core's)."""
    options: list[str] = []
    for cls in METHODS.get(name).__mro__:
        if "__init__" in vars(cls):
            params = inspect.signature(cls.__init__).parameters.values()
            options += [p.name for p in params if p.kind is p.KEYWORD_ONLY]
    return sorted(set(options))


def build_method(name: str, model, layer: str | Sequence[str], **kwargs) -> CamMethod:
    """The method registered under ``name``, hooked on ``layer`` (or several layers) of ``model``."""
    allowed = method_options(name)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise WsolError(f"method {name} has no option {', '.join(unknown)}; its options: {', '.join(allowed)}")
    return METHODS.get(name)(model, layer, **kwargs)
