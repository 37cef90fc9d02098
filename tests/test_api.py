"""The Python API: docs/api.md's snippets run as written, and give the CLI's numbers on the same images."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO, compose

import wsol
from wsol.errors import WsolError
from wsol.models import build_model
from wsol.pipeline import evaluate as run_config

AS_THE_API = ()  # the CLI's defaults: wsol.evaluate folds batch norms and goes channels-last in a copy of the model


@pytest.fixture(scope="module")
def model():
    return build_model("efficientnet_lite0").module


@pytest.fixture(scope="module")
def demo_batch():
    data = wsol.datasets.demo(num_images=12)
    return wsol.datasets.collate([data[i] for i in range(12)])


def _cli(*overrides: str):
    return run_config(compose("limit=12", "batch_size=8", *AS_THE_API, *overrides))


def test_docs_snippets_run_as_written():
    with open(os.path.join(REPO, "docs", "api.md")) as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    assert len(blocks) >= 5
    scope: dict = {}
    for block in blocks:
        exec(compile(block, "docs/api.md", "exec"), scope)
    assert tuple(scope["out"].maps.shape) == (8, 7, 7) and tuple(scope["out"].logits.shape) == (8, 1000)
    # the same 8 images as a wsol dataset (uint8, normalised by evaluate) and as a loader of normalised floats
    from_dataset = wsol.evaluate(scope["model"], scope["data"], method="gradcampp", layer="features")
    assert scope["result"].metrics == from_dataset.metrics
    assert "MaxBoxAccV2" in scope["result"].table("md") and len(scope["result"].per_image) == 8
    # the merged accumulators equal the one-object evaluation of the same maps (top-1 targets in both)
    whole = wsol.metrics.WSOLMetrics(image_size=224)
    whole.update(scope["out"].maps, scope["gt_boxes"], labels=scope["batch"].labels,
                 top5=scope["out"].logits.topk(5).indices, masks=scope["batch"].masks)
    assert whole.compute() == scope["scores"]
    assert len(scope["metrics"]) == 0  # reset
    assert set(scope["validate"](scope["model"], 0)) == {"val/maxboxacc_v2", "val/pxap", "val/gt_known_loc"}


@pytest.mark.parametrize("method", ["gradcampp", "cam"])
def test_evaluate_gives_the_clis_numbers(model, method):
    cli = _cli(f"method={method}")
    api = wsol.evaluate(model, wsol.datasets.demo(num_images=12), method=method, batch_size=8)
    assert api.metrics == cli.metrics
    assert api.per_image.to_dict("records") == cli.images
    assert api.info["layer"] == cli.info["layer"] == "features"


def test_a_user_loader_of_normalised_floats_gives_the_same_numbers(model, demo_batch):
    b = demo_batch
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    floats = b.images.float().div_(255).sub_(mean).div_(std)
    boxes = [bx[v] for bx, v in zip(b.boxes, b.box_valid, strict=True)]
    loader = [(floats[s], b.labels[s], boxes[s], b.masks[s]) for s in (slice(0, 8), slice(8, 12))]
    api = wsol.evaluate(model, loader, method="gradcampp")
    cli = _cli("method=gradcampp")
    assert api.metrics == cli.metrics
    assert api.per_image["id"].tolist() == [str(i) for i in range(12)]


def test_the_metric_objects_are_the_clis_accumulators(model, demo_batch):
    """Maps made with wsol.cams.build, fed batch by batch to WSOLMetrics: the CLI's metrics.json, bit for bit."""
    b = demo_batch
    cam = wsol.cams.build("gradcampp", model)  # the CLI's default layer
    assert cam.layer_names == ["features"]
    normalise = wsol.scoring.InputNormalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), torch.device("cpu"))
    metrics = wsol.metrics.WSOLMetrics("wsoleval_v2", image_size=224)
    v2 = wsol.metrics.MaxBoxAccV2(image_size=224)
    boxes = [bx[v] for bx, v in zip(b.boxes, b.box_valid, strict=True)]  # per image [K, 4]
    for s in (slice(0, 8), slice(8, 12)):
        out = cam(normalise(b.images[s]), targets=b.labels[s])
        top5 = out.logits.topk(5).indices
        metrics.update(out.maps, boxes[s], labels=b.labels[s], top5=top5, masks=b.masks[s], ids=b.ids[s])
        v2.update(out.maps, boxes[s])
    cli = _cli("method=gradcampp", "speed.channels_last=false", "speed.fold_batchnorm=false")  # the model as it is
    assert metrics.compute() == cli.metrics
    assert v2.compute() == {k: v for k, v in cli.metrics.items() if k.startswith("maxboxacc_v2")}
    assert [row["id"] for row in metrics.result().images] == [row["id"] for row in cli.images]


