"""Typed configs: every group composes, groups mirror the registries, and bad input is one line before any work."""

from __future__ import annotations

import inspect
import os

import pytest
import yaml
from conftest import REPO

from wsol.cams import METHODS
from wsol.config import check_overrides, compose_config, group_choices
from wsol.data import DATASETS
from wsol.errors import WsolError
from wsol.models import SOURCES, list_model_names


def test_model_configs_match_torchvision():
    assert group_choices("model") == sorted([*list_model_names(), *SOURCES])


def test_groups_mirror_the_registries():
    assert group_choices("method") == sorted([*METHODS.names(), "from_files"])  # from_files: maps, no model
    assert group_choices("dataset") == DATASETS.names()


@pytest.mark.parametrize("group", ["dataset", "model", "method", "localize", "protocol"])
def test_every_choice_composes(group):
    for choice in group_choices(group):
        cfg = compose_config([f"{group}={choice}"])
        if group == "protocol":
            assert cfg.table.protocol == (choice if choice != "none" else "custom")
        elif group == "model" and choice in SOURCES:  # model=timm / model=custom: a way to bring a model
            assert cfg.model.source == choice
        elif group != "localize":
            assert cfg[group].name == choice


def test_defaults_live_once():
    """Method and dataset options come from their code's signatures; config.yaml holds no values of its own."""
    sscam = compose_config(["method=sscam"]).method
    signature = inspect.signature(METHODS.get("sscam").__init__).parameters
    assert sscam.num_samples == signature["num_samples"].default == 35 and sscam.std == signature["std"].default
    demo = compose_config([]).dataset
    assert demo.num_images == inspect.signature(DATASETS.get("demo")).parameters["num_images"].default
    with open(os.path.join(REPO, "wsol", "conf", "config.yaml")) as f:
        assert set(yaml.safe_load(f)) == {"defaults", "hydra"}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["batch_sz=3"], "unknown config key 'batch_sz'; did you mean: batch_size (the keys at the top level:"),
        (["method=gradcampp", "method.alpah_norm=true"], "did you mean: method.alpha_norm (the keys of method: name,"),
        (["method=gradcam", "method.alpha_norm=true"], "unknown config key 'method.alpha_norm'"),  # not Grad-CAM's
        (["model.layerr=x"], "did you mean: model.layer"),
        (["batch_size=abc"], "batch_size=abc: expected an integer"),
        (["localize.backend=blobs"], "localize.backend=blobs: expected one of cc, contours"),
        (["eval.iou_thresholds=[a]"], "eval.iou_thresholds=[a]: expected a list of integers"),
        (["localize.interval=-1"], "localize.interval=-1.0: must be in (0, 1)"),
        (["protocol=cam16", "localize.threshold=1.5"], "localize.threshold=1.5: must be in [0, 1)"),
        (["protocol=cam16", "localize.threshold=abc"], "localize.threshold must be in [0, 1) or from:VAL_RUN_DIR"),
        (["batch_size=0"], "batch_size=0: must be ≥ 1"),
        (["eval.iou_thresholds=[30,70]"], "must be percentages in (0, 100) and include 50"),
        (["num_workers=many"], "num_workers='many': expected an integer or auto"),
        (["dataset=wsoleval"], "dataset.metadata_root is not set"),
        (["-m", "batch_size=2,x"], "batch_size=x: expected an integer"),  # every value of a sweep is checked
        (["-m", "method=cam,gradcamm"], "unknown method 'gradcamm'; did you mean: gradcam"),
        (["dataset=imagenet"], "unknown dataset 'imagenet'"),
        (["save_maps=true"], "save_maps=true needs maps_dir"),
    ],
)
def test_bad_input_is_one_line_before_any_work(overrides, message):
    with pytest.raises(WsolError) as info:
        check_overrides(overrides)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_good_input_passes_and_sweeps_are_expanded():
    check_overrides(["-m", "method=cam,gradcam", "model=resnet50", "model.layer=layer4", "limit=3",
                     "localize=fixed", "localize.threshold=0.2,0.3", "hydra.sweep.dir=/tmp/x"])


def test_help_opens_with_what_wsol_is():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "wsol.run", "--help"], capture_output=True, text=True, cwd=REPO,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("wsol: evaluate class activation map (CAM) methods")
    assert "method: ablationcam, cam," in proc.stdout and "python -m wsol.run -m method=cam,gradcam" in proc.stdout
    assert "powered by Hydra" not in proc.stdout
