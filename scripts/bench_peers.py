"""Whole-process speed: wsol against the pipeline users would otherwise write, start-up to the first batch,
and what the data loader alone delivers. Run through ``scripts/bench.py --vs-peers``.

The peer pipeline is pytorch-grad-cam's ``GradCAMPlusPlus`` for the maps and wsolevaluation's own data
loader (``WSOLImageLabelDataset``) and ``BoxEvaluator`` (every contour, interval 0.001) for the metrics,
the reference evaluator taken from a checkout (``--wsoleval PATH``: it is not on PyPI; it needs its own
requirement ``munch``, and ``np.float``, which numpy 1.24 removed, is aliased to ``float`` for it).
Both run as fresh processes on the same JPEG files and metadata (written from the demo generator), the
same random ResNet-18 checkpoint, layer ``layer4``, GT-class targets and DataLoader workers, and wsol makes
its maps as pytorch-grad-cam does (``method.eps=1e-6``: its Grad-CAM++ denominator;
``localize.normalize=before_resize localize.resize=bilinear``: min-max at feature resolution, bilinear,
min-max again), so both evaluate the same maps up to float32 rounding; each is run
once to warm up (wsol's compiled box kernels are then in their disk cache, as on any machine after the
first run), then timed ``--repeats`` times, best kept. Both pay their interpreter start and imports.
"""

from __future__ import annotations

import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PEER_PROGRAM = r'''
import json, sys, time
import numpy as np
np.float = float  # wsolevaluation predates numpy 1.24, which removed this alias
sys.path.insert(0, {wsoleval!r})
import torch, torchvision
from pytorch_grad_cam import GradCAMPlusPlus
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch.utils.data import DataLoader
from torchvision import transforms
from data_loaders import WSOLImageLabelDataset, configure_metadata
from evaluation import BoxEvaluator

model = torchvision.models.resnet18(num_classes=1000)
model.load_state_dict(torch.load({checkpoint!r}, weights_only=True))
model.eval()
transform = transforms.Compose([
    transforms.Resize((224, 224)), transforms.ToTensor(),
    transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
])
dataset = WSOLImageLabelDataset(data_root={root!r}, metadata_root={metadata!r}, transform=transform, proxy=False)
loader = DataLoader(dataset, batch_size={batch}, num_workers={workers})
evaluator = BoxEvaluator(
    metadata=configure_metadata({metadata!r}), dataset_name="ILSVRC", split="test",
    cam_threshold_list=list(np.arange(0, 1, 0.001)), iou_threshold_list=[30, 50, 70], mask_root=None,
    multi_contour_eval=True,
)
with GradCAMPlusPlus(model=model, target_layers=[model.layer4]) as cam:
    for images, labels, image_ids in loader:
        maps = cam(input_tensor=images, targets=[ClassifierOutputTarget(int(c)) for c in labels])
        for scoremap, image_id in zip(maps, image_ids):
            evaluator.accumulate(scoremap.astype(np.float64), image_id)
print(json.dumps(evaluator.compute()))
'''


def write_split(folder: str, count: int, seed: int = 0) -> tuple[str, str]:
    """``count`` demo photographs as JPEG files (their own varied sizes) with wsolevaluation metadata:
    ``(image root, metadata folder)``."""
    from wsol.data.demo import DemoDataset

    demo = DemoDataset(num_images=count, seed=seed)
    root, metadata = os.path.join(folder, "images"), os.path.join(folder, "metadata")
    os.makedirs(os.path.join(root, "val"), exist_ok=True)
    os.makedirs(metadata, exist_ok=True)
    lines: dict[str, list[str]] = {"image_ids": [], "class_labels": [], "image_sizes": [], "localization": []}
    for index, record in enumerate(demo.records):
        image_id = f"val/{index:05d}.jpg"
        demo.load_image(record).save(os.path.join(root, image_id), quality=90)
        w, h = record.size
        lines["image_ids"].append(image_id)
        lines["class_labels"].append(f"{image_id},{record.label}")
        lines["image_sizes"].append(f"{image_id},{w},{h}")
        lines["localization"] += [f"{image_id},{','.join(str(int(v)) for v in box)}" for box in record.boxes]
    for name, rows in lines.items():
        with open(os.path.join(metadata, f"{name}.txt"), "w") as f:
            f.write("\n".join(rows) + "\n")
    return root, metadata


