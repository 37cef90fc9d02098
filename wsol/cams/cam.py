"""CAM — Zhou et al., *Learning Deep Features for Discriminative Localization*, CVPR 2016.

``M_c = Σ_k w^c_k A_k`` with ``w^c`` the row of the fully connected layer that follows global
average pooling. Needs a layer that feeds GAP → FC directly.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import WsolError
from . import METHODS
from .core import CamMethod

__all__ = ["CAM"]


def _classifier_weight(model: nn.Module, channels: int) -> torch.Tensor:
    """The weight ``[num_classes, C]`` of the last ``nn.Linear`` whose input width is ``C``."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears or linears[-1].in_features != channels:
        found = f"its last Linear takes {linears[-1].in_features}" if linears else "it has no Linear layer"
        raise WsolError(
            f"CAM needs the target layer to feed global average pooling and one Linear layer; "
            f"the layer has {channels} channels but {found} (use method=gradcam)"
        )
    return linears[-1].weight


@METHODS.register("cam")
class CAM(CamMethod):
    needs_grad = False

    def channel_weights(self, x):
        weight = _classifier_weight(self.model, x.activations.shape[1])
        return weight.to(x.activations.dtype)[x.targets]
