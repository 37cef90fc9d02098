"""Where wsol's CAM conventions and pytorch-grad-cam's and torchcam's differ: computed, not read.

Every row of the conventions table (``docs/methods.md``) is backed by a comparison made here: the
library's own code and wsol run on the same network, layer, inputs and targets, and the maps are
compared by their Pearson correlation ``r`` per image (the worst image is reported; ``r`` ignores
the libraries' min-max scaling). A row compares the library with wsol's default, with the wsol
option that reproduces the library (where one is offered), and, for conventions wsol does not
offer, with an independent re-implementation of the library's formula as the table states it, so
the table's description is checked too. pytorch-grad-cam's maps are compared after its own
post-processing (min-max at feature resolution, then ``cv2.resize`` to the input size) is applied
to wsol's map; torchcam's maps are compared at feature resolution.

    python scripts/compare_libraries.py            # random-weight ResNet-18, 224², 4 demo images → results/conventions/
    python scripts/compare_libraries.py --size 112 --images 2 --out /tmp/conventions
    python scripts/compare_libraries.py --zoo      # only the newer methods' rows → results/conventions/libraries_zoo.md

``tests/test_libraries.py`` runs the same comparisons on a smaller input and checks every row.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version

os.environ.setdefault("TQDM_DISABLE", "1")  # pytorch-grad-cam's progress bars

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from wsol.cams import build_method  # noqa: E402
from wsol.cams.core import capture_activations, eval_mode, target_scores  # noqa: E402
from wsol.cams.perturb import activation_masks, replace_output  # noqa: E402
from wsol.io import atomic_write_text  # noqa: E402

PGC, TORCHCAM = "pytorch-grad-cam", "torchcam"


@dataclass
class Case:
    """A network, its target layer(s), normalised inputs ``[B, 3, S, S]`` and one target class per input."""

    model: torch.nn.Module
    layer: str
    images: torch.Tensor
    targets: torch.Tensor
    second_layer: str = "layer3"  # for the several-layers rows
    negative_layer: str = "layer4.1.conv2"  # a layer with negative activations (Ablation-CAM's ablation value)
    inplace_layer: str = "layer4.1.bn2"  # a layer whose output the next op changes in place (out += identity)
    samples: int = 4  # noise / integration samples of the stochastic methods (the formulas do not depend on it)

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.images.shape[-2:])


@dataclass
class Comparison:
    """One row: ``r`` (worst image) of the library's maps against wsol's default, a wsol option and a reading."""

    row: str
    library: str
    default: float
    option: str = ""
    with_option: float | None = None
    reading: str = ""
    with_reading: float | None = None
    note: str = ""
    per_image: dict[str, list[float]] = field(default_factory=dict)
    max_diff: dict[str, list[float]] = field(default_factory=dict)  # per image, |a − b| after min-max of both


def pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image Pearson correlation of ``[B, ...]`` maps; two flat maps count as 1, one flat map as 0."""
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    a, b = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    out = np.where((na > 0) & (nb > 0), (a * b).sum(1) / np.maximum(na * nb, 1e-300), 0.0)
    return np.where((na == 0) & (nb == 0), 1.0, out)


def minmax_difference(a, b) -> np.ndarray:
    """Per image, the largest ``|a − b|`` after each map is min-max normalised to [0, 1] (flat maps: zeros)."""
    def unit(x):
        x = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
        x = x.reshape(len(x), -1)
        lo, span = x.min(1, keepdims=True), np.ptp(x, axis=1, keepdims=True)
        return np.where(span > 0, (x - lo) / np.where(span > 0, span, 1), 0.0)

    return np.abs(unit(a) - unit(b)).max(1)


def wsol_maps(case: Case, method: str, layer: str | Sequence[str] | None = None, **options) -> torch.Tensor:
    """wsol's maps ``[B, h, w]`` at feature resolution (ReLU'd unless ``relu=False``)."""
    cam = build_method(method, case.model, layer or case.layer, **options)
    return cam(case.images, case.targets).maps


