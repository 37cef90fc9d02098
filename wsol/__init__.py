"""wsol: weakly-supervised object localization benchmark.

From Python (docs/api.md): ``wsol.cams.build`` (a CAM method on any model), ``wsol.metrics.WSOLMetrics`` and
``wsol.metrics.MaxBoxAccV2`` (the metrics as accumulators), ``wsol.evaluate`` (a whole evaluation of a model in
memory) and ``wsol.datasets``. They load on first use, so ``import wsol`` stays light.
"""

import importlib

from .version import __version__

__all__ = ["__version__", "cams", "datasets", "evaluate", "metrics", "models"]


def __getattr__(name: str):
    if name in ("cams", "datasets", "metrics", "models"):
        return importlib.import_module(f"{__name__}.{name}")
    if name == "evaluate":
        from .api import evaluate

        return evaluate
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
