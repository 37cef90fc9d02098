"""CAM methods: a shared core (:mod:`wsol.cams.core`) and one small class per method."""

from ..registry import Registry

METHODS: Registry = Registry("method")

from . import cam, gradcam  # noqa: E402,F401  (register the methods)
from .core import CamMethod, CamOutput  # noqa: E402

__all__ = ["METHODS", "CamMethod", "CamOutput", "build_method"]


def build_method(name: str, model, layer: str, **kwargs) -> CamMethod:
    """The method registered under ``name``, hooked on ``layer`` of ``model``."""
    return METHODS.get(name)(model, layer, **kwargs)