def pgc_scale(maps: torch.Tensor | np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """pytorch-grad-cam's own post-processing of a feature-resolution map: min-max, then ``cv2.resize``."""
    from pytorch_grad_cam.utils.image import scale_cam_image

    maps = maps.detach().cpu().numpy() if isinstance(maps, torch.Tensor) else maps
    return scale_cam_image(np.maximum(maps, 0), (size[1], size[0]))


def pgc_maps(case: Case, cls_name: str, layers: Sequence[str] | None = None, eigen_smooth: bool = False,
             aug_smooth: bool = False, **kwargs) -> np.ndarray:
    """pytorch-grad-cam's maps ``[B, S, S]`` for ``case``'s targets (its raw logit targets)."""
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    modules = dict(case.model.named_modules())
    cls = getattr(pytorch_grad_cam, cls_name)
    cam = cls(case.model, [modules[name] for name in (layers or [case.layer])], **kwargs)
    targets = [ClassifierOutputTarget(int(t)) for t in case.targets]
    with contextlib.ExitStack() as stack:
        for base in getattr(cam, "base_cam_per_layer", [cam]):  # RefineCAM holds one CAM per layer, is none itself
            stack.enter_context(base)
        smoothing = {k: True for k, on in (("eigen_smooth", eigen_smooth), ("aug_smooth", aug_smooth)) if on}
        return cam(case.images.clone(), targets, **smoothing)


def torchcam_maps(case: Case, cls_name: str, layers: Sequence[str] | None = None, fuse: bool = False, **kwargs):
    """torchcam's maps ``[B, h, w]`` (normalised, at feature resolution) for ``case``'s targets."""
    import torchcam.methods

    cls = getattr(torchcam.methods, cls_name)
    layers = list(layers or [case.layer])
    with eval_mode(case.model), cls(case.model, layers if len(layers) > 1 else layers[0], **kwargs) as extractor:
        with torch.set_grad_enabled(cls_name not in ("CAM", "ScoreCAM", "SSCAM", "ISCAM")):
            scores = case.model(case.images.clone())
        cams = extractor(class_idx=[int(t) for t in case.targets], scores=scores)
        return (extractor.fuse_cams(cams) if fuse else cams[0]).detach()


def _captures(case: Case, layer: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(A, g, S)`` at ``layer``: activations, gradients of the target logits, and the target logits."""
    with eval_mode(case.model), capture_activations(dict(case.model.named_modules())[layer]) as store:
        logits = case.model(case.images)
        scores = target_scores(logits, case.targets)
        (grads,) = torch.autograd.grad(scores.sum(), store["activations"])
    return store["activations"].detach(), grads, scores.detach()


# --- readings: the libraries' formulas as the table states them, written independently -----------------


def torchcam_gradcampp_reading(case: Case) -> torch.Tensor:
    """torchcam's Grad-CAM++ as the table reads it: its α stays g² (the in-place division acts on a copy),
    so ``w_k = Σ_ij g² · ReLU(g)``; map ``ReLU(Σ_k w_k A_k)``."""
    a, g, _ = _captures(case, case.layer)
    weights = (g.pow(2) * g.clamp_min(0)).sum((2, 3))
    return torch.einsum("bc,bchw->bhw", weights, a).clamp_min(0)


def torchcam_smoothgradcampp_reading(case: Case, num_samples: int, std: float, seed: int) -> torch.Tensor:
    """torchcam's Smooth Grad-CAM++ as the table reads it: with ḡ², ḡ³ the means of g², g³ over the noisy
    copies, α = ḡ² / (2 ḡ² + Σ_ab A_ab ḡ³_ab + 1e-8) with the clean A, but the weights
    Σ_ij α ReLU(g_last) take the LAST noisy copy's g, and the map Σ_k w_k A_last,k its activations."""
    torch.manual_seed(seed)
    clean, _, _ = _captures(case, case.layer)
    noise_source = torch.distributions.normal.Normal(0, std)
    g2 = torch.zeros_like(clean)
    g3 = torch.zeros_like(clean)
    images = case.images
    for _ in range(num_samples):
        noisy = images + noise_source.sample(images.size())
        noisy_case = Case(case.model, case.layer, noisy, case.targets)
        a_last, g_last, _ = _captures(noisy_case, case.layer)
        g2, g3 = g2 + g_last.pow(2), g3 + g_last.pow(3)
    g2, g3 = g2 / num_samples, g3 / num_samples
    alpha = g2 / (2 * g2 + (g3 * clean).sum((2, 3), keepdim=True) + 1e-8)
    weights = (alpha * g_last.clamp_min(0)).sum((2, 3))
    return torch.einsum("bc,bchw->bhw", weights, a_last).clamp_min(0)


def torchcam_sscam_reading(case: Case, num_samples: int, std: float, seed: int) -> torch.Tensor:
    """torchcam's SS-CAM as the table reads it: masks min-max'd, then upsampled; noise drawn independently for
    every (image, channel, pixel) from the global RNG, one draw of the whole (B, C, H, W) mask tensor per sample;
    weights = softmax over channels of the mean logit difference to the clean input."""
    a, _, _ = _captures(case, case.layer)
    batch, channels = a.shape[:2]
    masks = activation_masks(a.flatten(0, 1), case.size, "normalize_first").view(batch, channels, 1, *case.size)
    torch.manual_seed(seed)
    noise_source = torch.distributions.normal.Normal(0, std)
    with torch.no_grad(), eval_mode(case.model):
        base = target_scores(case.model(case.images), case.targets)
        total = torch.zeros(batch, channels)
        for _ in range(num_samples):
            noisy = masks + noise_source.sample(masks.shape)
            for b in range(batch):
                scores = target_scores(case.model(case.images[b] * noisy[b]), case.targets[b].repeat(channels))
                total[b] += scores - base[b]
    weights = (total / num_samples).softmax(1)
    return torch.einsum("bc,bchw->bhw", weights, a).clamp_min(0)


def pgc_ablation_reading(case: Case, layer: str, chunk: int = 32) -> np.ndarray:
    """pytorch-grad-cam's Ablation-CAM as the table reads it: ``w_k = (S − S_k) / S`` (no absolute value); the
    ablated channel is set to 0 when the image's activations have minimum ``m = 0``, else to ``m − (j + 1)·1e7``
    with ``j`` the channel's position in its chunk of ``chunk`` (= its ``batch_size``) ablated copies: the minimum
    is read again after each copy's channel is written, so the value sinks by 1e7 per copy."""
    a, _, scores = _captures(case, layer)
    module = dict(case.model.named_modules())[layer]
    weights = torch.zeros(a.shape[:2])
    with torch.no_grad(), eval_mode(case.model):
        for b in range(len(a)):
            low = a[b].min()
            for k in range(a.shape[1]):
                value = 0.0 if float(low) == 0 else low - (k % chunk + 1) * 1e7

                def ablate(output, k=k, value=value):
                    output = output.clone()
                    output[:, k] = value
                    return output

                with replace_output(module, ablate):
                    ablated = target_scores(case.model(case.images[b : b + 1]), case.targets[b : b + 1])
                weights[b, k] = (scores[b] - ablated[0]) / scores[b]
    return pgc_scale(torch.einsum("bc,bchw->bhw", weights, a), case.size)


def pgc_layers_reading(per_layer: Sequence[torch.Tensor], size: tuple[int, int]) -> np.ndarray:
    """pytorch-grad-cam's several layers as the table reads them: each layer's map min-max'd at its own
    resolution and resized to the input size, then the mean, min-max'd again."""
    from pytorch_grad_cam.utils.image import scale_cam_image

    return scale_cam_image(np.mean([pgc_scale(m, size) for m in per_layer], axis=0))


def torchcam_layercam_fusion_reading(per_layer: Sequence[torch.Tensor]) -> torch.Tensor:
    """torchcam's LayerCAM fusion as the table reads it: each map min-max'd (``/ (max + 1e-8)``), then
    ``tanh(2 M)``, bilinearly resized to the largest map, element-wise maximum."""
    size = max((m.shape[-2:] for m in per_layer), key=lambda s: s[0] * s[1])
    scaled = []
    for m in per_layer:
        m = m - m.amin((1, 2), keepdim=True)
        m = torch.tanh(2 * m / (m.amax((1, 2), keepdim=True) + 1e-8))
        scaled.append(F.interpolate(m[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0])
    return torch.stack(scaled).amax(0)


# --- the rows ----------------------------------------------------------------------------------------------


def _worst(r: np.ndarray) -> float:
    return float(np.min(r))


def _compare(row: str, library: str, lib_maps, default, option: str = "", with_option=None, reading: str = "",
             with_reading=None, note: str = "") -> Comparison:
    def r(x):
        return None if x is None else pearson(lib_maps, x)

    def diff(x):
        return [round(float(v), 9) for v in minmax_difference(lib_maps, x)]

    rs = {"default": r(default), "option": r(with_option), "reading": r(with_reading)}
    return Comparison(
        row, library, _worst(rs["default"]), option, None if rs["option"] is None else _worst(rs["option"]),
        reading, None if rs["reading"] is None else _worst(rs["reading"]), note,
        {k: [round(float(v), 9) for v in x] for k, x in rs.items() if x is not None},
        {k: diff(x) for k, x in (("default", default), ("option", with_option), ("reading", with_reading))
         if x is not None and not isinstance(x, float)},
    )


def gradient_rows(case: Case) -> list[Comparison]:
    size = case.size
    rows = []
    for method, pgc_name, tc_name in (
        ("gradcam", "GradCAM", "GradCAM"),
        ("xgradcam", "XGradCAM", "XGradCAM"),
        ("layercam", "LayerCAM", "LayerCAM"),
        ("hirescam", "HiResCAM", None),
    ):
        mine = wsol_maps(case, method)
        rows.append(_compare(method, PGC, pgc_maps(case, pgc_name), pgc_scale(mine, size)))
        if tc_name:
            rows.append(_compare(method, TORCHCAM, torchcam_maps(case, tc_name), mine))
    default = wsol_maps(case, "gradcampp")
    rows.append(_compare(
        "gradcampp", PGC, pgc_maps(case, "GradCAMPlusPlus"), pgc_scale(default, size),
        "eps=1e-6", pgc_scale(wsol_maps(case, "gradcampp", eps=1e-6), size),
    ))
    rows.append(_compare(
        "gradcampp", TORCHCAM, torchcam_maps(case, "GradCAMpp"), default,
        reading="w_k = Σ g²·ReLU(g)", with_reading=torchcam_gradcampp_reading(case),
    ))
    n, std, seed = case.samples, 0.3, 0
    torch.manual_seed(seed)
    library = torchcam_maps(case, "SmoothGradCAMpp", num_samples=n, std=std)
    rows.append(_compare(
        "smoothgradcampp", TORCHCAM, library, wsol_maps(case, "smoothgradcampp", num_samples=n, std=std),
        reading="α from mean g², g³; weights and map from the last noisy copy",
        with_reading=torchcam_smoothgradcampp_reading(case, n, std, seed),
    ))
    return rows


def cam_rows(case: Case) -> list[Comparison]:
    """CAM: torchcam applies no ReLU (wsol and pytorch-grad-cam do); ``relu=false`` reproduces it."""
    library = torchcam_maps(case, "CAM", fc_layer="fc")
    raw = wsol_maps(case, "cam", relu=False)
    return [_compare("cam", TORCHCAM, library, wsol_maps(case, "cam"), "relu=false", raw)]


def score_rows(case: Case) -> list[Comparison]:
    size, n = case.size, case.samples
    rows = [
        _compare(
            "scorecam", PGC, pgc_maps(case, "ScoreCAM"), pgc_scale(wsol_maps(case, "scorecam"), size),
            "weighting=channel_softmax align_corners=true",
            pgc_scale(wsol_maps(case, "scorecam", weighting="channel_softmax", align_corners=True), size),
        ),
        _compare(
            "scorecam", TORCHCAM, torchcam_maps(case, "ScoreCAM"), wsol_maps(case, "scorecam"),
            "weighting=channel_softmax mask_order=normalize_first",
            wsol_maps(case, "scorecam", weighting="channel_softmax", mask_order="normalize_first"),
        ),
        _compare(
            "iscam", TORCHCAM, torchcam_maps(case, "ISCAM", num_samples=n), wsol_maps(case, "iscam", num_samples=n),
            "path=cumulative weighting=channel_softmax mask_order=normalize_first",
            wsol_maps(case, "iscam", num_samples=n, path="cumulative", weighting="channel_softmax",
                      mask_order="normalize_first"),
        ),
    ]
    torch.manual_seed(0)
    library = torchcam_maps(case, "SSCAM", num_samples=n, std=2.0)
    rows.append(_compare(
        "sscam", TORCHCAM, library, wsol_maps(case, "sscam", num_samples=n),
        "weighting=channel_softmax mask_order=normalize_first",
        wsol_maps(case, "sscam", num_samples=n, weighting="channel_softmax", mask_order="normalize_first"),
        "noise per (image, channel, pixel), global RNG", torchcam_sscam_reading(case, n, 2.0, 0),
        note="no option gives torchcam's independent noise",
    ))
    torch.manual_seed(0)
    library = torchcam_maps(case, "SSCAM", num_samples=1, std=1e-9)
    rows.append(_compare(
        "sscam, noise std 1e-9", TORCHCAM, library, wsol_maps(case, "sscam", num_samples=1, std=1e-9),
        "weighting=channel_softmax mask_order=normalize_first",
        wsol_maps(case, "sscam", num_samples=1, std=1e-9, weighting="channel_softmax", mask_order="normalize_first"),
    ))
    return rows


def eigen_rows(case: Case) -> list[Comparison]:
    """Eigen-CAM: pytorch-grad-cam keeps the SVD's sign, then applies ReLU; wsol fixes the sign."""
    library = pgc_maps(case, "EigenCAM")
    mine = wsol_maps(case, "eigencam", relu=False)
    flipped = torch.maximum(-mine, torch.zeros_like(mine))
    r_plus, r_minus = pearson(library, pgc_scale(mine, case.size)), pearson(library, pgc_scale(flipped, case.size))
    either = np.maximum(r_plus, r_minus)
    note = f"pytorch-grad-cam's sign is opposite to wsol's on {int((r_minus > r_plus).sum())} of {len(library)} images"
    out = _compare("eigencam", PGC, library, pgc_scale(mine.clamp_min(0), case.size), note=note)
    out.reading, out.with_reading = "ReLU(±P), P wsol's projection", _worst(either)
    out.per_image["reading"] = [round(float(v), 9) for v in either]
    return [out]


def ablation_rows(case: Case) -> list[Comparison]:
    """Ablation-CAM at the default layer (minimum 0 after ReLU) and at a convolution (negative activations)."""
    rows = []
    for layer in (case.layer, case.negative_layer):
        sub = Case(case.model, layer, case.images, case.targets)
        negative = np.flatnonzero((_captures(sub, layer)[2] < 0).numpy())
        rows.append(_compare(
            f"ablationcam at {layer}", PGC, pgc_maps(sub, "AblationCAM"),
            pgc_scale(wsol_maps(sub, "ablationcam"), sub.size),
            reading="w = (S − S_k)/S; ablated value 0, or min(A) − (j+1)·1e7",
            with_reading=pgc_ablation_reading(sub, layer),
            note="S < 0 on image " + ", ".join(map(str, negative)) if len(negative) else "S > 0 on every image",
        ))
    return rows


def inplace_rows(case: Case) -> list[Comparison]:
    """A layer whose output the model changes in place (ResNet's ``out += identity`` and in-place ReLU after
    ``bn2``): pytorch-grad-cam keeps the hooked output without a copy (``.cpu()`` of a CPU tensor is the tensor),
    so on a CPU its A is the block's output; its gradient is still the layer's."""
    module_names = case.inplace_layer.rsplit(".", 1)[0]
    _, g, _ = _captures(case, case.inplace_layer)
    block_output, _, _ = _captures(case, module_names)
    reading = torch.einsum("bc,bchw->bhw", g.mean((2, 3)), block_output)
    sub = Case(case.model, case.inplace_layer, case.images, case.targets)
    return [_compare(
        f"gradcam at {case.inplace_layer}", PGC, pgc_maps(sub, "GradCAM"),
        pgc_scale(wsol_maps(sub, "gradcam"), sub.size),
        reading=f"A = {module_names}'s output, g = ∂S/∂({case.inplace_layer})",
        with_reading=pgc_scale(reading, case.size),
        note="on a CPU; a GPU copies A before the in-place ops",
    )]


def fusion_rows(case: Case) -> list[Comparison]:
    """Several layers: pytorch-grad-cam's mean and torchcam's LayerCAM fusion against wsol's fusions."""
    layers = [case.second_layer, case.layer]
    per_layer = [wsol_maps(case, "gradcam", layer) for layer in layers]
    rows = [_compare(
        "gradcam, two layers", PGC, pgc_maps(case, "GradCAM", layers),
        pgc_scale(wsol_maps(case, "gradcam", layers, fusion="mean"), case.size),
        reading="mean of per-layer min-max maps resized to the input",
        with_reading=pgc_layers_reading(per_layer, case.size),
    )]
    per_layer = [wsol_maps(case, "layercam", layer) for layer in layers]
    rows.append(_compare(
        "layercam, two layers", TORCHCAM, torchcam_maps(case, "LayerCAM", layers, fuse=True),
        wsol_maps(case, "layercam", layers, fusion="layercam"),
        reading="max of tanh(2·min-max map), resized", with_reading=torchcam_layercam_fusion_reading(per_layer),
    ))
    return rows


def smooth_case(case: Case) -> Case:
    """``case`` with every ReLU of a copy of its network replaced by SiLU: ``S`` is then not piecewise linear in a
    layer's activations, so ShapleyCAM's Hessian term is not zero."""
    import copy

    model = copy.deepcopy(case.model)
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, torch.nn.ReLU):
                setattr(parent, name, torch.nn.SiLU())
    return Case(model, case.layer, case.images, case.targets, samples=case.samples)


def _either_sign(library: np.ndarray, mine: torch.Tensor, size) -> tuple[np.ndarray, np.ndarray]:
    """Per image, the better of ReLU(P) and ReLU(−P) against a library that keeps the SVD's own sign: its
    ``r`` and its largest difference after min-max."""
    plus, minus = pgc_scale(mine.clamp_min(0), size), pgc_scale((-mine).clamp_min(0), size)
    r_plus, r_minus = pearson(library, plus), pearson(library, minus)
    best = np.where((r_minus > r_plus)[:, None, None], minus, plus)
    return np.maximum(r_plus, r_minus), minmax_difference(library, best)


def _svd_sign_row(row: str, library: np.ndarray, mine: torch.Tensor, size, reading: str) -> Comparison:
    """A row against pytorch-grad-cam's principal-component maps, which keep the SVD's sign: wsol's default, and
    the reading ReLU(±P) of wsol's unrectified projection ``mine``."""
    either, difference = _either_sign(library, mine, size)
    out = _compare(row, PGC, library, pgc_scale(mine.clamp_min(0), size), note="pytorch-grad-cam keeps the SVD's sign")
    out.reading, out.with_reading = reading, _worst(either)
    out.per_image["reading"] = [round(float(v), 9) for v in either]
    out.max_diff["reading"] = [round(float(v), 9) for v in difference]
    return out


def pgc_finer_maps(case: Case, alpha: float, references: int) -> np.ndarray:
    """pytorch-grad-cam's FinerCAM (base Grad-CAM) with ``FinerWeightedTarget(c, its nearest classes, α)``: the
    references it picks itself for a top-1 target, given here for the GT target."""
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import FinerWeightedTarget

    from wsol.cams.finer import nearest_classes

    with torch.no_grad(), eval_mode(case.model):
        nearest = nearest_classes(case.model(case.images), case.targets, references)
    targets = [FinerWeightedTarget(int(t), [int(k) for k in row], alpha)
               for t, row in zip(case.targets, nearest, strict=True)]
    with pytorch_grad_cam.FinerCAM(case.model, [dict(case.model.named_modules())[case.layer]]) as cam:
        return cam(case.images.clone(), targets, alpha=alpha)


def pgc_aug_smooth_reading(case: Case, method: str, **options) -> np.ndarray:
    """pytorch-grad-cam's ``aug_smooth`` as the table reads it: each of the six passes (flip × 0.9, 1, 1.1) min-max'd
    at the layer's resolution, resized to the input, min-max'd again, flipped back; their mean."""
    from pytorch_grad_cam.utils.image import scale_cam_image

    from wsol.cams.core import AUGMENTATIONS

    maps = []
    for flip, factor in AUGMENTATIONS:
        sub = Case(case.model, case.layer, (case.images.flip(-1) if flip else case.images) * factor, case.targets)
        m = scale_cam_image(pgc_scale(wsol_maps(sub, method, **options), case.size))
        maps.append(m[..., ::-1] if flip else m)
    return np.mean(maps, axis=0)


def case_pixels(case: Case) -> np.ndarray:
    """The case's images as the uint8 RGB ``[B, H, W, 3]`` photographs they were normalised from."""
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    pixels = (case.images * std[:, None, None] + mean[:, None, None]) * 255
    return pixels.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def zoo_rows(case: Case) -> list[Comparison]:
    """The methods pytorch-grad-cam 1.5.7 and torchcam 0.5.0 added (issue 28), each against the library's own."""
    size, layers = case.size, [case.second_layer, case.layer]
    rows = [
        _compare("gradcamelementwise", PGC, pgc_maps(case, "GradCAMElementWise"),
                 pgc_scale(wsol_maps(case, "gradcamelementwise"), size)),
        _compare("fem", PGC, pgc_maps(case, "FEM"), pgc_scale(wsol_maps(case, "fem"), size)),
        _compare("segeigencam", PGC, pgc_maps(case, "SegEigenCAM"), pgc_scale(wsol_maps(case, "segeigencam"), size)),
        _compare("kpcacam", PGC, pgc_maps(case, "KPCA_CAM"), pgc_scale(wsol_maps(case, "kpcacam"), size),
                 "sign=largest", pgc_scale(wsol_maps(case, "kpcacam", sign="largest"), size)),
    ]
    rows.append(_svd_sign_row("eigengradcam", pgc_maps(case, "EigenGradCAM"),
                              wsol_maps(case, "eigengradcam", relu=False), size, "ReLU(±P), P wsol's projection"))
    for method, pgc_name in (("gradcam", "GradCAM"), ("gradcamelementwise", "GradCAMElementWise")):
        rows.append(_svd_sign_row(f"{method}, eigen_smooth", pgc_maps(case, pgc_name, eigen_smooth=True),
                                  wsol_maps(case, method, eigen_smooth=True, relu=False), size,
                                  "ReLU(±P), P wsol's eigen_smooth=true"))
    library = pgc_maps(case, "GradCAMPlusPlus", aug_smooth=True)
    rows.append(_compare("gradcampp, aug_smooth", PGC, library,
                         pgc_scale(wsol_maps(case, "gradcampp", eps=1e-6, aug_smooth=True), size),
                         reading="each pass min-max'd before and after resizing to the input",
                         with_reading=pgc_aug_smooth_reading(case, "gradcampp", eps=1e-6), note="with eps=1e-6"))
    np.random.seed(0)
    library = pgc_maps(case, "RandomCAM")
    np.random.seed(0)
    drawn = torch.from_numpy(np.random.uniform(-1, 1, size=(len(case.images), _captures(case, case.layer)[0].shape[1])))
    activations = _captures(case, case.layer)[0]
    rows.append(_compare("randomcam", PGC, library, pgc_scale(wsol_maps(case, "randomcam"), size),
                         reading="Σ_k w_k A_k, w ~ U(−1, 1) (NumPy's draws)",
                         with_reading=pgc_scale(torch.einsum("bc,bchw->bhw", drawn.float(), activations), size),
                         note="other random draws: no option gives NumPy's"))
    smooth = smooth_case(case)
    for label, sub in (("", case), (", SiLU network", smooth)):
        for layer in (case.layer, case.second_layer):
            at = Case(sub.model, layer, sub.images, sub.targets)
            rows.append(_compare(f"shapleycam at {layer}{label}", PGC, pgc_maps(at, "ShapleyCAM"),
                                 pgc_scale(wsol_maps(at, "shapleycam"), size)))
    rows.append(_compare("finercam", PGC, pgc_finer_maps(case, 1.0, 3), pgc_scale(wsol_maps(case, "finercam"), size)))
    import torchcam.methods

    with eval_mode(case.model), torchcam.methods.FinerCAM(case.model, case.layer) as extractor:
        library = extractor([int(t) for t in case.targets], case.model(case.images.clone()))[0].detach()
    rows.append(_compare("finercam", TORCHCAM, library, wsol_maps(case, "finercam"), "alpha=0.6 weighting=mean",
                         wsol_maps(case, "finercam", alpha=0.6, weighting="mean")))
    with eval_mode(case.model), torchcam.methods.RefineCAM(case.model, layers,
                                                           base_method=torchcam.methods.GradCAM) as extractor:
        library = extractor([int(t) for t in case.targets], case.model(case.images.clone()))[0].detach()
    rows.append(_compare("refinecam, base gradcam", TORCHCAM, library, wsol_maps(case, "refinecam", layers),
                         "base=gradcam", wsol_maps(case, "refinecam", layers, base="gradcam")))
    from pytorch_grad_cam.utils.image import scale_cam_image

    # each layer's map as its own Grad-CAM++ gives it: min-max, resized to the input, min-max again (its mean of one)
    per_layer = [scale_cam_image(pgc_scale(wsol_maps(case, "gradcampp", layer, eps=1e-6), size)) for layer in layers]
    rows.append(_compare("refinecam", PGC, pgc_maps(case, "RefineCAM", layers),
                         pgc_scale(wsol_maps(case, "refinecam", layers), size), "eps=1e-6",
                         pgc_scale(wsol_maps(case, "refinecam", layers, eps=1e-6), size),
                         "product of per-layer min-max maps resized to the input",
                         scale_cam_image(np.prod(per_layer, 0))))
    # FullGrad reads every bias layer, not the layer; pytorch-grad-cam min-maxes each channel, the authors each image
    rows.append(_compare("fullgrad", PGC, pgc_maps(case, "FullGrad"), pgc_scale(wsol_maps(case, "fullgrad"), size),
                         "normalize=channel align_corners=false",
                         pgc_scale(wsol_maps(case, "fullgrad", normalize="channel", align_corners=False), size)))
    from pytorch_grad_cam.sobel_cam import sobel_cam

    library = np.stack([sobel_cam(image) for image in case_pixels(case)]).astype(np.float64)
    rows.append(_compare("sobel", PGC, library, wsol_maps(case, "sobel"), "uint8=true",
                         wsol_maps(case, "sobel", uint8=True)))
    return rows



def tiny_vit(size: int, classes: int = 10, seed: int = 0):
    """A seeded torchvision ``VisionTransformer`` (16-px patches, 3 blocks of width 32, 2 heads) with a random
    head (torchvision zeroes it), and the timm ``VisionTransformer`` holding the same weights."""
    import timm
    import torchvision

    torch.manual_seed(seed)
    vit = torchvision.models.VisionTransformer(size, 16, num_layers=3, num_heads=2, hidden_dim=32, mlp_dim=64,
                                               num_classes=classes).eval()
    torch.nn.init.normal_(vit.heads.head.weight, std=0.5)
    same = timm.models.vision_transformer.VisionTransformer(img_size=size, patch_size=16, embed_dim=32, depth=3,
                                                            num_heads=2, mlp_ratio=2, num_classes=classes).eval()
    weights = {"patch_embed.proj": vit.conv_proj, "norm": vit.encoder.ln, "head": vit.heads.head}
    state = {"cls_token": vit.class_token, "pos_embed": vit.encoder.pos_embedding}
    for i, block in enumerate(vit.encoder.layers):
        weights.update({f"blocks.{i}.norm1": block.ln_1, f"blocks.{i}.norm2": block.ln_2,
                        f"blocks.{i}.attn.proj": block.self_attention.out_proj, f"blocks.{i}.mlp.fc1": block.mlp[0],
                        f"blocks.{i}.mlp.fc2": block.mlp[3]})
        state[f"blocks.{i}.attn.qkv.weight"] = block.self_attention.in_proj_weight
        state[f"blocks.{i}.attn.qkv.bias"] = block.self_attention.in_proj_bias
    state.update({f"{name}.{p}": getattr(m, p) for name, m in weights.items() for p in ("weight", "bias")})
    same.load_state_dict(state)
    return vit, same


def vit_rows(case: Case) -> list[Comparison]:
    """LeGrad (a ViT method) against torchcam's on :func:`tiny_vit` at ``case``'s images, targets taken modulo its
    classes: torchvision's model, and timm's with the same weights (wsol's timm path; torchcam reads only
    torchvision's ``self_attention``)."""
    import torchcam.methods

    vit, same = tiny_vit(case.size[0])
    targets = case.targets % 10
    with eval_mode(vit), torchcam.methods.LeGrad(vit, list(vit.encoder.layers)[-2:]) as extractor:
        library = extractor([int(t) for t in targets], vit(case.images.clone()))[0].detach()
    rows = []
    for label, model, layer in (("legrad", vit, "encoder.layers.encoder_layer_2.ln_1"),
                                ("legrad, timm ViT", same, "blocks.2.norm1")):
        mine = build_method("legrad", model, layer)(case.images, targets).maps
        rows.append(_compare(label, TORCHCAM, library, mine, note="blocks 2 and 3 of 3"))
    # torchcam's score_projection reading the class token instead of the mean of all tokens
    with eval_mode(vit), torchcam.methods.LeGrad(vit, list(vit.encoder.layers)[-2:], score_projection=lambda t: (
            vit.heads(vit.encoder.ln(t[:, 0])))) as extractor:
        library = extractor([int(t) for t in targets], vit(case.images.clone()))[0].detach()
    layer = "encoder.layers.encoder_layer_2.ln_1"
    rows.append(_compare("legrad, class-token readout", TORCHCAM, library,
                         build_method("legrad", vit, layer)(case.images, targets).maps, "pool=token",
                         build_method("legrad", vit, layer, pool="token")(case.images, targets).maps,
                         note="torchcam's score_projection=heads(ln(t[:, 0]))"))
    return rows


ALL_ROWS: tuple[Callable[[Case], list[Comparison]], ...] = (
    cam_rows, gradient_rows, score_rows, eigen_rows, ablation_rows, fusion_rows, inplace_rows, zoo_rows, vit_rows,
)


class _Block(torch.nn.Module):
    """A ResNet basic block with torchvision's names: conv1, bn1, relu (in place), conv2, bn2, then
    ``out += identity`` and the in-place ReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        nn = torch.nn
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        out += x
        return self.relu(out)


class TinyResNet(torch.nn.Module):
    """A small ResNet-shaped classifier with ResNet-18's layer names where the rows need them: ``layer3``,
    ``layer4`` (feeds GAP → ``fc``), ``layer4.1.conv2`` (negative activations) and ``layer4.1.bn2`` (followed by
    ``out += identity`` and an in-place ReLU). At 128² its ``layer4`` is 16×16, so g = W_fc / 256 and g² is
    mostly below 1e-6, as at ResNet-18's ``layer4`` with random weights."""

    def __init__(self, classes: int = 10, width: int = 16) -> None:
        super().__init__()
        nn = torch.nn
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.layer3 = nn.Sequential(nn.Conv2d(width, width, 3, 2, 1), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.layer4 = nn.Sequential(
            nn.Sequential(nn.Conv2d(width, 2 * width, 3, 2, 1), nn.BatchNorm2d(2 * width), nn.ReLU(inplace=True)),
            _Block(2 * width),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, classes)
        with torch.no_grad():
            for m in self.modules():  # non-trivial BatchNorm statistics, so activations are not centred
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.2, 0.2)
                    m.running_var.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.5, 0.5)

    def forward(self, x):
        return self.fc(torch.flatten(self.avgpool(self.layer4(self.layer3(self.stem(x)))), 1))


def tiny_case(size: int = 128, images: int = 2, samples: int = 2, seed: int = 0) -> Case:
    """:class:`TinyResNet` (seeded) on demo photographs resized to ``size``; targets as in :func:`resnet18_case`."""
    torch.manual_seed(seed)
    model = TinyResNet().eval()
    return _demo_case(model, size, images, samples)


def _demo_case(model: torch.nn.Module, size: int, images: int, samples: int) -> Case:
    """``model`` on the first ``images`` demo photographs at ``size``², ImageNet-normalised; targets: the first
    image's top class (S > 0), the last image's lowest-scoring class (S < 0), the others' own classes."""
    from wsol.data import build_dataset

    demo = build_dataset("demo", num_images=images, image_size=size)
    x = torch.stack([demo[i]["image"] for i in range(images)]).float() / 255
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    x = (x - mean[:, None, None]) / std[:, None, None]
    with torch.no_grad():
        logits = model(x)
    targets = torch.tensor([demo[i]["label"] for i in range(images)]) % logits.shape[1]
    targets[0], targets[-1] = logits[0].argmax(), logits[-1].argmin()
    return Case(model, "layer4", x, targets, samples=samples)


def resnet18_case(size: int = 224, images: int = 4, samples: int = 4, seed: int = 0) -> Case:
    """A random-weight ResNet-18 (seeded) at ``layer4`` on demo photographs resized to ``size``; targets as in
    :func:`_demo_case`."""
    import torchvision

    torch.manual_seed(seed)
    return _demo_case(torchvision.models.resnet18(weights=None).eval(), size, images, samples)


def run_all(case: Case, rows=ALL_ROWS) -> list[Comparison]:
    out = []
    with contextlib.redirect_stderr(io.StringIO()):  # the libraries' progress bars and warnings
        for fn in rows:
            out += fn(case)
    return out


def markdown(rows: list[Comparison], header: str, differences: bool = False) -> str:
    """The table; ``differences``: a column with the largest difference after min-max (worst image) of the
    default, the option and the reading, in that order."""
    def fmt(v):
        return "" if v is None else f"{v:.7f}"

    def diff(c: Comparison) -> str:
        return " / ".join(f"{max(c.max_diff[k]):.1e}" if k in c.max_diff else "–" for k in ("default", "option",
                                                                                          "reading"))

    extra = (" max \\|Δ\\| after min-max (default / option / reading) |", " ---: |") if differences else ("", "")
    lines = [
        header, "",
        "| row | library | r, wsol default | wsol option | r, option | reading of the library | r, reading | note |"
        + extra[0],
        "| --- | --- | ---: | --- | ---: | --- | ---: | --- |" + extra[1],
    ]
    for c in rows:
        lines.append(
            f"| {c.row} | {c.library} | {fmt(c.default)} | {f'`{c.option}`' if c.option else ''} "
            f"| {fmt(c.with_option)} "
            f"| {c.reading} | {fmt(c.with_reading)} | {c.note} |" + (f" {diff(c)} |" if differences else "")
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--samples", type=int, default=4, help="noise / integration samples of the stochastic rows")
    parser.add_argument("--out", default="results/conventions")
    parser.add_argument("--zoo", action="store_true",
                        help="only the rows of the methods the libraries added (zoo_rows, vit_rows), to "
                             "<out>/libraries_zoo.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    case = resnet18_case(args.size, args.images, args.samples)
    rows = run_all(case, (zoo_rows, vit_rows) if args.zoo else ALL_ROWS)
    header = (
        f"# wsol vs {PGC} {version('grad-cam')} and {TORCHCAM} {version('torchcam')}\n\n"
        f"`python scripts/compare_libraries.py{' --zoo' if args.zoo else ''} --size {args.size} --images "
        f"{args.images} --samples {args.samples}`: "
        f"random-weight ResNet-18 (seed 0) at `layer4`, {args.images} demo images at {args.size}²; targets: the "
        "first image's top class (S > 0), the last image's lowest-scoring class (S < 0), the others' own classes. "
        "r = Pearson correlation of the library's maps with wsol's, worst image; 1.0000000 = the same map. The LeGrad "
        "rows: a seeded 3-block ViT (`tiny_vit`) on the same images, targets modulo its 10 classes."
    )
    text = markdown(rows, header, differences=args.zoo)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "libraries_zoo.md" if args.zoo else "libraries.md")
    atomic_write_text(path, text)
    print(text)
    return path


if __name__ == "__main__":
    main()
