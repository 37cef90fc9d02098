"""Side-by-side speed of wsol's stages and of the other CAM libraries, in one process, on the same
model, batch and inputs. Writes a Markdown table to ``results/bench/``.

    python scripts/bench.py                         # resnet50, batch 64, 224², the default device
    python scripts/bench.py --device cpu --batch 8 --iters 2
    python scripts/bench.py --tiny --out /tmp/bench # seconds on a CPU (what CI runs)
    python scripts/bench.py --bootstrap             # the bootstrap intervals' cost at ImageNet size alone
    python scripts/bench.py --layouts               # forward speed by memory layout and batch-norm folding
    python scripts/bench.py --zoo --batch 32        # the zoo's methods beside the libraries' (scripts/bench_zoo.py)
    python scripts/bench.py --road                  # ROAD beside pytorch-grad-cam's ROADCombined (bench_faith.py)

Rows: raw forward; forward + backward to the target layer (the floor of every gradient method);
each wsol method's maps alone and end to end (maps, upsampling, min-max, uint8, the box sweep at
``--thresholds`` thresholds with each region rule, and the metric counts), also in the bf16,
channels-last, folded + channels-last and torch.compile modes; pytorch-grad-cam
and torchcam where installed (``pip install -e ".[bench]"``); then, in a second table, the box stage
alone per engine and region rule, on one core and on all, against a findContours-per-threshold loop
(the reference's procedure). Throughput in images (or maps) per second, the ratio to forward +
backward (or to the findContours loop), and peak GPU memory. Models use random
weights (nothing is downloaded); the GT boxes are random. Timings of one run: warm-up first,
then ``--iters`` timed repetitions, synchronised on CUDA.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import sys
import time
from collections.abc import Callable

import numba
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from wsol.cams import build_method  # noqa: E402
from wsol.cams.core import capture_activations, eval_mode, target_scores  # noqa: E402
from wsol.io import atomic_write_text  # noqa: E402
from wsol.localize import localize  # noqa: E402
from wsol.maps import eval_maps, quantize  # noqa: E402
from wsol.metrics import BoxAccumulator, PxAPAccumulator, topk_correct  # noqa: E402
from wsol.models import build_model, compile_around, default_layer, find_layer  # noqa: E402
from wsol.models.fold import fold_batchnorms  # noqa: E402

DEFAULT_METHODS = "cam,gradcam,gradcampp,xgradcam,layercam,eigencam"


class Timer:
    """Images per second of ``fn`` over ``iters`` repetitions after ``warmup``, and peak CUDA memory."""

    def __init__(self, device: torch.device, warmup: int, iters: int) -> None:
        self.device, self.warmup, self.iters = device, warmup, iters

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __call__(self, fn: Callable[[], object], items: int) -> tuple[float, float | None]:
        for _ in range(self.warmup):
            fn()
        self.sync()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        start = time.perf_counter()
        for _ in range(self.iters):
            fn()
        self.sync()
        seconds = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated(self.device) / 2**20 if self.device.type == "cuda" else None
        return items * self.iters / seconds, peak


def api_table(device: str, images: int, batch: int, repeats: int) -> str:
    """``wsol.evaluate(model, dataset)`` as a training loop calls it, against the CLI's loop
    (``wsol.pipeline.evaluate`` after the entry point's process settings) on the same demo images and model, in
    one process, alternating; the best of ``repeats`` of each, and whether the metrics agree."""
    import wsol
    from wsol.config import compose_config
    from wsol.pipeline import evaluate
    from wsol.run import process_settings

    base = [f"dataset.num_images={images}", f"batch_size={batch}", "method=gradcampp", "cache_dir=null",
            "progress=false", f"device={device}"]
    variants = {"the CLI's loop (its defaults: folded batch norms, channels-last on a CPU)": base,
                "the CLI's loop, the model as it is (`speed.fold_batchnorm=false speed.channels_last=false`)":
                    [*base, "speed.fold_batchnorm=false", "speed.channels_last=false"]}
    process_settings(compose_config(base))
    model = build_model("efficientnet_lite0").module.to(device)
    data = wsol.datasets.demo(num_images=images)
    api_label = "wsol.evaluate(model, dataset)"
    loop: dict[str, list[float]] = {k: [] for k in (*variants, api_label)}
    wall: dict[str, list[float]] = {k: [] for k in (*variants, api_label)}
    metrics: dict[str, dict] = {}
    for _ in range(repeats):
        for label, overrides in variants.items():
            start = time.perf_counter()
            result = evaluate(compose_config(overrides))
            wall[label].append(time.perf_counter() - start)
            loop[label].append(result.info["seconds"])
            metrics[label] = result.metrics
        start = time.perf_counter()
        api = wsol.evaluate(model, data, method="gradcampp", batch_size=batch)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        wall[api_label].append(time.perf_counter() - start)
        loop[api_label].append(api.info["seconds"])
        metrics[api_label] = api.metrics
    same = metrics[api_label] == metrics[list(variants)[0]]
    cli = list(variants)[0]
    ratio = min(wall[api_label]) / min(loop[cli])
    loop_ratio = min(loop[api_label]) / min(loop[cli])
    lines = [
        f"# wsol.evaluate vs the CLI's loop ({device}, {platform.processor() or 'cpu'}, "
        f"{torch.get_num_threads()} threads)", "",
        f"`python scripts/bench.py --api --api-images {images} --device {device}`: Grad-CAM++, EfficientNet-Lite0, "
        f"{images} demo images, batch {batch}, torch {torch.__version__}; best of {repeats}, alternating, in one "
        "process. *loop*: scoring + metrics, from the first batch to the last batch's metrics (`info['seconds']`; "
        "the DataLoader workers were started before the model was built or folded). *call*: from the call to its "
        "return (the CLI's: composing the config, building the model, starting the workers; `wsol.evaluate`'s: "
        "starting the workers, copying and folding the model, the loop).", "",
        "| loop | loop s | call s | images/s (call) |", "| :--- | ---: | ---: | ---: |",
    ]
    for k, v in wall.items():
        lines.append(f"| {k} | {min(loop[k]):.2f} | {min(v):.2f} | {images / min(v):.1f} |")
    lines += ["", f"wsol.evaluate's loop takes {loop_ratio:.2f}× the CLI loop's scoring + metrics on the same images, "
                  f"its whole call {ratio:.2f}×; it gives the CLI's default metrics, bit for bit: {same}.", ""]
    return "\n".join(lines)


def publish(path: str, text: str) -> str:
    """Write a results table (atomically), show it, and say where it went."""
    atomic_write_text(path, text)
    print(text)
    print(f"written to {path}")
    return path


def forward_backward(model: torch.nn.Module, layer: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor):
    """One forward and the backward to ``layer``'s activations: the work every gradient method must do."""
    with eval_mode(model), capture_activations(layer) as store:
        logits = model(images.requires_grad_(False))
        return torch.autograd.grad(target_scores(logits, labels).sum(), store["activations"])[0]


def accumulate(acc: BoxAccumulator, maps_u8: np.ndarray, gt_boxes, rule: str, engine: str = "fast", top1=None,
               top5=None) -> None:
    """Stage 4 and the box metrics of stage 5 for one batch of uint8 maps."""
    valid = np.ones(gt_boxes.shape[:2], dtype=bool)
    sweep = localize(maps_u8, acc.thresholds, gt_boxes, valid, rule, engine)
    acc.update(sweep, maps_u8.reshape(len(maps_u8), -1).max(1), gt_boxes, valid, top1, top5)


def end_to_end(method, images, labels, thresholds, gt_boxes, backend) -> None:
    """Maps → eval-size [0, 1] maps → uint8 → box sweep and counts, as the evaluation does per batch."""
    out = method(images, labels)
    maps, _ = eval_maps(out.maps, images.shape[-1])
    top5 = out.logits.topk(5, 1).indices.cpu().numpy()
    labels_np = labels.cpu().numpy()
    accumulate(BoxAccumulator(thresholds), quantize(maps).cpu().numpy(), gt_boxes, backend, "fast",
               topk_correct(top5, labels_np, 1), topk_correct(top5, labels_np, 5))


def contours_per_threshold(maps_u8: np.ndarray, thresholds: np.ndarray, gt_boxes: np.ndarray) -> None:
    """The reference's procedure: for every map and threshold, cv2.threshold, findContours, boxes, IoU."""
    import cv2

    from wsol.localize import box_iou

    for score_map, gt in zip(maps_u8, gt_boxes, strict=True):
        peak = int(score_map.max())
        for t in thresholds:
            _, mask = cv2.threshold(score_map, int(t * peak), 255, cv2.THRESH_BINARY)
            contours = cv2.findContours(mask, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[-2]
            rects = np.array([cv2.boundingRect(c) for c in contours] or [(0, 0, 0, 0)], dtype=np.int64)
            rects[:, 2:] += rects[:, :2]
            box_iou(rects, gt).max()


def library_rows(model, layer, images, labels, timer) -> list[tuple[str, float, float | None]]:
    """pytorch-grad-cam's and torchcam's Grad-CAM and Grad-CAM++, where installed."""
    rows = []
    try:
        from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        targets = [ClassifierOutputTarget(int(c)) for c in labels]
        for name, cls in (("pytorch-grad-cam GradCAM", GradCAM), ("pytorch-grad-cam GradCAM++", GradCAMPlusPlus)):
            with cls(model=model, target_layers=[layer]) as cam:
                rows.append((name, *timer(lambda cam=cam: cam(input_tensor=images, targets=targets), len(images))))
    except ImportError:
        rows.append(("pytorch-grad-cam (not installed)", float("nan"), None))
    try:
        from torchcam.methods import GradCAM as TorchCamGradCAM
        from torchcam.methods import GradCAMpp as TorchCamGradCAMpp

        for name, cls in (("torchcam GradCAM", TorchCamGradCAM), ("torchcam GradCAMpp", TorchCamGradCAMpp)):
            extractor = cls(model, target_layer=layer)

            def run(extractor=extractor) -> None:
                scores = model(images)
                extractor(class_idx=labels.tolist(), scores=scores)

            rows.append((name, *timer(run, len(images))))
            extractor.remove_hooks()
    except ImportError:
        rows.append(("torchcam (not installed)", float("nan"), None))
    return rows


def table(rows: list[tuple[str, float, float | None]], reference: float, header: str, unit: str, ratio: str) -> str:
    lines = [header, "", f"| stage | {unit} | {ratio} | peak GPU MiB |", "| :--- | ---: | ---: | ---: |"]
    for name, rate, peak in rows:
        ratio = rate / reference if np.isfinite(rate) else float("nan")
        cells = ["–" if not np.isfinite(v) else f"{v:,.1f}" for v in (rate,)] + [
            "–" if not np.isfinite(ratio) else f"{ratio:.2f}",
            "–" if peak is None else f"{peak:,.0f}",
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--layer", default=None, help="target layer (default: the model's default layer)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--thresholds", type=int, default=100, help="box sweep size (interval 1/N)")
    parser.add_argument("--methods", default=DEFAULT_METHODS)
    parser.add_argument("--box-maps", type=int, default=None, help="maps for the box-stage rows (default: batch)")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip the torch.compile rows")
    parser.add_argument("--tiny", action="store_true", help="resnet18, batch 4, 64², 10 thresholds, 1 iteration")
    parser.add_argument("--vs-peers", action="store_true",
                        help="whole-process runs against pytorch-grad-cam + the reference evaluator, start-up phases "
                             "and data loading alone, instead of the stage tables (scripts/bench_peers.py)")
    parser.add_argument("--images", default="64,1000", help="--vs-peers: image counts")
    parser.add_argument("--wsoleval", default=None, help="--vs-peers: a clovaai/wsolevaluation checkout")
    parser.add_argument("--repeats", type=int, default=2, help="--vs-peers: timed runs of each process")
    parser.add_argument("--workers", default="auto", help="--vs-peers: DataLoader workers of both pipelines")
    parser.add_argument("--loop-images", type=int, default=256, help="images of the serial vs overlapped table")
    parser.add_argument("--layouts", action="store_true",
                        help=f"only the forward by layout (NCHW, folded, channels-last, both) of {LAYOUT_MODELS}, "
                             "written to <out>/<device>_layouts.md")
    parser.add_argument("--bootstrap", action="store_true",
                        help="only the cost of the bootstrap intervals (50,000 images, 1,000 thresholds, 1,000 "
                             "resamples; PxAP at OpenImages size), written to <out>/bootstrap.md")
    parser.add_argument("--startup-before", default=None, metavar="COMMIT",
                        help="--vs-peers: also profile the start-up of this git commit (a temporary worktree)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.dirname(__file__)), "results", "bench"))
    parser.add_argument("--api", action="store_true",
                        help="wsol.evaluate (in a training loop) vs the CLI's loop on --api-images demo images")
    parser.add_argument("--api-images", type=int, default=1000)
    parser.add_argument("--zoo", action="store_true",
                        help="the zoo's methods beside pytorch-grad-cam's and torchcam's own at --batch (32), written "
                             "to <out>/zoo_vs_libraries.md (cuda_zoo_vs_libraries.md on a GPU)")
    parser.add_argument("--road", action="store_true",
                        help="ROAD beside pytorch-grad-cam's ROADCombined on --road-images demo images, written to "
                             "<out>/<device>_road.md (scripts/bench_faith.py)")
    parser.add_argument("--road-images", type=int, default=8)
    args = parser.parse_args(argv)
    if args.road:
        from bench_faith import road_table

        text = road_table(args.device, args.road_images, (10, 20, 30, 40, 50, 60, 70, 80, 90), args.repeats)
        return publish(os.path.join(args.out, f"{'cuda' if args.device.startswith('cuda') else 'cpu'}_road.md"), text)
    if args.zoo:
        from bench_zoo import zoo_table

        cuda = args.device.startswith("cuda")
        model = args.model if args.model != "resnet50" or cuda else "resnet18"  # the CPU default: ResNet-18
        iters, warmup = (args.iters, args.warmup) if cuda else (min(args.iters, 2), min(args.warmup, 1))
        text = zoo_table(model, args.device, args.batch, args.size, Timer(torch.device(args.device), warmup, iters),
                         warmup, iters)
        return publish(os.path.join(args.out, f"{'cuda_' if cuda else ''}zoo_vs_libraries.md"), text)
    if args.api:
        text = api_table(args.device, args.api_images, min(args.batch, 32), args.repeats)
        return publish(os.path.join(args.out, f"{'cuda' if args.device.startswith('cuda') else 'cpu'}_api.md"), text)
    if args.vs_peers:
        return whole_process(args)
    if args.layouts:
        text = layouts_table(args.device, args.batch, LAYOUT_MODELS.split(","), args.iters)
        path = os.path.join(args.out, f"{'cuda' if args.device.startswith('cuda') else 'cpu'}_layouts.md")
        return publish(path, text)
    if args.bootstrap:
        text = bootstrap_table(2_000 if args.tiny else 50_000, 1_000, 1_000)
        path = os.path.join(args.out, "bootstrap.md")
        return publish(path, text)
    if args.tiny:
        args.model, args.batch, args.size, args.iters, args.warmup, args.thresholds = "resnet18", 4, 64, 1, 1, 10
        args.compile = False  # minutes of compilation on a CPU
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_model(args.model, weights=None).module.to(device).eval()
    layer_name = args.layer or default_layer(model, args.size)
    layer = dict(model.named_modules())[layer_name]
    images = torch.randn(args.batch, 3, args.size, args.size, device=device)
    labels = torch.randint(0, 1000, (args.batch,), device=device)
    rng = np.random.default_rng(0)
    corners = np.sort(rng.integers(0, args.size, (args.batch, 1, 2, 2)), axis=2)  # [B, 1, (x, y) lo/hi]
    gt_boxes = np.concatenate([corners[:, :, 0], corners[:, :, 1]], axis=-1)  # x0, y0, x1, y1
    thresholds = np.arange(args.thresholds) / args.thresholds
    timer = Timer(device, args.warmup, args.iters)
    n = args.batch

    rows: list[tuple[str, float, float | None]] = []
    with torch.no_grad():
        rows.append(("raw forward", *timer(lambda: model(images), n)))
    fwd_bwd = timer(lambda: forward_backward(model, layer, images, labels), n)
    rows.append(("forward + backward to the layer", *fwd_bwd))
    for name in args.methods.split(","):
        method = build_method(name, model, layer_name)
        rows.append((f"wsol {name}: maps", *timer(lambda method=method: method(images, labels), n)))
        for backend in ("cc", "contours"):
            rows.append(
                (
                    f"wsol {name}: end to end, {backend} boxes",
                    *timer(lambda m=method, b=backend: end_to_end(m, images, labels, thresholds, gt_boxes, b), n),
                )
            )
    for name in ("gradcam", "gradcampp"):  # the speed modes (speed.precision, .channels_last, .fold_batchnorm)
        method = build_method(name, model, layer_name)

        def bf16(method=method) -> None:
            with torch.autocast(device.type, dtype=torch.bfloat16):
                end_to_end(method, images, labels, thresholds, gt_boxes, "contours")

        rows.append((f"wsol {name}: end to end, contours boxes, bf16", *timer(bf16, n)))
    model.to(memory_format=torch.channels_last)
    last = images.contiguous(memory_format=torch.channels_last)
    folded = copy.deepcopy(model)  # the CPU default: folded batch norms, channels-last
    fold_batchnorms(folded, images[:1], keep=(layer_name,))
    for net, mode in ((model, "channels_last"), (folded, "folded batch norms, channels_last")):
        for name in ("gradcam", "gradcampp"):
            method = build_method(name, net, layer_name)
            run = lambda m=method: end_to_end(m, last, labels, thresholds, gt_boxes, "contours")  # noqa: E731
            rows.append((f"wsol {name}: end to end, contours boxes, {mode}", *timer(run, n)))
    del folded
    model.to(memory_format=torch.contiguous_format)
    rows += library_rows(model, layer, images, labels, timer)
    if args.compile:  # last: compiles the model in place (speed.compile=true)
        compile_around(model, [layer_name])
        for name in ("gradcam", "gradcampp"):
            method = build_method(name, model, layer_name)
            run = lambda m=method: end_to_end(m, images, labels, thresholds, gt_boxes, "contours")  # noqa: E731
            rows.append((f"wsol {name}: end to end, contours boxes, torch.compile", *timer(run, n)))

    wsoleval_rows, wsoleval_fwd_bwd = wsoleval_table(device, images, labels, thresholds, gt_boxes, timer)

    count = args.box_maps or n
    maps = eval_maps(build_method("gradcam", model, layer_name)(images, labels).maps, args.size)[0]
    maps_u8 = quantize(maps).cpu().numpy()[:count]
    maps_u8 = np.concatenate([maps_u8] * (-(-count // len(maps_u8))))[:count]
    boxes = np.concatenate([gt_boxes] * (-(-count // len(gt_boxes))))[:count]
    cpu = Timer(torch.device("cpu"), args.warmup, args.iters)
    box_rows: list[tuple[str, float, float | None]] = []
    baseline = cpu(lambda: contours_per_threshold(maps_u8, thresholds, boxes), count)
    box_rows.append(("findContours per threshold (the reference's procedure)", *baseline))
    threads = numba.get_num_threads()
    numba.set_num_threads(1)  # per core
    for engine in ("fast", "reference"):
        for rule in ("cc", "contours"):
            rate = cpu(lambda r=rule, e=engine: accumulate(BoxAccumulator(thresholds), maps_u8, boxes, r, e), count)
            box_rows.append((f"{engine} engine, {rule} regions, 1 thread", *rate))
    numba.set_num_threads(threads)
    for rule in ("cc", "contours"):
        rate = cpu(lambda r=rule: accumulate(BoxAccumulator(thresholds), maps_u8, boxes, r), count)
        box_rows.append((f"fast engine, {rule} regions, {threads} threads", *rate))
    fallbacks = BoxAccumulator(thresholds)
    accumulate(fallbacks, maps_u8, boxes, "contours")

    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU ({platform.processor() or 'cpu'}, {torch.get_num_threads()} threads)"
    )
    header = (
        f"# wsol bench: {args.model} at `{layer_name}`, batch {n}, {args.size}², {args.thresholds} thresholds\n\n"
        f"{name}; torch {torch.__version__}; random weights and inputs; {args.iters} timed iterations after "
        f"{args.warmup} warm-up. End-to-end rows use the default fast box engine."
    )
    box_header = (
        f"## Box stage: {count} Grad-CAM maps of this model, {args.thresholds} thresholds, on the CPU\n\n"
        f"Maps per second, and the ratio to the findContours-per-threshold loop (one core). The contours rule "
        f"handed {fallbacks.fallbacks} of its cut levels (holes or tied areas) to OpenCV."
    )
    text = table(rows, fwd_bwd[0], header, "images/s", "× fwd+bwd")
    text += "\n" + table(box_rows, baseline[0], box_header, "maps/s", "× findContours")
    wsoleval_header = (
        "## A WSOL model: wsolevaluation's ResNet50 (`model=wsoleval_resnet50 model.large_feature_map=true`)\n\n"
        f"The `cam` type with `layer3` at stride 1: {args.size // 8}×{args.size // 8} maps at `layer4`, 1000 "
        "classes, random weights; the same batch, boxes and path as above (contours boxes), ratio to this model's "
        "forward + backward."
    )
    text += "\n" + table(wsoleval_rows, wsoleval_fwd_bwd, wsoleval_header, "images/s", "× fwd+bwd")
    if device.type == "cpu" or args.tiny:
        text += "\n" + loop_table(8 if args.tiny else args.loop_images, 4 if args.tiny else 32, 1 if args.tiny else 2)
    tag = "cuda" if device.type == "cuda" else "cpu"
    path = os.path.join(args.out, f"{tag}_{args.model}_b{n}_{args.size}.md")
    return publish(path, text)


LAYOUT_MODELS = "resnet18,resnet50,vgg16_bn,efficientnet_b0,mobilenet_v3_large,convnext_tiny"


def layouts_table(device_name: str, batch: int, models: list[str], repeats: int) -> str:
    """Images per second of each torchvision model's forward (random weights and inputs) as written (NCHW), with
    its batch norms folded (``speed.fold_batchnorm``), in channels-last (``speed.channels_last``), and both: the
    variants interleaved ``repeats`` times, best kept, so that a drifting machine favours none."""
    import torchvision

    device = torch.device(device_name)
    lines = [
        f"# Forward by layout ({device_name}, batch {batch}, 224², fp32)", "",
        f"`python scripts/bench.py --layouts --device {device_name} --batch {batch} --iters {repeats}`; torch "
        f"{torch.__version__}. Random weights and inputs, inference mode; the four variants of a model run "
        f"interleaved, {repeats} rounds after a warm-up, best kept. Folded pairs: how many batch norms "
        "`wsol.models.fold` merged.", "",
        "| model | folded pairs | NCHW img/s | folded | channels-last | folded + channels-last | best / NCHW |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in models:
        torch.manual_seed(0)
        plain = torchvision.models.get_model(name, num_classes=1000).eval().to(device)
        x = torch.randn(batch, 3, 224, 224, device=device)
        folded = copy.deepcopy(plain)
        pairs = fold_batchnorms(folded, x[:1])
        last = x.contiguous(memory_format=torch.channels_last)
        variants = [(plain, x), (folded, x), (copy.deepcopy(plain).to(memory_format=torch.channels_last), last),
                    (copy.deepcopy(folded).to(memory_format=torch.channels_last), last)]
        timer = Timer(device, 0, 1)
        rates = [0.0] * len(variants)
        with torch.inference_mode():
            for model, inputs in variants:
                model(inputs)
            for _ in range(repeats):
                for i, (model, inputs) in enumerate(variants):
                    rates[i] = max(rates[i], timer(lambda m=model, a=inputs: m(a), batch)[0])
        lines.append(f"| {name} | {len(pairs)} | " + " | ".join(f"{r:.1f}" for r in rates)
                     + f" | {max(rates) / rates[0]:.2f}× |")
        print(lines[-1], flush=True)
    return "\n".join(lines) + "\n"


def bootstrap_table(images: int, thresholds: int, resamples: int, masks: int = 30_000) -> str:
    """Seconds and peak memory (tracemalloc: numpy's allocations) of the bootstrap intervals at
    ``eval.bootstrap=resamples``: drawing the resamples, every box metric with the thresholds re-chosen per
    resample, and PxAP from per-image histograms. The box records are those of 500 localized random maps,
    repeated to ``images`` (the cost depends only on the sizes)."""
    import tracemalloc

    from wsol.metrics.bootstrap import percentile_interval, resample_weights

    rng = np.random.default_rng(0)
    size, base = 64, 500
    smooth = torch.nn.functional.avg_pool2d(torch.rand(base, 1, size, size), 9, 1, 4)[:, 0].numpy()
    maps = quantize(torch.from_numpy(smooth / smooth.reshape(base, -1).max(1)[:, None, None])).numpy()
    corners = np.sort(rng.integers(0, size, (base, 1, 2, 2)), axis=2)
    gt = np.concatenate([corners[:, :, 0], corners[:, :, 1]], axis=-1)
    grid = np.arange(thresholds) / thresholds
    acc = BoxAccumulator(grid)
    sweep = localize(maps, grid, gt, np.ones((base, 1), bool))
    acc.update(sweep, maps.reshape(base, -1).max(1), gt, np.ones((base, 1), bool), rng.random(base) < 0.7,
               rng.random(base) < 0.9)
    acc.records, acc.count = acc.records * (images // base), images // base * base
    pxap = PxAPAccumulator(1 / thresholds)
    bins = len(pxap.edges) - 1
    per_image = rng.integers(0, 60, (masks, bins)).astype(np.uint16)
    pxap.add(per_image, per_image[::-1].copy())
    rows = []
    weights, mask_weights = resample_weights(acc.count, resamples), resample_weights(masks, resamples)
    for name, work in (
        (f"draw {resamples:,} resamples of {images:,} images", lambda: resample_weights(acc.count, resamples)),
        (f"box metrics, {images:,} images × {thresholds:,} thresholds", lambda: acc.bootstrap(weights)),
        (f"PxAP, {masks:,} images × {bins:,} bins", lambda: pxap.bootstrap(mask_weights)),
    ):
        tracemalloc.start()
        start = time.perf_counter()
        out = work()
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        if isinstance(out, dict):
            assert all(np.isfinite(percentile_interval(v)).all() for v in out.values())
        rows.append(f"| {name} | {seconds:.2f} | {peak:,.0f} |")
    return "\n".join([
        f"# The bootstrap intervals' cost ({platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, numpy {np.__version__})", "",
        f"`eval.bootstrap={resamples}` (the default) at ILSVRC's size: {images:,} images at {thresholds:,} "
        f"thresholds (`protocol=wsoleval_v2`), every box metric with the thresholds chosen again in each resample; "
        f"PxAP at OpenImages' size from per-image histograms ({masks:,} images at interval {1 / thresholds:g}). "
        "Peak memory is what numpy allocates beyond the accumulators (tracemalloc); the resample weights are "
        f"uint8, {resamples:,} × {images:,} bytes. Once per run, at its end.", "",
        "| step | seconds | peak MiB |", "| :--- | ---: | ---: |", *rows, "",
    ])


def wsoleval_table(device, images, labels, thresholds, gt_boxes, timer) -> tuple[list, float]:
    """wsolevaluation's ResNet50 (``cam``, ``large_feature_map=true``) through the same batched path: forward,
    forward + backward, and CAM (its own map) and Grad-CAM++ end to end."""
    torch.manual_seed(0)
    model = build_model("wsoleval_resnet50", weights=None, large_feature_map=True).module.to(device).eval()
    layer_name = default_layer(model, images.shape[-1])
    n = len(images)
    rows: list[tuple[str, float, float | None]] = []
    with torch.no_grad():
        rows.append(("raw forward", *timer(lambda: model(images), n)))
    fwd_bwd = timer(lambda: forward_backward(model, find_layer(model, layer_name), images, labels), n)
    rows.append((f"forward + backward to `{layer_name}`", *fwd_bwd))
    for name, options in (("cam", {"relu": False}), ("gradcampp", {})):
        method = build_method(name, model, layer_name, **options)
        run = lambda m=method: end_to_end(m, images, labels, thresholds, gt_boxes, "contours")  # noqa: E731
        rows.append((f"wsol {name}: end to end, contours boxes", *timer(run, n)))
    return rows, fwd_bwd[0]


def loop_table(images: int, batch: int, repeats: int, model: str = "resnet18") -> str:
    """The evaluation loop on the same batches, serial and overlapped, with the cores split between scoring
    (torch's threads) and the box stage (numba's): end-to-end images per second of the loop, best of
    ``repeats``, and whether every metric is identical."""
    import tempfile

    import bench_peers

    from wsol.config import compose_config
    from wsol.pipeline import evaluate
    from wsol.run import process_settings
    from wsol.stages import available_cores

    cores = available_cores()
    splits = list(dict.fromkeys([(cores, None), (cores, cores), (cores, 1), (max(1, cores - 1), 1), (1, 1)]))
    rows, reference = [], None
    with tempfile.TemporaryDirectory() as folder:
        root, metadata = bench_peers.write_split(folder, images)
        base = [
            "dataset=wsoleval", f"dataset.root={root}", f"dataset.metadata_root={metadata}", f"model={model}",
            "model.weights=null", "model.layer=layer4", "method=gradcampp", "protocol=wsoleval_v2",
            f"batch_size={batch}", "cache_dir=null", "progress=false", "device=cpu",
        ]
        threads = torch.get_num_threads()
        for torch_threads, box_threads in splits:
            for overlap in (False, True):
                torch.set_num_threads(torch_threads)
                cfg = compose_config([*base, f"speed.overlap={overlap}", f"speed.box_threads={box_threads or 'null'}"])
                process_settings(cfg)  # as the CLI's entry point does
                results = [evaluate(cfg) for _ in range(repeats)]
                seconds = min(r.info["seconds"] for r in results)
                reference = reference or results[0].metrics
                same = all(r.metrics == reference for r in results)
                label = f"{'overlapped' if overlap else 'serial'}, scoring {torch_threads} thread(s), boxes " + (
                    f"{box_threads} thread(s)" if box_threads else "`null` (the default)")
                rows.append((label, images / seconds, same))
                print(f"| {label} | {images / seconds:.1f} | {same} |", flush=True)
        torch.set_num_threads(threads)
    serial = {label.split(", ", 1)[1]: rate for label, rate, _ in rows if label.startswith("serial")}
    lines = [
        "## The loop: serial vs overlapped", "",
        f"{images} demo photographs written as JPEG files, {model} (random weights) Grad-CAM++ at `layer4`, "
        f"`protocol=wsoleval_v2` (1,000 thresholds, contours), batch {batch}, DataLoader workers `auto`; the "
        f"evaluation loop's images per second (`info.seconds`: loading, scoring, maps, boxes, metrics), best of "
        f"{repeats}. Overlapped: batch i is localized and accumulated on a thread while batch i + 1 is scored. "
        "Same metrics: every run's metrics equal the first run's, bit for bit.", "",
        "| loop | images/s | × serial, same split | same metrics |", "| :--- | ---: | ---: | :---: |",
    ]
    for label, rate, same in rows:
        ratio = rate / serial[label.split(", ", 1)[1]]
        lines.append(f"| {label} | {rate:,.1f} | {ratio:.2f} | {'yes' if same else 'NO'} |")
    best = {kind: max(rate for label, rate, _ in rows if label.startswith(kind)) for kind in ("serial", "overlapped")}
    default = {kind: rate for label, rate, _ in rows if "`null`" in label for kind in [label.split(",")[0]]}
    lines += [
        "",
        f"With the defaults (`speed.box_threads=null`: half the cores when overlapped on the CPU, every core when "
        f"serial) the overlapped loop runs at {default['overlapped'] / default['serial']:.2f}× the serial one; the "
        f"best overlapped split at {best['overlapped'] / best['serial']:.2f}× the best serial one.",
    ]
    return "\n".join(lines) + "\n"


def _startup_in(tree: str, folder: str) -> dict[str, float]:
    """The start-up phases of the wsol in ``tree`` (:data:`bench_peers.STARTUP_PROBE`), in a fresh process; run
    twice, the second measured: it finds whatever the first left in its caches (compiled kernels)."""
    import subprocess

    import bench_peers

    for attempt in range(2):
        stats, run_dir = os.path.join(folder, f"profile{attempt}"), os.path.join(folder, f"run{attempt}")
        proc = subprocess.run([sys.executable, "-c", bench_peers.STARTUP_PROBE, stats, run_dir], cwd=tree,
                              env={**os.environ, "PYTHONPATH": tree}, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0 or not os.path.isfile(os.path.join(run_dir, "metrics.json")):
            raise RuntimeError(f"the start-up probe failed in {tree}:\n{proc.stderr[-3000:]}")
    return bench_peers.startup_phases(stats, float(proc.stdout.strip().splitlines()[-1]))


def whole_process(args) -> str:
    """``--vs-peers``: the start-up phases (before / after), the whole-process comparison, the loader alone."""
    import shutil
    import subprocess
    import tempfile

    import bench_peers

    from wsol.stages import available_cores, resolve_workers

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    workers = resolve_workers(args.workers)
    cores = available_cores()
    sections = [
        f"# wsol vs the pipeline users would otherwise run ({platform.processor() or 'cpu'}, {cores} cores)\n\n"
        f"`python scripts/bench.py --vs-peers --images {args.images}`; torch {torch.__version__}. "
        + bench_peers.__doc__.split("\n\n", 1)[1].replace("\n", " ").strip() + "\n"
    ]
    with tempfile.TemporaryDirectory() as folder:
        after = _startup_in(repo, os.path.join(folder, "after"))
        before = None
        if args.startup_before:
            tree = os.path.join(folder, "before")
            subprocess.run(["git", "-C", repo, "worktree", "add", "--detach", tree, args.startup_before],
                           check=True, capture_output=True)
            try:
                before = _startup_in(tree, os.path.join(folder, "before-runs"))
            finally:
                subprocess.run(["git", "-C", repo, "worktree", "remove", "--force", tree], capture_output=True)
                shutil.rmtree(tree, ignore_errors=True)
    lines = [
        "## Start-up to the first batch, by phase", "",
        "`python -m wsol.run limit=8 batch_size=8 cache_dir=null` (the offline default: EfficientNet-Lite0, demo, "
        "Grad-CAM) under cProfile from the interpreter's first import, the second of two fresh processes; "
        "cumulative seconds per phase (profiling inflates them). The box sweep of the first batch includes "
        "loading (or compiling) the box kernels.", "",
        f"| phase | {'before (' + args.startup_before + ') s | ' if before else ''}now s |",
        f"| --- | {'---: | ' if before else ''}---: |",
    ]
    for label in ["whole process, profiled", "imports (before main)", *bench_peers.STARTUP_PHASES.values()]:
        cells = ([f"{before.get(label, 0.0):.2f}"] if before else []) + [f"{after.get(label, 0.0):.2f}"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    sections.append("\n".join(lines) + "\n")
    counts = [int(v) for v in args.images.split(",")]
    sections.append(bench_peers.vs_peers(counts, args.wsoleval, 32, args.repeats, workers))
    sections.append(bench_peers.floor(max(counts), 32))
    sections.append(bench_peers.loader_rates(256, sorted({0, 1, 2, max(1, cores - 1), cores}), 32))
    text = "\n".join(sections)
    path = os.path.join(args.out, "cpu_vs_peers.md")
    return publish(path, text)


if __name__ == "__main__":
    main()
