"""The shared core of every CAM method: hooks as resources, one forward, per-sample targets, fusion.

A method is a small subclass that supplies its channel weights (or its whole map) for one target
layer from a :class:`LayerCapture`; the base class owns the hooks, eval mode, target selection,
gradients, the final ReLU and the fusion of several layers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import WsolError
from ..models import IMAGENET_MEAN, IMAGENET_STD, find_layer
from ..ops import minmax_normalize
from .layout import NCHW, Layout, LayoutRequest, layout_hook, resolve_layout

__all__ = [
    "FUSIONS",
    "CamOutput",
    "CamMethod",
    "LayerCapture",
    "ReadsPixels",
    "capture_activations",
    "eval_mode",
    "fuse_layer_maps",
    "seeded_noise",
    "target_scores",
    "weighted_sum",
]

FUSIONS = ("mean", "max", "layercam", "product")
# aug_smooth's augmentations (flip, brightness factor): the clean pass first, then pytorch-grad-cam's others
AUGMENTATIONS = ((False, 1.0), (False, 0.9), (False, 1.1), (True, 0.9), (True, 1.0), (True, 1.1))


@dataclass
class CamOutput:
    """Maps at feature resolution and the classifier outputs of the same forward pass."""

    maps: torch.Tensor  # float [B, h, w]
    logits: torch.Tensor  # float [B, num_classes]
    targets: torch.Tensor  # int64 [B], the class each map explains


@dataclass
class LayerCapture:
    """What one forward (and backward) pass tells a method about one target layer."""

    layer: nn.Module
    images: torch.Tensor  # the normalised input [B, 3, H, W]
    activations: torch.Tensor  # [B, C, h, w], the layer's output as a map (wsol.cams.layout)
    gradients: torch.Tensor | None  # ∂S/∂A [B, C, h, w], S the target logit; None without gradients
    logits: torch.Tensor  # [B, num_classes]
    targets: torch.Tensor  # [B]
    layout: Layout = NCHW  # how the layer's output holds the map
    graph: tuple[torch.Tensor, torch.Tensor] | None = None  # (A, g) still on autograd's graph (``keeps_graph``)

    def capture(self, graph_from_here: bool = False) -> contextlib.AbstractContextManager[dict]:
        """:func:`capture_activations` on this layer with its layout, for another forward of the same inputs."""
        return capture_activations(self.layer, self.layout, self.images.shape[-2:], graph_from_here)


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
def capture_activations(
    layer: nn.Module, layout: Layout | Callable[[torch.Tensor], Layout] | None = None,
    input_hw: tuple[int, int] | None = None, graph_from_here: bool = False,
) -> Iterator[dict]:
    """Record ``layer``'s map ``[B, C, h, w]`` in ``store["activations"]`` (and its layout in ``store["layout"]``)
    while the block runs.

    ``layout``: a :class:`~wsol.cams.layout.Layout`, or a function of the output that gives one (``None``:
    NCHW, the convolutional case); ``input_hw``: the input's size, for a token grid. The layers after
    ``layer`` receive a copy rebuilt from the recorded map, so an in-place op after the layer (e.g.
    ``ReLU(inplace=True)``) cannot overwrite it while gradients still flow to it. ``graph_from_here``: see
    :func:`~wsol.cams.layout.layout_hook`. The hook is removed on exit, also on error.
    """
    store: dict = {}
    choose = layout if callable(layout) else (lambda _output: layout or NCHW)
    handle = layer.register_forward_hook(layout_hook(choose, tuple(input_hw or (224, 224)), store, graph_from_here))
    try:
        yield store
    finally:
        handle.remove()


def weighted_sum(weights: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """``Σ_k w_k · A_k``: weights ``[B, C]`` or ``[B, C, h, w]`` with activations ``[B, C, h, w]`` → ``[B, h, w]``."""
    if weights.ndim == 2:
        return torch.einsum("bc,bchw->bhw", weights, activations)
    return (weights * activations).sum(1)


def target_scores(logits: torch.Tensor, targets: torch.Tensor, kind: str = "logit") -> torch.Tensor:
    """Each row's score for its target class: the raw ``logit`` or the softmax ``probability``."""
    if kind == "probability":
        logits = logits.float().softmax(1)
    return logits.gather(1, targets[:, None].to(logits.device))[:, 0]