def test_a_protocol_preset_and_an_override_change_the_settings():
    assert wsol.metrics.WSOLMetrics("wsoleval_v2").spec.thresholds[:3] == (0.0, 0.001, 0.002)
    assert len(wsol.metrics.WSOLMetrics(overrides=["localize.interval=0.01"]).spec.thresholds) == 100
    assert wsol.metrics.MaxBoxAccV2(iou_thresholds=(50, 75)).spec.iou_thresholds == (50, 75)
    with pytest.raises(WsolError, match="iou_thresholds"):
        wsol.metrics.WSOLMetrics(overrides=["eval.iou_thresholds=[150]"])


def test_merge_equals_one_object_and_reset_empties():
    g = torch.Generator().manual_seed(3)
    maps = torch.rand(6, 14, 14, generator=g)
    boxes = torch.tensor([[10, 20, 100, 150], [0, 0, 223, 223], [30, 40, 200, 210],
                          [1, 1, 60, 80], [50, 60, 70, 90], [100, 100, 220, 200]])
    one, first, second = (wsol.metrics.WSOLMetrics(image_size=224) for _ in range(3))
    one.update(maps, boxes)
    first.update(maps[:2], boxes[:2])
    assert first.compute() != one.compute()  # compute() leaves the batches as they were: more may follow
    second.update(maps[2:4], boxes[2:4])
    second.update(maps[4:], boxes[4:])
    assert first.merge(second).compute() == one.compute() == one.compute() and len(first) == 6
    one.reset()
    with pytest.raises(WsolError, match="no images"):
        one.compute()


def test_hand_computed_maxboxacc_v2():
    """One 4×4 blob per map at a known place: at thresholds below its edge the one box is the blob's box."""
    maps = torch.zeros(2, 32, 32)
    maps[0, 4:12, 4:12] = 1.0  # box (4, 4, 11, 11)
    maps[1, 20:28, 8:16] = 1.0  # box (8, 20, 15, 27)
    gt = torch.tensor([[4, 4, 11, 11], [16, 0, 31, 7]])  # the first exact, the second disjoint
    metric = wsol.metrics.MaxBoxAccV2(overrides=["localize.resize=bilinear"])
    metric.update(maps, gt)
    out = metric.compute()
    assert out["maxboxacc_v2"] == pytest.approx(50.0) and out["maxboxacc_v2_iou70"] == pytest.approx(50.0)


@pytest.mark.parametrize("boxes, message", [
    ([[0.5, 0, 10, 10]], "whole pixels"),
    ([[0, 0, 300, 10]], "outside the 224×224"),
    ([[10, 10, 5, 20]], "x1 < x0"),
])
def test_bad_boxes_are_one_line_errors(boxes, message):
    metric = wsol.metrics.WSOLMetrics(image_size=224)
    with pytest.raises(WsolError, match=message):
        metric.update(torch.rand(1, 7, 7), [boxes])


