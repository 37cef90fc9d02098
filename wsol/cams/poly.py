"""Poly-CAM — Englebert, Cornu & De Vleeschouwer, "Poly-CAM: High resolution class activation map for
convolutional neural networks", Machine Vision and Applications 35, 2024 (arXiv 2204.13359).

A map at the resolution of an early layer, built from the deepest layer up. Each layer ``l`` gets a map
``M_l = ReLU(Σ_k w_k A_k)`` with masked-input channel weights; going from the deepest layer to the earliest,
the running map is upsampled to the next layer's size and multiplied by that layer's map, after the
layer's map is locally normalised to the coarser grid (LNorm: ``M / max(U(D(M)), 10⁻¹²)``, ``D`` the bilinear
resize to the coarser map's size and ``U`` back), so that the finer layer redistributes the coarse relevance
inside each coarse cell instead of rescaling it: ``P_L = M_L``, ``P_l = ReLU(LNorm(M_l) ⊙ U(P_{l+1}))``.

Channel weights, with ``H_k`` the activation map normalised by the authors' robust rule (below), upsampled
bilinearly to the input, and ``p(·)`` the target class's softmax probability:

- ``variant=plus`` (PCAM+): ``w_k = p(X ∘ H_k)`` (Score-CAM's);
- ``variant=minus`` (PCAM−): ``w_k = ReLU(p(X) − p(X ∘ (1 − H_k)))``;
- ``variant=plusminus`` (PCAM±, the default): ``w_k = ReLU(p(X ∘ H_k) + p(X) − p(X ∘ (1 − H_k)))``.

Conventions, as the authors' code (aenglebert/polycam, ``core.py`` and ``polycam.py``): the normalisation of
masks and of the final map is ``clip((x − q₀.₀₀₁) / max(q₀.₉₉₉, 10⁻¹²), 0, 1)`` with the 0.1 % and 99.9 %
quantiles of each map (it divides by the upper quantile, not by the range); the layers are the ends of the
resolution stages (``stages``, default 5, counted back from ``model.layer``, as :func:`wsol.models.stage_layers`
finds them; a list of layers is taken as given). The authors' layer search takes, for ResNets, the last layer
before each stride (``layer2.0.relu``, inside the next stage): pass such a list to reproduce it.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch

from ..errors import WsolError
from ..models import stage_layers
from ..schema import Range
from . import METHODS
from .core import CamMethod, CamOutput, LayerCapture, resize_maps, target_scores, weighted_sum
from .perturb import active_channels, chunk_size, chunked

__all__ = ["PolyCAM", "local_normalize", "robust_normalize"]

VARIANTS = ("plusminus", "plus", "minus")


def robust_normalize(maps: torch.Tensor, outliers: float = 0.001) -> torch.Tensor:
    """``clip((x − q_o) / max(q_{1−o}, 10⁻¹²), 0, 1)`` over the last two dimensions, ``q`` the quantiles of each
    map (linear interpolation, NumPy's ``percentile``): the Poly-CAM code's ``normalize``."""
    flat = maps.float().flatten(-2)
    ordered = flat.sort(-1).values  # torch.quantile refuses inputs above 16M elements
    low, high = (_quantile(ordered, q) for q in (outliers, 1 - outliers))
    return ((flat - low) / high.clamp_min(1e-12)).clamp(0, 1).view(maps.shape)


def _quantile(ordered: torch.Tensor, q: float) -> torch.Tensor:
    """The ``q`` quantile ``[..., 1]`` of rows sorted ascending, interpolated linearly between order statistics."""
    position = q * (ordered.shape[-1] - 1)
    below = int(position)
    above = min(below + 1, ordered.shape[-1] - 1)
    frac = position - below
    return ordered[..., below:below + 1] + frac * (ordered[..., above:above + 1] - ordered[..., below:below + 1])


def local_normalize(maps: torch.Tensor, coarse: tuple[int, int]) -> torch.Tensor:
    """LNorm: ``M / max(U(D(M)), 10⁻¹²)`` for maps ``[B, h, w]``, ``D`` the bilinear resize to ``coarse`` and
    ``U`` the resize back (half-pixel centres, no antialiasing, as ``F.interpolate``)."""
    local = resize_maps(resize_maps(maps, coarse), maps.shape[-2:])
    return maps / local.clamp_min(1e-12)


@METHODS.register("polycam")
class PolyCAM(CamMethod):
    needs_grad = False
    weighs_activations = False

    def __init__(self, model, layer, *, variant: Literal["plusminus", "plus", "minus"] = "plusminus",
                 stages: Annotated[int, Range(2)] = 5, lnorm: bool = True,
                 memory_budget_mb: Annotated[float, Range(0, low_open=True)] = 1024, **kwargs) -> None:
        if variant not in VARIANTS:
            raise WsolError(f"method.variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
        names = self.target_layers(model, [layer] if isinstance(layer, str) else list(layer), stages=stages)
        super().__init__(model, names, **kwargs)
        self.variant, self.lnorm, self.memory_budget_mb = variant, bool(lnorm), memory_budget_mb

    @classmethod
    def target_layers(cls, model, layers, input_size: int = 224, stages: int = 5, **options) -> list[str]:
        names = list(layers)
        if len(names) == 1:
            names = stage_layers(model, names[0], int(stages), input_size)
        return names

    def masked_probabilities(self, x: LayerCapture, normalized: torch.Tensor, needed: torch.Tensor,
                             inverted: bool = False) -> torch.Tensor:
        """``p(X ∘ H_k)`` (``inverted``: ``p(X ∘ (1 − H_k))``) ``[B, C]`` for the channels ``needed`` ``[B, C]``,
        0 elsewhere; ``H_k`` the normalised maps ``[B, C, h, w]`` upsampled to the input, a chunk at a time."""
        pairs = needed.nonzero()
        scores = torch.zeros(needed.shape, device=normalized.device)
        chunk = chunk_size(self.model, x.images, self.memory_budget_mb)
        for index in chunked(len(pairs), chunk, normalized.device):
            b, k = pairs[index].unbind(1)
            masks = resize_maps(normalized[b, k], x.images.shape[-2:])[:, None]
            masks = 1 - masks if inverted else masks
            logits = self.model(x.images[b] * masks.to(x.images.dtype))
            scores[b, k] = target_scores(logits, x.targets[b], "probability").float()
        return scores

    def channel_weights(self, x: LayerCapture) -> torch.Tensor:
        needed = active_channels(x.activations)  # an all-zero channel adds nothing, whatever its weight
        normalized = robust_normalize(x.activations)
        baseline = target_scores(x.logits, x.targets, "probability").float()[:, None]
        kept = self.masked_probabilities(x, normalized, needed) if self.variant != "minus" else 0
        removed = self.masked_probabilities(x, normalized, needed, inverted=True) if self.variant != "plus" else 0
        weights = {"plus": kept, "minus": baseline - removed, "plusminus": kept + baseline - removed}[self.variant]
        return torch.where(needed, weights, 0).clamp_min(0) if self.variant != "plus" else weights

    def one_pass(self, images, targets_from) -> CamOutput:
        captures = self.forward_with_captures(images, targets_from)
        with torch.no_grad():
            running = None
            for x in reversed(captures):  # the deepest layer first
                layer_map = weighted_sum(self.channel_weights(x).to(x.activations.dtype), x.activations)
                layer_map = layer_map.float().clamp_min(0)
                if running is None:
                    running = layer_map
                    continue
                if self.lnorm:
                    layer_map = local_normalize(layer_map, tuple(running.shape[-2:]))
                running = (layer_map * resize_maps(running, layer_map.shape[-2:])).clamp_min(0)
            return CamOutput(robust_normalize(running), captures[0].logits, captures[0].targets)
