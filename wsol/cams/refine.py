"""RefineCAM — "How to Evaluate and Refine your CAM", arXiv 2605.14641 (2026): several layers' maps, each
min-max normalised at its own resolution, resized to the finest and multiplied, so that what a coarse layer
places roughly and a fine layer draws sharply but noisily survives only where both agree (torchcam's
``RefineCAM`` and pytorch-grad-cam's, whose base is Grad-CAM++).

The layers: those given (two or more), or, when one layer is given, that layer and the ends of the
``stages − 1`` resolution stages before it (:func:`wsol.models.stage_layers`: ResNet's ``layer4`` →
``layer2, layer3, layer4``). The per-layer maps are ``base``'s, fused by the ``product`` fusion
(:func:`wsol.cams.core.fuse_layer_maps`) whatever ``model.fusion``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from ..errors import WsolError
from ..models import stage_layers
from ..schema import Range
from . import METHODS
from .core import CamMethod
from .gradcam import BASES, base_weights

__all__ = ["RefineCAM"]



@METHODS.register("refinecam")
class RefineCAM(CamMethod):
    def __init__(self, model, layer, *, base: Literal["gradcampp", "gradcam", "layercam"] = "gradcampp",
                 stages: Annotated[int, Range(2)] = 3, eps: Annotated[float, Range(0)] = 0.0, **kwargs) -> None:
        if base not in BASES:
            raise WsolError(f"method.base must be one of {', '.join(BASES)}, got {base!r}")
        names = self.target_layers(model, [layer] if isinstance(layer, str) else list(layer), stages=stages)
        super().__init__(model, names, **{**kwargs, "fusion": "product"})
        self.base, self.eps = base, float(eps)

    @classmethod
    def target_layers(cls, model, layers, input_size: int = 224, stages: int = 3, **options) -> list[str]:
        names = list(layers)
        if len(names) == 1:
            names = stage_layers(model, names[0], int(stages), input_size)
        if len(names) < 2:
            raise WsolError(f"refinecam needs two layers or more; {names[0]} is the only resolution stage found: give "
                            "model.layer as a list (a ViT: model.layer=[blocks.9.norm1,blocks.11.norm1])")
        return names

    def channel_weights(self, x):
        return base_weights(self.base, x.activations, x.gradients, self.eps)