def write_checkpoint(path: str, seed: int = 0) -> str:
    """A ResNet-18 with random weights (seeded), as a ``state_dict`` file both pipelines load."""
    import torchvision

    torch.manual_seed(seed)
    torch.save(torchvision.models.resnet18(num_classes=1000).state_dict(), path)
    return path


def _timed(cmd: list[str], cwd: str, env: dict[str, str] | None = None) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=7200)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} … failed:\n{proc.stderr[-3000:]}")
    return seconds, proc.stdout


def wsol_command(root: str, metadata: str, checkpoint: str, run_dir: str, batch: int, workers: str) -> list[str]:
    return [
        sys.executable, "-m", "wsol.run", "dataset=wsoleval", f"dataset.root={root}",
        f"dataset.metadata_root={metadata}", "model=resnet18", f"model.checkpoint={checkpoint}",
        "model.num_classes=1000", "model.layer=layer4", "method=gradcampp", "protocol=wsoleval_v2",
        "method.eps=1e-6", "localize.normalize=before_resize", "localize.resize=bilinear",  # pytorch-grad-cam's maps
        f"batch_size={batch}", f"num_workers={workers}", "cache_dir=null", "progress=false", "device=cpu",
        f"hydra.run.dir={run_dir}",
    ]


def vs_peers(counts: list[int], wsoleval: str | None, batch: int, repeats: int, workers: int) -> str:
    """The whole-process table at each image count."""
    lines = [
        "## Whole process: wsol vs pytorch-grad-cam + the reference evaluator", "",
        "ResNet-18 (random, seeded), Grad-CAM++ at `layer4`, GT-class targets, `protocol=wsoleval_v2` "
        f"(interval 0.001, all contours), batch {batch}, {workers} DataLoader worker(s), on the CPU; "
        f"best of {repeats} after a warm-up run. Seconds include interpreter start and imports.", "",
        "| images | wsol s | wsol img/s | peer s | peer img/s | peer / wsol | MaxBoxAccV2 IoU30 / 50 / 70, wsol "
        "| the same, peer | equal |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |",
    ]
    if wsoleval is None:
        print("peer row skipped: pass --wsoleval PATH (a clovaai/wsolevaluation checkout) to time the reference "
              "evaluator", file=sys.stderr)
    for count in counts:
        with tempfile.TemporaryDirectory() as folder:
            root, metadata = write_split(folder, count)
            checkpoint = write_checkpoint(os.path.join(folder, "resnet18.pth"))
            run_dir = os.path.join(folder, "run")
            cmd = wsol_command(root, metadata, checkpoint, run_dir, batch, str(workers))
            peer_cmd = None
            if wsoleval:
                program = os.path.join(folder, "peer.py")
                with open(program, "w") as f:
                    f.write(PEER_PROGRAM.format(wsoleval=os.path.abspath(wsoleval), checkpoint=checkpoint, root=root,
                                                metadata=metadata, batch=batch, workers=workers))
                peer_cmd = [sys.executable, program]
            wsol_times, peer_times, peer_out = [], [], ""
            for attempt in range(repeats + 1):  # the first is the warm-up
                shutil.rmtree(run_dir, ignore_errors=True)
                seconds, _ = _timed(cmd, REPO)
                wsol_times += [seconds] if attempt else []
                if peer_cmd:
                    seconds, peer_out = _timed(peer_cmd, folder)
                    peer_times += [seconds] if attempt else []
            with open(os.path.join(run_dir, "metrics.json")) as f:
                m = json.load(f)["metrics"]
            ours = [m[f"maxboxacc_v2_iou{d}"] for d in (30, 50, 70)]
            w = min(wsol_times)
            row = f"| {count:,} | {w:.1f} | {count / w:.1f} | "
            if peer_cmd:
                theirs = json.loads(peer_out.strip().splitlines()[-1])
                p = min(peer_times)
                equal = "yes" if np.allclose(ours, theirs, rtol=0, atol=1e-9) else "no"
                row += f"{p:.1f} | {count / p:.1f} | {p / w:.2f}× | {' / '.join(f'{v:.2f}' for v in ours)} | "
                row += f"{' / '.join(f'{v:.2f}' for v in theirs)} | {equal} |"
            else:
                row += f"– | – | – | {' / '.join(f'{v:.2f}' for v in ours)} | not measured | – |"
            lines.append(row)
            print(lines[-1], flush=True)
    return "\n".join(lines) + "\n"


