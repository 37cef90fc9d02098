"""wsol's wsolevaluation models against the reference's own code: checkpoints, top-5 and CAMs.

For every backbone × architecture type × ``large_feature_map`` (24 networks, 200 classes), the
reference network is built from a checkout of clovaai/wsolevaluation (``--reference PATH``; it is not
on PyPI) with a seeded random initialisation and saved as its training code saves a checkpoint
(``{'state_dict', 'optimizer', 'epoch'}``; every other network through ``nn.DataParallel``, so its
keys carry ``module.``). wsol then loads the file with ``model.checkpoint`` and computes ``method=cam
method.relu=false`` at the default layer on demo photographs; the table compares the top-5 classes
with the reference's ``model(x)['logits']``, and the CAM with the reference's ``model(x, labels,
return_cam=True)``: raw (largest absolute difference) and after the reference's ``cv2.resize(INTER_CUBIC)``
and min-max against wsol's ``localize.resize=bicubic`` and min-max (Pearson r, the worst image).

    python scripts/check_wsoleval.py --reference ../wsolevaluation     # → results/conventions/wsoleval_models.md
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from wsol.cams import build_method  # noqa: E402
from wsol.data import build_dataset  # noqa: E402
from wsol.io import atomic_write_text  # noqa: E402
from wsol.maps import eval_maps  # noqa: E402
from wsol.models import IMAGENET_MEAN, IMAGENET_STD, build_model, default_layer  # noqa: E402

BACKBONES = {"vgg16": "wsoleval_vgg16", "resnet50": "wsoleval_resnet50", "inception_v3": "wsoleval_inception_v3"}


def reference_package(path: str):
    """The reference's ``wsol`` package from a checkout, imported under another name (wsol is ours)."""
    init = os.path.join(path, "wsol", "__init__.py")
    if not os.path.isfile(init):
        raise SystemExit(f"error: no wsolevaluation checkout at {path} (wsol/__init__.py is missing)")
    spec = importlib.util.spec_from_file_location("wsolevaluation_wsol", init,
                                                  submodule_search_locations=[os.path.dirname(init)])
    package = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = package
    spec.loader.exec_module(package)
    return package


def save_like_training(model: torch.nn.Module, path: str, data_parallel: bool) -> None:
    """A checkpoint as the reference's ``main.py`` writes one."""
    saved = torch.nn.DataParallel(model) if data_parallel else model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    torch.save({"epoch": 50, "state_dict": saved.state_dict(), "optimizer": optimizer.state_dict()}, path)


def reference_scoremaps(cams: torch.Tensor) -> np.ndarray:
    """The reference's ``inference.py``: ``cv2.resize(cam, (224, 224), INTER_CUBIC)``, then min-max."""
    import cv2

    out = []
    for cam in cams.numpy():
        cam = cv2.resize(cam, (224, 224), interpolation=cv2.INTER_CUBIC)
        cam = cam - cam.min()
        out.append(cam / max(cam.max(), 1e-12))
    return np.stack(out)


def compare(reference, backbone: str, architecture: str, large: bool, images, labels, folder: str, index: int):
    torch.manual_seed(index)
    net = getattr(reference, backbone)(architecture, num_classes=200, large_feature_map=large, adl_drop_rate=0.75,
                                       adl_drop_threshold=0.9, acol_drop_threshold=0.7).eval()
    path = os.path.join(folder, f"{backbone}_{architecture}_{int(large)}.pth.tar")
    save_like_training(net, path, data_parallel=index % 2 == 1)
    with torch.no_grad():
        ref_logits = net(images)["logits"]
        ref_cams = net(images, labels, return_cam=True)
    loaded = build_model(BACKBONES[backbone], checkpoint=path, architecture=architecture, large_feature_map=large)
    layer = default_layer(loaded.module)
    out = build_method("cam", loaded.module, [layer], relu=False)(images, labels)
    ours = eval_maps(out.maps, 224, "bicubic", "after_resize")[0].numpy()
    theirs = reference_scoremaps(ref_cams)
    pearson = min(np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(ours, theirs, strict=True))
    return {
        "model": f"model={BACKBONES[backbone]} model.architecture={architecture}"
        + (" model.large_feature_map=true" if large else ""),
        "keys": "module." if index % 2 else "plain",
        "layer": layer,
        "size": "×".join(map(str, out.maps.shape[1:])),
        "top5": bool((ref_logits.topk(5, 1).indices == out.logits.topk(5, 1).indices).all()),
        "logits": (ref_logits - out.logits).abs().max().item(),
        "raw": (ref_cams - out.maps).abs().max().item(),
        "pearson": pearson,
    }


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", required=True, help="a checkout of clovaai/wsolevaluation")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--out", default=os.path.join("results", "conventions", "wsoleval_models.md"))
    args = parser.parse_args(argv)
    reference = reference_package(args.reference)
    demo = build_dataset("demo", num_images=args.images, image_size=224)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD))
    images = (torch.stack([demo[i]["image"] for i in range(args.images)]).float() / 255 - mean) / std
    labels = torch.tensor([demo[i]["label"] for i in range(args.images)]) % 200
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        combos = [(b, a, large) for b in BACKBONES for a in ("cam", "adl", "acol", "spg") for large in (False, True)]
        for index, (backbone, architecture, large) in enumerate(combos):
            rows.append(compare(reference, backbone, architecture, large, images, labels, folder, index))
            print(rows[-1], flush=True)
    lines = [
        "# wsolevaluation's models in wsol, against the reference's own code",
        "",
        "`python scripts/check_wsoleval.py --reference PATH` (PATH: a checkout of clovaai/wsolevaluation); torch "
        f"{torch.__version__}, CPU. Each network is the reference's, 200 classes, seeded random weights, saved as its "
        "`main.py` saves a checkpoint (`state_dict`, `optimizer`, `epoch`; every other one through `nn.DataParallel`, "
        "keys `module.…`), then loaded by wsol with `model.checkpoint=`. On "
        f"{args.images} demo photographs (224², ImageNet normalisation, one class per image): wsol's top-5 against the "
        "reference's `model(x)['logits']`, and wsol's `method=cam method.relu=false` at the default layer against "
        "the reference's `model(x, labels, return_cam=True)`: raw, and after the reference's `cv2.resize(INTER_CUBIC)` "
        "+ min-max vs wsol's `localize.resize=bicubic` + min-max (Pearson r, worst image). Random weights test the "
        "definitions, not any model's accuracy.",
        "",
        "| model | checkpoint keys | default layer | CAM size | same top-5 | max abs Δ logits | max abs Δ raw CAM "
        "| Pearson r, resized + min-max |",
        "| :--- | :--- | :--- | :---: | :---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(f"| `{r['model']}` | {r['keys']} | `{r['layer']}` | {r['size']} | {'yes' if r['top5'] else 'NO'} "
                     f"| {r['logits']:.2e} | {r['raw']:.2e} | {r['pearson']:.7f} |")
    text = "\n".join(lines) + "\n"
    atomic_write_text(args.out, text)
    print(f"written to {args.out}")
    return text


if __name__ == "__main__":
    main()
