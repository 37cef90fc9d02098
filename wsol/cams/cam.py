"""CAM — Zhou et al., *Learning Deep Features for Discriminative Localization*, CVPR 2016.

``M_c = Σ_k w^c_k A_k`` with ``w^c`` the row of the fully connected layer that follows global
average pooling. The target layer must feed GAP → FC: its output reaches the classifier's input
through global average pooling and nothing else but element-wise activations (ReLU, ReLU6, SiLU,
…) and reshapes. This is checked on the autograd graph of one forward, so a layer with the right
channel count that does not feed the pooling (a ResNet block's ``bn3``, before the residual sum)
is refused with the operation that breaks the chain.

A model that defines its own CAM (``class_activation_map`` of its ``cam_layer``'s output: the
wsolevaluation models, :mod:`wsol.models.wsoleval`) gets that map at that layer, which is the reference's
definition for each architecture type: ``mean_k w^c_k A_k`` for ``cam`` / ``adl``, the class-map channel
for ``spg``, the maximum of the two heads' normalised class maps for ``acol``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import WsolError
from ..models import find_layer
from . import METHODS
from .core import CamMethod, capture_activations
from .layout import NCHW, Layout

__all__ = ["CAM", "classifier_after_pooling"]

# autograd nodes allowed between the layer's output and the classifier's input (names without the version suffix)
_ELEMENTWISE = {
    "ReluBackward", "HardtanhBackward", "SiluBackward", "GeluBackward", "LeakyReluBackward", "EluBackward",
    "SeluBackward", "CeluBackward", "HardswishBackward", "MishBackward", "SigmoidBackward", "TanhBackward",
    "SoftplusBackward", "ClampBackward", "ClampMinBackward", "CloneBackward", "ToCopyBackward", "AliasBackward",
}
_POOLING = {"MeanBackward", "AdaptiveAvgPool2DBackward", "AvgPool2DBackward"}
_RESHAPE = {"ViewBackward", "ReshapeAliasBackward", "UnsafeViewBackward", "SqueezeBackward", "AsStridedBackward",
            "PermuteBackward"}  # a channels-last layer's output is permuted back by the capture hook


def _kind(node) -> str:
    return type(node).__name__.rstrip("0123456789")


def _path_problem(start, layer_output: torch.Tensor) -> str | None:
    """Why the autograd chain from ``start`` (the classifier input's ``grad_fn``) back to ``layer_output`` is not
    global average pooling and element-wise activations; ``None`` when it is."""
    target = layer_output.grad_fn
    node, pools = start, 0
    while node is not None:
        if node is target or getattr(node, "variable", None) is layer_output:
            return None if pools == 1 else f"the path holds {pools} average poolings, not one"
        kind = _kind(node)
        if kind in _POOLING:
            pools += 1
        elif kind not in _ELEMENTWISE | _RESHAPE:
            return f"its output reaches the classifier through {type(node).__name__}, not only pooling and activations"
        inputs = [n for n, _ in node.next_functions if n is not None]
        if len(inputs) != 1:
            return f"its output reaches the classifier through {type(node).__name__}, which has {len(inputs)} inputs"
        node = inputs[0]
    return "its output does not reach the classifier's input"


def classifier_after_pooling(
    model: nn.Module, layer: nn.Module, name: str, images: torch.Tensor, layout: Layout = NCHW
) -> nn.Linear:
    """The ``nn.Linear`` whose output is the model's output and whose input is the global average pooling of
    ``layer``'s map (up to element-wise activations and layout changes), checked on one forward of
    ``images[:1]``. A transformer's token sequence is refused: it reaches the classifier through the class
    token or further attention blocks, not through pooling alone."""
    if layout.kind == "tokens":
        raise WsolError(f"CAM needs the target layer to feed global average pooling and one Linear layer; {name} is "
                        f"a transformer's token sequence, which reaches the classifier through its class token and "
                        f"attention, not pooling alone (use gradcam, layercam, scorecam, …)")
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise WsolError("CAM needs a model that ends in global average pooling and nn.Linear (use method=gradcam)")
    fc, seen = linears[-1], {}
    pre = fc.register_forward_pre_hook(lambda _m, inputs: seen.update(input=inputs[0]))
    post = fc.register_forward_hook(lambda _m, _i, output: seen.update(output=output))
    try:
        with torch.enable_grad(), capture_activations(layer, layout, images.shape[-2:]) as store:
            logits = model(images[:1].detach().requires_grad_(True))
    finally:
        pre.remove()
        post.remove()
    if seen.get("output") is not logits:
        problem = "the model's output is not its last Linear layer's output"
    else:
        problem = _path_problem(seen["input"].grad_fn, store["activations"])
    if problem:
        raise WsolError(f"CAM needs the target layer to feed global average pooling and one Linear layer; "
                        f"{name}: {problem} (use method=gradcam, or the layer that feeds the pooling)")
    return fc


@METHODS.register("cam")
class CAM(CamMethod):
    needs_grad = False

    def compute(self, x):
        name = getattr(self.model, "cam_layer", None)
        if name and hasattr(self.model, "class_activation_map") and x.layer is find_layer(self.model, name):
            return self.model.class_activation_map(x.activations, x.targets)  # the model's own CAM definition
        return super().compute(x)

    def channel_weights(self, x):
        checked = self.__dict__.setdefault("_fc", {})  # each layer checked once, on its first batch
        index = self.layers.index(x.layer)
        if index not in checked:
            checked[index] = classifier_after_pooling(self.model, x.layer, self.layer_names[index], x.images, x.layout)
        return checked[index].weight.to(x.activations.dtype)[x.targets]
