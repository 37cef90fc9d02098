"""The zoo's methods beside pytorch-grad-cam 1.5.7's and torchcam 0.5.0's own, in one process, on the same
network, layer, batch and inputs (``python scripts/bench.py --zoo``; written to ``results/bench/``).

Each row times one whole call that gives maps at the input size: wsol's method, then its maps upsampled and
min-max normalised to the input (what the libraries return); the library's call as its README shows it (Sobel:
the edge map alone on both sides, as pytorch-grad-cam's ``sobel_cam`` is a function of one image). A second
table times the part where the implementations differ most, the principal-component family's decomposition on
the same captured activations: wsol's batched ``svd`` / ``eigh`` against the library's per-image NumPy or
scikit-learn loop (``get_2d_projection``, ``get_2d_projection_kernel``, ``get_2d_projection_with_sign_correction``).
Random weights; images and targets seeded.
"""

from __future__ import annotations

import contextlib
import io
import os
import platform
import sys
from collections.abc import Callable
from importlib.metadata import version

os.environ.setdefault("TQDM_DISABLE", "1")

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from wsol.cams import build_method  # noqa: E402
from wsol.cams.baselines import sobel_edges  # noqa: E402
from wsol.cams.core import capture_activations, eval_mode, target_scores  # noqa: E402
from wsol.cams.eigen import first_component_projection, kernel_pca_projection  # noqa: E402
from wsol.cams.finer import nearest_classes  # noqa: E402
from wsol.maps import eval_maps  # noqa: E402

# (wsol method, its options, pytorch-grad-cam class, torchcam class); a library missing a method: None
PAIRS = (
    ("eigencam", {}, "EigenCAM", None),
    ("eigengradcam", {}, "EigenGradCAM", None),
    ("segeigencam", {}, "SegEigenCAM", None),
    ("kpcacam", {}, "KPCA_CAM", None),
    ("fem", {}, "FEM", None),
    ("gradcamelementwise", {}, "GradCAMElementWise", None),
    ("shapleycam", {}, "ShapleyCAM", None),
    ("randomcam", {}, "RandomCAM", None),
    ("finercam", {}, "FinerCAM", "FinerCAM"),
    ("refinecam", {}, "RefineCAM", "RefineCAM"),
    ("sobel", {}, "sobel_cam", None),
    ("fullgrad", {"normalize": "channel", "align_corners": False}, "FullGrad", None),  # pytorch-grad-cam's convention
)
PER_IMAGE = ("eigengradcam", "segeigencam", "kpcacam", "eigencam")  # the libraries loop over images in NumPy


def _pgc_call(name: str, model, layers, images, labels) -> Callable[[], object]:
    """pytorch-grad-cam's call for ``name`` (its targets: the labels' logits; FinerCAM: the nearest classes)."""
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget, FinerWeightedTarget

    if name == "sobel_cam":
        from pytorch_grad_cam.sobel_cam import sobel_cam

        pixels = (images - images.amin()) / (images.amax() - images.amin()) * 255
        uint8 = pixels.round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        return lambda: [sobel_cam(image) for image in uint8]
    if name == "FinerCAM":
        with torch.no_grad(), eval_mode(model):
            nearest = nearest_classes(model(images), labels, 3).tolist()
        targets = [FinerWeightedTarget(int(t), row, 1.0) for t, row in zip(labels.tolist(), nearest, strict=True)]
    else:
        targets = [ClassifierOutputTarget(int(t)) for t in labels]
    cam = getattr(pytorch_grad_cam, name)(model, layers)
    return lambda: cam(images, targets)


def _torchcam_call(name: str, model, layer_names, images, labels) -> Callable[[], object]:
    import torchcam.methods

    cls = getattr(torchcam.methods, name)
    target = layer_names if name == "RefineCAM" else layer_names[-1]
    extractor = cls(model, target, input_shape=tuple(images.shape[1:]))

    def run():
        with eval_mode(model):
            extractor([int(t) for t in labels], model(images))

    return run