FORWARD_PROGRAM = r"""
import sys, time
import torch, torchvision
from wsol.allocator import keep_freed_memory
from wsol.models.fold import fold_batchnorms

mode, count, batch, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.manual_seed(0)
model = torchvision.models.resnet18(num_classes=1000).eval()
images = torch.randn(batch, 3, 224, 224)
if mode == "forward_backward":  # pytorch-grad-cam's work: the whole graph, then backward through all of it
    step = lambda: model(images)[:, 0].sum().backward()  # noqa: E731
else:
    if mode in ("folded_cl", "kept"):
        fold_batchnorms(model, images[:1])
        model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    if mode == "kept" and not keep_freed_memory():
        mode = "kept_unavailable"

    def step():
        with torch.no_grad():
            model(images)
step()  # warm-up: oneDNN picks and caches its kernels
best = float("inf")
for _ in range(repeats):
    start = time.perf_counter()
    step()
    best = min(best, time.perf_counter() - start)
print(mode, best * count / batch)
"""

FORWARD_ROWS = {
    "forward_backward": "forward + backward through the whole network, NCHW (pytorch-grad-cam's autograd)",
    "as_written": "forward, NCHW as written",
    "folded_cl": "forward, batch norms folded, channels-last",
    "kept": "the same, freed memory kept for the next batch (wsol's CPU default)",
}


IMPORT_ROWS = {
    "import torch, torchvision": "a process importing torch and torchvision",
    "from wsol.models.vision import import_torchvision; import_torchvision()":
        "the same, torchvision without TorchDynamo (as wsol imports it)",
}


def floor(count: int, batch: int, repeats: int = 3) -> str:
    """What bounds any pipeline's whole process here: a process importing torch and torchvision, and the
    network's forward, as written and as wsol runs it on a CPU, each in a fresh process (a process's earlier
    work leaves its allocator's heap warm, which hides the cost ``speed.keep_freed_memory`` removes)."""
    lines = [
        "## The floor", "",
        f"What every pipeline above pays, measured alone (best of {repeats}): a process that only imports torch "
        f"and torchvision, and the same ResNet-18's forward over {count:,} images (random inputs, batch {batch}, "
        "each way in a fresh process).", "",
        f"| work | s per {count:,} images |", "| --- | ---: |",
    ]
    for program, label in IMPORT_ROWS.items():
        seconds = min(_timed([sys.executable, "-c", program], REPO)[0] for _ in range(repeats))
        lines.append(f"| {label} | {seconds:.1f} |")
    for mode, label in FORWARD_ROWS.items():
        out = _timed([sys.executable, "-c", FORWARD_PROGRAM, mode, str(count), str(batch), str(repeats)], REPO)[1]
        measured, per_count = out.split()[-2:]
        if measured == "kept_unavailable":
            label = label.replace("wsol's CPU default", "not glibc: no effect here")
        lines.append(f"| {label} | {float(per_count):.1f} |")
    print("\n".join(lines[-(len(IMPORT_ROWS) + len(FORWARD_ROWS)):]), flush=True)
    return "\n".join(lines) + "\n"


