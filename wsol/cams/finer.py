"""Finer-CAM — Zhang et al., CVPR 2025: explain what sets the target class apart from the classes the model
confuses it with.

The score differentiated is not the target's logit ``S_c`` but a contrast with its ``references`` nearest
classes ``d_1 … d_T`` (the classes whose logits are closest to ``S_c``, the target excluded):

- ``weighting="probability"`` (the authors' code, pytorch-grad-cam's ``FinerWeightedTarget``):
  ``S' = Σ_t p_t (S_c − α S_{d_t}) / (Σ_t p_t + 10⁻⁹)``, ``p`` the softmax probabilities (differentiated too);
- ``weighting="mean"`` (torchcam's ``FinerCAM``, whose ``gamma`` is ``α``): ``S' = S_c − α · mean_t S_{d_t}``.

The map is then the ``base`` method's (``gradcam``, ``gradcampp`` or ``layercam``) with ``g = ∂S'/∂A``;
``α = 0`` gives the base method itself.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch

from ..errors import WsolError
from ..schema import Range
from . import METHODS
from .core import CamMethod, LayerCapture
from .gradcam import BASES, base_weights

__all__ = ["FinerCAM", "finer_objective", "nearest_classes"]

WEIGHTINGS = ("probability", "mean")


def nearest_classes(logits: torch.Tensor, targets: torch.Tensor, count: int) -> torch.Tensor:
    """``[B, count]``: each row's classes with the logits closest to its target's (the target excluded)."""
    distance = (logits - logits.gather(1, targets[:, None])).abs()
    distance.scatter_(1, targets[:, None], float("inf"))
    return distance.topk(min(count, logits.shape[1] - 1), dim=1, largest=False).indices


def finer_objective(logits: torch.Tensor, targets: torch.Tensor, references: torch.Tensor, alpha: float,
                    weighting: str = "probability") -> torch.Tensor:
    """Finer-CAM's contrastive score ``S'`` ``[B]`` (see the module docstring)."""
    target = logits.gather(1, targets[:, None])[:, 0]
    others = logits.gather(1, references)
    if weighting == "mean":
        return target - alpha * others.mean(1)
    p = logits.softmax(1).gather(1, references)
    return (p * (target[:, None] - alpha * others)).sum(1) / (p.sum(1) + 1e-9)


@METHODS.register("finercam")
class FinerCAM(CamMethod):
    def __init__(self, model, layer, *, base: Literal["gradcam", "gradcampp", "layercam"] = "gradcam",
                 alpha: Annotated[float, Range(0)] = 1.0, references: Annotated[int, Range(1)] = 3,
                 weighting: Literal["probability", "mean"] = "probability", **kwargs) -> None:
        super().__init__(model, layer, **kwargs)
        if base not in BASES:
            raise WsolError(f"method.base must be one of {', '.join(BASES)}, got {base!r}")
        if weighting not in WEIGHTINGS:
            raise WsolError(f"method.weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")
        self.base, self.alpha, self.references, self.weighting = base, float(alpha), int(references), weighting

    def objective(self, logits, targets):
        targets = targets.to(logits.device)
        if logits.shape[1] < 2:
            raise WsolError("finercam needs a classifier with at least two classes")
        references = nearest_classes(logits.detach(), targets, self.references)
        return finer_objective(logits, targets, references, self.alpha, self.weighting)

    def channel_weights(self, x: LayerCapture) -> torch.Tensor:
        return base_weights(self.base, x.activations, x.gradients)
