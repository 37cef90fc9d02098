"""torchvision, imported without TorchDynamo.

torchvision's ``ops.roi_align`` wraps its fallback in ``torch.compile`` only on its first call, so that eager-mode
users do not import TorchDynamo (pytorch/vision#8436). Yet the same module runs
``from torch._dynamo.utils import is_compile_supported`` when it is imported, and that one line imports
TorchDynamo and sympy: about 0.9 s of the 1.0 s ``import torchvision`` takes on a 2-core CPU (torch 2.14,
torchvision 0.29), paid by every wsol process although nothing in an evaluation compiles.

:func:`import_torchvision` imports torchvision while ``sys.modules`` holds a stand-in for ``torch._dynamo.utils``.
The stand-in's ``is_compile_supported`` imports the real function when it is first called (``roi_align`` calls it
only where torchvision's compiled operators are missing) and returns the real result. Any other name asked of the
stand-in is taken from the real module, imported then, so a torchvision that needs more of it gets the real thing.
The stand-in is gone from ``sys.modules`` once the import returns: a later ``import torch._dynamo`` (``speed.compile``,
the user's code) imports the real modules as usual.
"""

from __future__ import annotations

import importlib
import sys
import types

import torch  # noqa: F401 - imported before the stand-in is registered, so that it covers torchvision alone

__all__ = ["import_torchvision"]

DYNAMO_UTILS = "torch._dynamo.utils"


def _drop_stand_in() -> None:
    if getattr(sys.modules.get(DYNAMO_UTILS), "__wsol_stand_in__", False):
        del sys.modules[DYNAMO_UTILS]


def _real_dynamo_utils() -> types.ModuleType:
    """The real ``torch._dynamo.utils``, imported now if need be (the stand-in, if still registered, is dropped)."""
    _drop_stand_in()
    return importlib.import_module(DYNAMO_UTILS)


def is_compile_supported(*args, **kwargs):
    """``torch._dynamo.utils.is_compile_supported``, imported on the first call."""
    return _real_dynamo_utils().is_compile_supported(*args, **kwargs)


def _stand_in() -> types.ModuleType:
    module = types.ModuleType(DYNAMO_UTILS, "Stands in for torch._dynamo.utils while torchvision is imported.")
    module.__wsol_stand_in__ = True
    module.is_compile_supported = is_compile_supported

    def __getattr__(name: str):
        if name.startswith("__"):  # the import system's probes (__path__…): answered without importing anything
            raise AttributeError(name)
        return getattr(_real_dynamo_utils(), name)

    module.__getattr__ = __getattr__
    return module


def import_torchvision() -> types.ModuleType:
    """``import torchvision``, without importing TorchDynamo when that is not already imported."""
    if "torchvision" in sys.modules or DYNAMO_UTILS in sys.modules:
        return importlib.import_module("torchvision")
    sys.modules[DYNAMO_UTILS] = _stand_in()
    try:
        return importlib.import_module("torchvision")
    finally:
        _drop_stand_in()