def loader_rates(count: int, worker_counts: list[int], batch: int) -> str:
    """Images per second of wsol's data loading alone (decode a 500 × 375 JPEG, resize to 224², collate)."""
    from torch.utils.data import DataLoader

    from wsol.data import build_dataset, collate

    lines = [
        "## Data loading alone", "",
        f"{count} JPEG photographs of 500 × 375 decoded, resized to 224² (PIL bilinear) and collated, batch {batch}; "
        "one pass after a warm-up pass (the files are in the page cache).", "",
        "| DataLoader workers | images/s |", "| ---: | ---: |",
    ]
    with tempfile.TemporaryDirectory() as folder:
        root, metadata = write_split(folder, count)
        for name in os.listdir(os.path.join(root, "val")):  # every file at the ImageNet-typical 500 × 375
            path = os.path.join(root, "val", name)
            Image.open(path).convert("RGB").resize((500, 375)).save(path, quality=90)
        sizes = os.path.join(metadata, "image_sizes.txt")
        with open(sizes) as f:
            ids = [line.split(",")[0] for line in f if line.strip()]
        with open(sizes, "w") as f:
            f.write("".join(f"{i},500,375\n" for i in ids))
        dataset = build_dataset("wsoleval", root=root, metadata_root=metadata)
        for workers in worker_counts:
            loader = DataLoader(dataset, batch_size=batch, num_workers=workers, collate_fn=collate)
            for _ in loader:  # warm-up: worker start, page cache
                pass
            start = time.perf_counter()
            for _ in loader:
                pass
            lines.append(f"| {workers} | {count / (time.perf_counter() - start):,.0f} |")
            print(lines[-1], flush=True)
    return "\n".join(lines) + "\n"


_MODELS = ("wsol/models.py", "wsol/models/__init__.py")  # the module before and after it became a package
STARTUP_PHASES = {  # (file suffixes, function name) → label, in the order they happen; older layouts too
    (("wsol/run.py",), "main"): "everything after the imports (main)",
    (_MODELS, "build_model"): "model build",
    (_MODELS, "default_layer"): "default-layer probe",
    (("wsol/models/fold.py",), "fold_batchnorms"): "batch-norm fold",
    (("wsol/data/__init__.py",), "build_dataset"): "dataset scan",
    (("torch/utils/data/dataloader.py",), "__next__"): "data loading (every batch)",
    (("wsol/localize/sweep.py", "wsol/box_sweep.py"), "sweep_boxes"):
        "box sweep (every batch; the first one loads the kernels)",
}

# a fresh interpreter profiles itself from its first import on: python -c STARTUP_PROBE <stats file> <run dir>
STARTUP_PROBE = """
import cProfile, runpy, sys, time
stats, run_dir = sys.argv[1:3]
sys.argv = ["wsol.run", "limit=8", "batch_size=8", "progress=false", "cache_dir=null", "++speed.overlap=false",
            "hydra.run.dir=" + run_dir]  # serial: cProfile sees the main thread only
profiler = cProfile.Profile()
start = time.perf_counter()
profiler.enable()
try:
    runpy.run_module("wsol.run", run_name="__main__")
except SystemExit:
    pass
profiler.disable()
profiler.dump_stats(stats)
print(time.perf_counter() - start)
"""


def startup_phases(stats_path: str, total: float) -> dict[str, float]:
    """Seconds per start-up phase from a :data:`STARTUP_PROBE` profile; imports = total − ``main``."""
    stats = pstats.Stats(stats_path).stats
    out = {"whole process, profiled": total}
    for (path, _line, function), (_cc, _nc, _tt, cumulative, _callers) in stats.items():
        for (suffixes, name), label in STARTUP_PHASES.items():
            if function == name and path.endswith(suffixes):
                out[label] = out.get(label, 0.0) + cumulative
    out["imports (before main)"] = total - out.get("everything after the imports (main)", 0.0)
    return out
