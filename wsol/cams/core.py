"""The shared core of every CAM method: hooks as resources, one forward, per-sample targets.

A method is a small subclass that supplies its channel weights (or its whole map); the base class
owns the hook on the target layer, eval mode, target selection, gradients and the final ReLU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import WsolError
from ..models import find_layer

__all__ = ["CamOutput", "CamMethod", "capture_activations", "eval_mode", "weighted_sum"]


@dataclass
class CamOutput:
    """Maps at feature resolution and the classifier outputs of the same forward pass."""

    maps: torch.Tensor  # float [B, h, w]
    logits: torch.Tensor  # float [B, num_classes]
    targets: torch.Tensor  # int64 [B], the class each map explains


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode for the block and restore each one's own mode after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


@contextlib.contextmanager
def capture_activations(layer: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Record ``layer``'s output in ``store["activations"]`` while the block runs.

    The layer's downstream consumers receive a clone, so an in-place op after the layer (e.g.
    ``ReLU(inplace=True)``) cannot overwrite the stored activations; gradients still flow to
    the stored tensor. The hook is removed on exit, also on error.
    """
    store: dict[str, torch.Tensor] = {}

    def hook(_module: nn.Module, _inputs, output):
        if not isinstance(output, torch.Tensor) or output.ndim != 4:
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
            raise WsolError(f"the target layer must output a (B, C, H, W) tensor, got {shape}")
        store["activations"] = output
        return output.clone()

    handle = layer.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


def weighted_sum(weights: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """``Σ_k w_k · A_k``: weights ``[B, C]`` or ``[B, C, h, w]`` with activations ``[B, C, h, w]`` → ``[B, h, w]``."""
    if weights.ndim == 2:
        return torch.einsum("bc,bchw->bhw", weights, activations)
    return (weights * activations).sum(1)


class CamMethod:
    """Base class: subclasses set ``needs_grad`` and implement :meth:`channel_weights` or :meth:`compute`.

    Args:
        model: a classifier returning logits ``[B, num_classes]``.
        layer: dotted name of the target layer (``named_modules()``).
        relu: apply ReLU to the final map (Grad-CAM's convention; every method here, so that
            maps are comparable). wsolevaluation's CAM applies none: ``relu=False`` matches it.
    """

    needs_grad: bool = True

    def __init__(self, model: nn.Module, layer: str, *, relu: bool = True) -> None:
        self.model = model
        self.layer_name = layer
        self.layer = find_layer(model, layer)
        self.relu = relu

    def channel_weights(
        self, activations: torch.Tensor, gradients: torch.Tensor | None, targets: torch.Tensor
    ) -> torch.Tensor:
        """Channel weights ``[B, C]`` (or pixel-wise ``[B, C, h, w]``)."""
        raise NotImplementedError

    def compute(self, activations: torch.Tensor, gradients: torch.Tensor | None, targets: torch.Tensor) -> torch.Tensor:
        """The raw map ``[B, h, w]`` before the optional ReLU."""
        return weighted_sum(self.channel_weights(activations, gradients, targets), activations)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor | None = None, target: str = "gt") -> CamOutput:
        """Maps for a batch of normalised images.

        Args:
            images: ``[B, 3, H, W]`` normalised input.
            labels: ``[B]`` GT classes, required when ``target="gt"``.
            target: ``"gt"`` (each sample's GT class) or ``"top1"`` (its top-1 prediction).
        """
        if target not in ("gt", "top1"):
            raise WsolError(f"eval.target must be gt or top1, got {target!r}")
        if target == "gt" and (labels is None or len(labels) != len(images)):
            raise WsolError("target=gt needs one label per image")
        with eval_mode(self.model), capture_activations(self.layer) as store, torch.set_grad_enabled(self.needs_grad):
            inputs = images.detach().requires_grad_(self.needs_grad)
            logits = self.model(inputs)
            activations = store["activations"]
            targets = labels.to(logits.device) if target == "gt" else logits.argmax(1)
            gradients = None
            if self.needs_grad:
                scores = logits.gather(1, targets[:, None]).sum()  # samples are independent in eval mode
                (gradients,) = torch.autograd.grad(scores, activations)
            with torch.no_grad():
                maps = self.compute(activations.detach(), gradients, targets)
                if self.relu:
                    maps = maps.clamp_min(0)
        return CamOutput(maps=maps.detach(), logits=logits.detach(), targets=targets)