def seeded_noise(shape: tuple[int, ...], std: float, seed: int, device: torch.device) -> torch.Tensor:
    """Gaussian noise of ``shape`` and std ``std`` drawn on the CPU from ``seed`` (the same on every device)."""
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=generator) * std).to(device)


def resize_maps(maps: torch.Tensor, size, align_corners: bool = False) -> torch.Tensor:
    """``[B, h, w]`` maps bilinearly resized to ``size`` (half-pixel centres, unless ``align_corners``)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps[:, None], size=tuple(size), mode="bilinear", align_corners=align_corners)[:, 0]


def fuse_layer_maps(maps: Sequence[torch.Tensor], fusion: str = "mean") -> torch.Tensor:
    """One map ``[B, h, w]`` from per-layer maps (bilinearly resized to the finest layer's size).

    ``mean`` / ``max``: the mean / element-wise maximum of the min-max normalised maps
    (pytorch-grad-cam aggregates layers by the mean). ``layercam``: LayerCAM's scaling
    ``tanh(2 · M / max M)`` (Jiang et al., TIP 2021, Eq. 6), then the element-wise maximum
    (torchcam's fusion). ``product``: RefineCAM's (arXiv 2605.14641): each map min-max normalised at its own
    resolution, then resized, then their element-wise product (torchcam's order). A single map passes unchanged.
    """
    if len(maps) == 1:
        return maps[0]
    size = max((m.shape[-2:] for m in maps), key=lambda s: s[0] * s[1])
    if fusion == "product":
        normalised = [minmax_normalize(m)[0] for m in maps]
        return torch.stack([resize_maps(m, size) for m in normalised]).prod(0)
    resized = [resize_maps(m, size) for m in maps]
    if fusion == "layercam":
        stacked = torch.stack(resized)  # [L, B, h, w]
        peak = stacked.flatten(2).amax(2)[..., None, None]
        scaled = torch.tanh(2 * stacked / torch.where(peak > 0, peak, torch.ones_like(peak)))
        return torch.where(peak > 0, scaled, torch.zeros_like(scaled)).amax(0)
    normalised = torch.stack([minmax_normalize(m)[0] for m in resized])
    return {"mean": normalised.mean(0), "max": normalised.amax(0)}[fusion]  # CamMethod checks the name


class ReadsPixels:
    """For a method that reads the image's pixels: the input normalisation to undo. ``mean`` / ``std`` given as
    options win; else the model's, which the scorer tells it (:meth:`use_normalization`), ImageNet's until then."""

    def _set_normalization(self, mean: Sequence[float] | None, std: Sequence[float] | None) -> None:
        self.given = mean is not None, std is not None
        self.mean = tuple(map(float, mean if mean is not None else IMAGENET_MEAN))
        self.std = tuple(map(float, std if std is not None else IMAGENET_STD))

    def use_normalization(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """The model's input normalisation (an explicit ``mean`` / ``std`` option wins)."""
        self.mean = self.mean if self.given[0] else tuple(map(float, mean))
        self.std = self.std if self.given[1] else tuple(map(float, std))

    def statistics(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """``mean``, ``std`` as ``[1, 3, 1, 1]`` tensors on ``device``."""
        return (torch.tensor(self.mean, device=device).view(1, 3, 1, 1),
                torch.tensor(self.std, device=device).view(1, 3, 1, 1))


class CamMethod:
    """Base class: subclasses set ``needs_grad`` and implement :meth:`channel_weights` or :meth:`compute`.

    Args:
        model: a classifier returning logits ``[B, num_classes]``.
        layer: dotted name of the target layer (``named_modules()``), or a list of names: each
            layer's map is computed on its own, then the maps are fused (:func:`fuse_layer_maps`).
        relu: apply ReLU to each layer's map (Grad-CAM's convention; every method here, so that
            maps are comparable). wsolevaluation's CAM applies none: ``relu=False`` matches it.
        fusion: ``mean``, ``max`` or ``layercam``; used with several layers only.
        seed: seed of the noise of the stochastic methods (drawn on the CPU, so every device
            draws the same noise).
        layout: how the layers' outputs hold their maps (``auto``: read off each output and the model,
            :func:`~wsol.cams.layout.resolve_layout`): convolutional, channels-last or transformer tokens.
        eigen_smooth: the map is the first principal component of the weighted activations ``w_k A_k`` (their
            channel sum's sign) instead of their sum (pytorch-grad-cam's ``eigen_smooth``); for the methods that
            weigh the activations.
        aug_smooth: the mean of the min-max normalised maps of six passes, the image and its horizontal flip each
            times 0.9, 1 and 1.1, each flipped map flipped back (pytorch-grad-cam's ``aug_smooth``); the targets
            (and logits) are the clean pass's.
    """

    needs_grad: bool = True
    weighs_activations: bool = True  # its map is Σ_k of weighted activations (eigen_smooth applies)
    keeps_graph: bool = False  # gradients made with create_graph, (A, g) kept on the graph (second-order methods)

    def __init__(
        self,
        model: nn.Module,
        layer: str | Sequence[str],
        *,
        relu: bool = True,
        fusion: str = "mean",
        seed: int = 0,
        layout: LayoutRequest | None = None,
        eigen_smooth: bool = False,
        aug_smooth: bool = False,
    ) -> None:
        self.model = model
        self.layer_names = [layer] if isinstance(layer, str) else list(layer)
        if not self.layer_names:
            raise WsolError("model.layer is an empty list; name at least one layer")
        self.layers = [find_layer(model, name) for name in self.layer_names]
        self.relu = relu
        if fusion not in FUSIONS:
            raise WsolError(f"model.fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
        self.fusion = fusion
        self.seed = int(seed)
        self.layout_request = layout or LayoutRequest()
        if eigen_smooth and not self.weighs_activations:
            raise WsolError(f"method.eigen_smooth applies to the methods that weigh the activations, not to "
                            f"{type(self).__name__}")
        self.eigen_smooth, self.aug_smooth = bool(eigen_smooth), bool(aug_smooth)
        self._layouts: dict[int, Layout] = {}

    @classmethod
    def target_layers(cls, model: nn.Module, layers: Sequence[str], input_size: int = 224, **options) -> list[str]:
        """The layers the method hooks when ``layers`` are asked for: those (RefineCAM adds the stages before a
        single one). Resolved before the model is folded or compiled, so that every hooked layer is kept."""
        return list(layers)

    @property
    def layer_label(self) -> str:
        """How a run and its table name the hooked layers: their names joined by ``+``."""
        return "+".join(self.layer_names)

    def _layout(self, index: int) -> Callable[[torch.Tensor], Layout]:
        """Layer ``index``'s layout, resolved from its first output and kept."""

        def choose(output: torch.Tensor) -> Layout:
            if index not in self._layouts:
                self._layouts[index] = resolve_layout(self.model, self.layers[index], output, self.layout_request)
            return self._layouts[index]

        return choose

    def channel_weights(self, x: LayerCapture) -> torch.Tensor:
        """Channel weights ``[B, C]`` (or pixel-wise ``[B, C, h, w]``)."""
        raise NotImplementedError

    def weighted_activations(self, x: LayerCapture) -> torch.Tensor:
        """``w_k A_k`` ``[B, C, h, w]``: the terms whose channel sum is the map."""
        weights = self.channel_weights(x)
        return (weights[..., None, None] if weights.ndim == 2 else weights) * x.activations

    def compute(self, x: LayerCapture) -> torch.Tensor:
        """The raw map ``[B, h, w]`` of one layer before the optional ReLU."""
        if self.eigen_smooth:
            from .eigen import first_component_projection

            return first_component_projection(self.weighted_activations(x))
        return weighted_sum(self.channel_weights(x), x.activations)

    def objective(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The score ``[B]`` each map explains, differentiated for ``g``: the target class's logit."""
        return target_scores(logits, targets)

    def forward_with_captures(self, images: torch.Tensor, targets_from) -> list[LayerCapture]:
        """One forward (and backward, if ``needs_grad``) with every target layer hooked."""
        with contextlib.ExitStack() as stack, torch.set_grad_enabled(False):
            hw = tuple(images.shape[-2:])
            # autograd starts at the target layers: the layers before them run as in inference
            stores = [stack.enter_context(capture_activations(layer, self._layout(i), hw, self.needs_grad))
                      for i, layer in enumerate(self.layers)]
            logits = self.model(images.detach())
            targets = targets_from(logits)
            activations = [store["activations"] for store in stores]
            gradients: Sequence[torch.Tensor | None] = [None] * len(activations)
            if self.needs_grad:
                scores = self.objective(logits, targets).sum()  # samples are independent in eval mode
                with torch.set_grad_enabled(self.keeps_graph):
                    gradients = torch.autograd.grad(scores, activations, create_graph=self.keeps_graph)
        return [
            LayerCapture(layer, images.detach(), a.detach(), None if g is None else g.detach(), logits.detach(),
                         targets, store["layout"], (a, g) if self.keeps_graph else None)
            for layer, a, g, store in zip(self.layers, activations, gradients, stores, strict=True)
        ]

    def __call__(self, images: torch.Tensor, targets: torch.Tensor | None = None,
                 target: str | None = None) -> CamOutput:
        """Maps for a batch of normalised images.

        Args:
            images: ``[B, 3, H, W]`` normalised input.
            targets: ``[B]`` the classes to explain (the GT classes, for WSOL); ``None``: each image's top-1
                prediction.
            target: ``"gt"`` (``targets``, required) or ``"top1"`` (the top-1 prediction, ``targets`` ignored);
                ``None``: ``"gt"`` when ``targets`` is given, else ``"top1"``.
        """
        target = target or ("top1" if targets is None else "gt")
        if target not in ("gt", "top1"):
            raise WsolError(f"eval.target must be gt or top1, got {target!r}")
        if target == "gt" and (targets is None or len(targets) != len(images)):
            raise WsolError("target=gt needs one label per image")
        labels = targets

        def targets_from(logits: torch.Tensor) -> torch.Tensor:
            return torch.as_tensor(labels).to(logits.device) if target == "gt" else logits.argmax(1)

        with eval_mode(self.model):
            first = self.one_pass(images, targets_from)
            fused = first.maps
            if self.aug_smooth:  # pytorch-grad-cam's test-time flips × brightness factors, each map min-max'd
                maps = [minmax_normalize(fused)[0]]
                for flip, factor in AUGMENTATIONS[1:]:
                    augmented = self.one_pass((images.flip(-1) if flip else images) * factor,
                                              lambda _: first.targets).maps
                    augmented = minmax_normalize(augmented)[0]
                    maps.append(augmented.flip(-1) if flip else augmented)
                fused = torch.stack(maps).mean(0)
        return CamOutput(maps=fused.detach(), logits=first.logits, targets=first.targets)

    def one_pass(self, images: torch.Tensor, targets_from) -> CamOutput:
        """The fused map of one pass over ``images`` (in eval mode), with its logits and targets; ``targets_from``
        gives the targets from the logits. A method whose map is not one per layer overrides this."""
        captures = self.forward_with_captures(images, targets_from)
        with torch.no_grad():
            maps = [self.compute(x) for x in captures]
            if self.relu:
                maps = [m.clamp_min(0) for m in maps]
            return CamOutput(fuse_layer_maps(maps, self.fusion), captures[0].logits, captures[0].targets)
