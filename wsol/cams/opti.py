"""Opti-CAM — Zhang et al., "Opti-CAM: optimizing saliency maps for interpretability", CVIU 2024
(arXiv 2301.07002), as the authors' code computes it.

The channel weights are optimised per image: ``α = softmax(u)`` over the channels of ``ReLU(A)``, the saliency
map ``S = Σ_k α_k A_k`` is bilinearly upsampled to the input and min-max normalised, and ``u`` (started at 0.5)
maximises the target's logit on the masked image, the mask applied to the pixels before the model's input
normalisation: ``loss = Σ_b (S_c(X_b) − S_c(norm(S_b ⊙ pixels_b)))`` (``loss="plain"``; ``"norm"``: its absolute
value) by ``steps`` Adam steps of learning rate ``lr`` (the authors' demo: 50 and 0.1). Adam acts element-wise,
so the images of a batch are optimised together and independently; the authors' early stop, which compares the
whole batch's loss, is left out for that reason. The map is ``S`` at the layer's resolution after the last step.
The gradients go to ``u`` alone (the model's parameters are not touched).
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
import torch.nn.functional as F

from ..errors import WsolError
from ..schema import Range
from . import METHODS
from .core import CamMethod, LayerCapture, ReadsPixels, target_scores

__all__ = ["OptiCAM"]

LOSSES = ("plain", "norm")


@METHODS.register("opticam")
class OptiCAM(ReadsPixels, CamMethod):
    needs_grad, weighs_activations = False, False

    def __init__(self, model, layer, *, steps: Annotated[int, Range(0)] = 50,
                 lr: Annotated[float, Range(0, low_open=True)] = 0.1, loss: Literal["plain", "norm"] = "plain",
                 mean: list[float] | None = None, std: list[float] | None = None, **kwargs) -> None:
        super().__init__(model, layer, **kwargs)
        if loss not in LOSSES:
            raise WsolError(f"method.loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        self.steps, self.lr, self.loss = int(steps), float(lr), loss
        self._set_normalization(mean, std)

    def compute(self, x: LayerCapture) -> torch.Tensor:
        features = x.activations.float().clamp_min(0)
        mean, std = self.statistics(x.images.device)
        pixels = x.images.float() * std + mean
        clean = target_scores(x.logits, x.targets).float()
        u = torch.full(features.shape[:2], 0.5, device=features.device, requires_grad=True)
        optimiser = torch.optim.Adam([u], lr=self.lr)
        for _ in range(self.steps):
            with torch.enable_grad():
                mask = self.saliency(u, features, pixels.shape[-2:])
                scores = target_scores(self.model((mask[:, None] * pixels - mean) / std), x.targets).float()
                gap = clean - scores
                loss = (gap if self.loss == "plain" else gap.abs()).sum()
                (u.grad,) = torch.autograd.grad(loss, [u])
            optimiser.step()
        with torch.no_grad():
            return torch.einsum("bc,bchw->bhw", u.softmax(1), features).to(x.activations.dtype)

    @staticmethod
    def saliency(u: torch.Tensor, features: torch.Tensor, size) -> torch.Tensor:
        """``[B, H, W]``: the min-max normalised, upsampled ``Σ_k softmax(u)_k A_k``."""
        maps = torch.einsum("bc,bchw->bhw", u.softmax(1), features)
        up = F.interpolate(maps[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
        lo = up.flatten(1).amin(1)[:, None, None]
        span = up.flatten(1).amax(1)[:, None, None] - lo
        return (up - lo) / torch.where(span > 0, span, torch.ones_like(span))
