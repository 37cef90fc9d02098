"""Score-CAM and its smoothed and integrated variants: channel weights from masked-input scores.

Each activation map ``A_k`` becomes a mask ``H_k`` (bilinear upsampling to the input size, then
min-max to ``[0, 1]``), the input is masked, ``X ∘ H_k``, and the class score of the masked input
weights the channel: map ``ReLU(Σ_k w_k A_k)``.

- Score-CAM — Wang et al., CVPR-W 2020: ``w_k = softmax(f(X ∘ H_k))_c`` (the authors' code).
- SS-CAM — Wang, Naidu et al., 2020: ``w_k = 1/N Σ_i softmax(f(X ∘ (H_k + ε_i)))_c``,
  ``ε_i ~ N(0, σ²)`` (torchcam's defaults N = 35, σ = 2).
- IS-CAM — Naidu et al., 2020: ``w_k = 1/N Σ_{i=1..N} softmax(f(X ∘ (i/N) H_k))_c``, the
  Riemann sum of the score along the straight path from the empty to the full mask (N = 10).

``weighting="channel_softmax"`` gives pytorch-grad-cam's and torchcam's convention instead: the
target logits of the masked inputs, softmax-normalised over the channels. ``mask_order`` and
``align_corners`` choose how masks are made (:func:`~wsol.cams.perturb.activation_masks`).
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch

from ..errors import WsolError
from ..schema import Range
from . import METHODS
from .core import CamMethod, LayerCapture, seeded_noise, target_scores
from .perturb import MASK_ORDERS, activation_masks, active_channels, chunk_size, chunked

__all__ = ["ScoreCAM", "SSCAM", "ISCAM"]

WEIGHTINGS = ("probability", "channel_softmax")


class _MaskedScores(CamMethod):
    """Shared engine: ``w_k = mean_i score(X ∘ perturb_i(H_k))`` over ``num_samples`` perturbations."""

    needs_grad = False
    num_samples = 1

    def __init__(
        self,
        model,
        layer,
        *,
        weighting: Literal["probability", "channel_softmax"] = "probability",
        mask_order: Literal["upsample_first", "normalize_first"] = "upsample_first",
        align_corners: bool = False,
        memory_budget_mb: Annotated[float, Range(0, low_open=True)] = 1024,
        **kwargs,
    ) -> None:
        super().__init__(model, layer, **kwargs)
        if weighting not in WEIGHTINGS:
            raise WsolError(f"method.weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")
        if mask_order not in MASK_ORDERS:
            raise WsolError(f"method.mask_order must be one of {', '.join(MASK_ORDERS)}, got {mask_order!r}")
        self.weighting, self.mask_order, self.memory_budget_mb = weighting, mask_order, memory_budget_mb
        self.align_corners = bool(align_corners)

    def perturb(self, masks: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        """The masks of sample indices ``sample`` ``[m]``; Score-CAM uses them unchanged."""
        return masks

    def channel_weights(self, x: LayerCapture) -> torch.Tensor:
        activations, images = x.activations, x.images
        batch, channels = activations.shape[:2]
        if self.weighting == "probability":
            needed = active_channels(activations)
        else:
            needed = torch.ones(batch, channels, dtype=torch.bool, device=activations.device)
        pairs = needed.nonzero()  # [P, 2]: (image, channel)
        n = self.num_samples
        scores = torch.zeros(len(pairs) * n, device=activations.device)
        chunk = chunk_size(self.model, images, self.memory_budget_mb)
        kind = "probability" if self.weighting == "probability" else "logit"
        for index in chunked(len(scores), chunk, activations.device):
            b, k = pairs[index // n].unbind(1)
            masks = activation_masks(activations[b, k], images.shape[-2:], self.mask_order, self.align_corners)
            masks = self.perturb(masks, index % n)
            logits = self.model(images[b] * masks)
            scores[index] = target_scores(logits, x.targets[b], kind).float()
        weights = torch.zeros(batch, channels, device=activations.device)
        weights[needed] = scores.view(-1, n).mean(1)
        if self.weighting == "channel_softmax":
            weights = weights.softmax(1)
        return weights.to(activations.dtype)


@METHODS.register("scorecam")
class ScoreCAM(_MaskedScores):
    pass


@METHODS.register("sscam")
class SSCAM(_MaskedScores):
    """SS-CAM: noise field ``ε_i`` (one per sample, drawn on the CPU from ``seed``) added to every mask."""

    def __init__(self, model, layer, *, num_samples: Annotated[int, Range(1)] = 35,
                 std: Annotated[float, Range(0)] = 2.0, **kwargs) -> None:
        super().__init__(model, layer, **kwargs)
        self.num_samples, self.std = int(num_samples), float(std)
        self._noise: torch.Tensor | None = None

    def perturb(self, masks, sample):
        size = (self.num_samples, 1, *masks.shape[-2:])
        if self._noise is None or self._noise.shape != size or self._noise.device != masks.device:
            self._noise = seeded_noise(size, self.std, self.seed, masks.device)
        return masks + self._noise[sample]


@METHODS.register("iscam")
class ISCAM(_MaskedScores):
    """IS-CAM: masks scaled by ``i/N``; ``path="cumulative"`` uses torchcam's ``Σ_{j≤i} j/N`` instead."""

    def __init__(self, model, layer, *, num_samples: Annotated[int, Range(1)] = 10,
                 path: Literal["linear", "cumulative"] = "linear", **kwargs) -> None:
        super().__init__(model, layer, **kwargs)
        if path not in ("linear", "cumulative"):
            raise WsolError(f"method.path must be linear or cumulative, got {path!r}")
        self.num_samples, self.path = int(num_samples), path

    def perturb(self, masks, sample):
        step = (sample + 1).to(masks.dtype)
        scale = step / self.num_samples if self.path == "linear" else step * (step + 1) / (2 * self.num_samples)
        return masks * scale[:, None, None, None]