def zoo_table(model_name: str, device: str, batch: int, size: int, timer, warmup: int, iters: int) -> str:
    """Images per second of each wsol method and of the libraries' versions, and their ratio."""
    from wsol.models import build_model, default_layer, stage_layers

    torch.manual_seed(0)
    dev = torch.device(device)
    model = build_model(model_name, weights=None).module.to(dev).eval()
    layer = default_layer(model, size)
    stages = stage_layers(model, layer, 3, size)
    modules = dict(model.named_modules())
    images = torch.randn(batch, 3, size, size, device=dev)
    labels = torch.randint(0, 1000, (batch,), device=dev)
    lines = [
        f"# The zoo beside pytorch-grad-cam {version('grad-cam')} and torchcam {version('torchcam')} "
        f"({device}, {platform.processor() or 'cpu'}, {torch.get_num_threads()} threads)", "",
        f"`python scripts/bench.py --zoo --device {device}`: {model_name} (random weights) at `{layer}` "
        f"(RefineCAM: `{', '.join(stages)}`), batch {batch}, {size}², torch {torch.__version__}; images per second "
        f"of one whole call giving maps at the input size (wsol: the method, then its maps upsampled and min-max "
        f"normalised; Sobel: the edge maps alone), {warmup} warm-up and {iters} timed calls, in one process.", "",
        "| method | wsol img/s | pytorch-grad-cam img/s | wsol ÷ pytorch-grad-cam | torchcam img/s | wsol ÷ torchcam |",
        "| :--- | ---: | ---: | ---: | ---: | ---: |",
    ]
    ratios = {}
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        warm = build_method("gradcam", model, [layer])  # threads and allocator warm before the first row
        timer(lambda: warm(images, labels), batch)
        for name, options, pgc, tc in PAIRS:
            layers = stages if name == "refinecam" else [layer]
            method = build_method(name, model, layers, **options)
            mine = timer(lambda m=method: eval_maps(m(images, labels).maps, size), batch)[0]
            if name == "sobel":  # the library's function is the edge map alone: so is wsol's row (no forward)
                pixels = ((images - images.amin()) / (images.amax() - images.amin()) * 255).round()
                mine = timer(lambda p=pixels: sobel_edges(p, uint8=True), batch)[0]
            theirs_pgc = timer(_pgc_call(pgc, model, [modules[n] for n in layers], images, labels), batch)[0]
            theirs_tc = timer(_torchcam_call(tc, model, layers, images, labels), batch)[0] if tc else None
            ratios[name] = mine / theirs_pgc
            cells = [f"{mine:,.1f}", f"{theirs_pgc:,.1f}", f"{mine / theirs_pgc:.2f}×",
                     "–" if theirs_tc is None else f"{theirs_tc:,.1f}",
                     "–" if theirs_tc is None else f"{mine / theirs_tc:.2f}×"]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", decomposition_table(model, modules, layer, stages, images, labels, timer), "",
              vit_table(dev, batch, size, timer), ""]
    return "\n".join(lines)


def vit_table(dev: torch.device, batch: int, size: int, timer) -> str:
    """LeGrad beside torchcam's on torchvision's ``vit_b_16`` (random weights, a random head), the last two blocks."""
    import torchcam.methods

    from wsol.models import build_model

    torch.manual_seed(0)
    model = build_model("vit_b_16", weights=None).module.to(dev).eval()
    torch.nn.init.normal_(model.heads.head.weight, std=0.02)  # torchvision zeroes it: all-zero gradients
    images = torch.randn(batch, 3, size, size, device=dev)
    labels = torch.randint(0, 1000, (batch,), device=dev)
    method = build_method("legrad", model, "encoder.layers.encoder_layer_11.ln_1")
    with contextlib.redirect_stderr(io.StringIO()):
        mine = timer(lambda: eval_maps(method(images, labels).maps, size), batch)[0]
        with torchcam.methods.LeGrad(model, list(model.encoder.layers)[-2:]) as extractor:
            def run():
                with eval_mode(model):
                    extractor([int(t) for t in labels], model(images))

            theirs = timer(run, batch)[0]
    return "\n".join([
        "## A ViT method (torchvision `vit_b_16`, random weights, blocks 11 and 12; images per second)", "",
        "| method | wsol img/s | torchcam img/s | wsol ÷ torchcam |", "| :--- | ---: | ---: | ---: |",
        f"| legrad | {mine:,.1f} | {theirs:,.1f} | {mine / theirs:.2f}× |"])


def decomposition_table(model, modules, layer, stages, images, labels, timer) -> str:
    """The principal-component family's decomposition alone, on activations captured once, at two layers."""
    from pytorch_grad_cam.utils.svd_on_activations import (
        get_2d_projection,
        get_2d_projection_kernel,
        get_2d_projection_with_sign_correction,
    )

    lines = ["## The decomposition alone (same captured activations; maps per second)", "",
             "| method | layer, grid | wsol (batched) | pytorch-grad-cam (per image) | wsol ÷ pytorch-grad-cam |",
             "| :--- | :--- | ---: | ---: | ---: |"]
    for name in (layer, stages[-2]):
        with eval_mode(model), capture_activations(modules[name]) as store:
            scores = target_scores(model(images), labels)
            (g,) = torch.autograd.grad(scores.sum(), store["activations"])
        a = store["activations"].detach()
        grid = "×".join(map(str, a.shape[2:]))
        cases = (
            ("eigencam", lambda a=a: first_component_projection(a), lambda a=a: get_2d_projection(a.cpu().numpy())),
            ("eigengradcam", lambda a=a, g=g: first_component_projection(g * a),
             lambda a=a, g=g: get_2d_projection((g * a).cpu().numpy())),
            ("segeigencam", lambda a=a, g=g: first_component_projection(g.abs() * a, "largest"),
             lambda a=a, g=g: get_2d_projection_with_sign_correction((g.abs() * a).cpu().numpy())),
            ("kpcacam", lambda a=a: kernel_pca_projection(a), lambda a=a: get_2d_projection_kernel(a.cpu().numpy())),
        )
        for method, mine, theirs in cases:
            ours, lib = timer(mine, len(a))[0], timer(theirs, len(a))[0]
            lines.append(f"| {method} | `{name}`, {grid} | {ours:,.1f} | {lib:,.1f} | {ours / lib:.2f}× |")
    return "\n".join(lines)