def test_updates_must_agree_on_annotations():
    metric = wsol.metrics.WSOLMetrics(image_size=16)
    metric.update(torch.rand(1, 4, 4), [[[0, 0, 5, 5]]])
    with pytest.raises(WsolError, match="same annotations"):
        metric.update(torch.rand(1, 4, 4), [[[0, 0, 5, 5]]], masks=torch.ones(1, 16, 16))


def test_evaluate_restores_train_mode_and_keeps_the_model(model):
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = wsol.evaluate(model, wsol.datasets.demo(num_images=4), method="cam", num_workers=0)
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.is_contiguous() for p in model.parameters())  # channels-last for the call only
    model.eval()
    assert result.metrics == wsol.evaluate(model, wsol.datasets.demo(num_images=4), method="cam").metrics


def test_composing_a_preset_keeps_the_callers_hydra_app():
    from hydra import initialize
    from hydra.core.global_hydra import GlobalHydra

    with initialize(version_base="1.3", config_path=None):
        wsol.metrics.WSOLMetrics("cam16")
        assert GlobalHydra.instance().is_initialized()
    assert not GlobalHydra.instance().is_initialized()


def test_import_wsol_is_light_and_names_the_api():
    code = ("import sys, wsol; assert 'torch' not in sys.modules, 'torch imported'; "
            "print(sorted(wsol.__all__)); wsol.evaluate; wsol.cams.build; wsol.metrics.MaxBoxAccV2; wsol.datasets.demo")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert "evaluate" in out and "metrics" in out


def test_flat_maps_and_a_mismatched_batch_are_handled():
    metric = wsol.metrics.WSOLMetrics(image_size=8)
    metric.update(np.zeros((2, 8, 8), dtype=np.float32), [[[0, 0, 7, 7]], [[2, 2, 5, 5]]])
    assert metric.result().info["flat_maps"] == 2
    with pytest.raises(WsolError, match="gt_boxes has 1 images, the maps 2"):
        metric.update(torch.rand(2, 8, 8), [[[0, 0, 7, 7]]])


CHEAP = ["cam", "gradcam", "gradcampp", "smoothgradcampp", "xgradcam", "layercam", "hirescam", "eigencam",
         "eigengradcam", "segeigencam", "kpcacam", "fem", "gradcamelementwise", "shapleycam", "finercam", "refinecam",
         "reciprocam", "randomcam", "sobel", "center", "fullgrad"]
PERTURBING = ["scorecam", "sscam", "iscam", "ablationcam", "groupcam", "opticam",
              "polycam"]  # many passes: fewer images
VIT_ONLY = ["legrad"]  # this CNN has no attention: tests/test_zoo.py checks it on CPU and GPU with a ViT


def test_the_gpu_parity_list_covers_the_registry():
    from wsol.cams import METHODS

    assert sorted(CHEAP + PERTURBING + VIT_ONLY) == METHODS.names()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method", CHEAP + PERTURBING)
def test_cpu_and_gpu_metrics_agree(model, method):
    """The same evaluation on the CPU and the GPU: maps agree to float rounding, so each metric agrees to within
    one image's share (a map level at a box edge may round the other way)."""
    images = 4 if method in PERTURBING else 16
    options = {"num_samples": 2} if method in ("sscam", "iscam", "smoothgradcampp") else {}
    data = wsol.datasets.demo(num_images=images)
    cpu = wsol.evaluate(model.cpu(), data, method=method, batch_size=16, **options)
    gpu = wsol.evaluate(model.cuda(), data, method=method, batch_size=16, **options)
    model.cpu()
    assert set(cpu.metrics) == set(gpu.metrics) and gpu.info["device"].startswith("cuda")
    for key, value in cpu.metrics.items():
        if not key.endswith("_threshold"):
            assert abs(value - gpu.metrics[key]) <= 100.0 / images + 1e-9, (key, value, gpu.metrics[key])
    assert (cpu.per_image["prediction"] == gpu.per_image["prediction"]).mean() >= 0.9
