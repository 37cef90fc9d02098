"""ROAD beside pytorch-grad-cam 1.5.7's ``ROADCombined``, in one process, on the same model, demo images, maps,
targets and percentiles (``python scripts/bench.py --road``; written to ``results/bench/``).

Both score the class probability (pytorch-grad-cam's ``ClassifierOutputSoftmaxTarget``; wsol's default
``perturbation.score=softmax``) with the imputation noise off, so their values can be compared: the table gives the
largest difference. Timings are the best of ``repeats`` calls of each, alternating.
"""

from __future__ import annotations

import contextlib
import platform
import time

import numpy as np
import torch


def road_table(device: str, images: int, percentiles: tuple[int, ...], repeats: int) -> str:
    from pytorch_grad_cam.metrics import road as pgc_road
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    import wsol
    from wsol.faithfulness import Faithfulness, FaithfulnessOptions
    from wsol.maps import eval_maps
    from wsol.models import build_model
    from wsol.ops import InputNormalization

    dev = torch.device(device)
    model = build_model("efficientnet_lite0").module.to(dev).eval()  # the demo's pretrained classifier
    data = wsol.datasets.demo(num_images=images)
    batch = wsol.datasets.collate([data[i] for i in range(images)])
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    normalise = InputNormalization(mean, std, dev)
    inputs = normalise(batch.images.to(dev))
    targets = batch.labels.to(dev)
    cam = wsol.cams.build("gradcampp", model, layer="features")
    maps = eval_maps(cam(inputs, targets=targets).maps.detach(), inputs.shape[-1])[0]
    options = FaithfulnessOptions(road_percentiles=tuple(percentiles), road_noise=0.0, chunk=64)
    ours_metric = Faithfulness(model, mean, std, dev, ("road",), options)
    theirs_metric = pgc_road.ROADCombined(list(percentiles))
    their_targets = [ClassifierOutputSoftmaxTarget(int(t)) for t in targets]

    def ours():
        with torch.no_grad():
            return ours_metric(batch.images, maps, targets)["road"].cpu().numpy()

    @contextlib.contextmanager
    def without_noise():
        original = pgc_road.torch.randn_like
        pgc_road.torch.randn_like = torch.zeros_like
        try:
            yield
        finally:
            pgc_road.torch.randn_like = original

    def theirs():
        with without_noise():
            return np.asarray(theirs_metric(inputs.cpu(), maps.cpu().numpy(), their_targets, model.cpu()),
                              dtype=np.float64)

    seconds = {"wsol": [], "pytorch-grad-cam": []}
    values = {}
    for _ in range(repeats):
        for name, fn in (("wsol", ours), ("pytorch-grad-cam", theirs)):
            if name == "wsol":
                model.to(dev)
            start = time.perf_counter()
            values[name] = fn()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            seconds[name].append(time.perf_counter() - start)
    delta = float(np.abs(values["wsol"] - values["pytorch-grad-cam"]).max())
    best = {k: min(v) for k, v in seconds.items()}
    lines = [
        f"# ROAD beside pytorch-grad-cam's ROADCombined ({device}, {platform.processor() or 'cpu'}, "
        f"{torch.get_num_threads()} threads)", "",
        f"`python scripts/bench.py --road --device {device}`: {images} demo images (224²), EfficientNet-Lite0 "
        f"(pretrained), Grad-CAM++ maps, percentiles {list(percentiles)} (MoRF and LeRF: {2 * len(percentiles)} "
        f"imputations per image), softmax scores, noise off; torch {torch.__version__}; best of {repeats}, "
        "alternating, in one process. pytorch-grad-cam runs on the CPU (its imputation is SciPy's `spsolve`); "
        "wsol on the device (`impute_linear`: one sparse LU of each thread's block-diagonal system on a CPU, "
        "conjugate gradients on a GPU).", "",
        "| implementation | seconds | images/s |", "| :--- | ---: | ---: |",
    ]
    for name, s in best.items():
        lines.append(f"| {name} | {s:.2f} | {images / s:.2f} |")
    lines += ["", f"wsol ran {best['pytorch-grad-cam'] / best['wsol']:.2f}× as fast as pytorch-grad-cam; the largest "
                  f"difference of the per-image ROAD values was {delta:.2e} (score units).", ""]
    return "\n".join(lines)
