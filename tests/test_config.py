"""Every config group composes, and conf/model/ mirrors torchvision's classifier list."""

from __future__ import annotations

import os

import pytest
from conftest import REPO
from hydra import compose, initialize_config_dir

from wsol.errors import WsolError
from wsol.models import list_model_names
from wsol.run import CONF_DIR, check_group_choices


def _choices(group):
    return sorted(f[:-5] for f in os.listdir(os.path.join(CONF_DIR, group)) if f.endswith(".yaml"))


def test_model_configs_match_torchvision():
    assert _choices("model") == sorted(list_model_names())


@pytest.mark.parametrize("group", ["dataset", "model", "method", "localize", "protocol"])
def test_every_choice_composes(group):
    with initialize_config_dir(config_dir=os.path.join(REPO, "conf"), version_base="1.3"):
        for choice in _choices(group):
            cfg = compose("config", overrides=[f"{group}={choice}"])
            if group == "protocol":
                assert cfg.table.protocol == (choice if choice != "none" else "custom")
            elif group != "localize":
                assert cfg[group].name == choice


def test_method_configs_match_registry():
    from wsol.cams import METHODS

    assert _choices("method") == sorted([*METHODS.names(), "from_files"])  # from_files: maps, no model


def test_check_group_choices():
    check_group_choices(["method=cam,gradcam", "model=resnet50", "model.layer=layer4", "limit=3"])
    with pytest.raises(WsolError, match="unknown method 'gradcampp2'; did you mean: gradcampp"):
        check_group_choices(["-m", "method=cam,gradcampp2"])
    with pytest.raises(WsolError, match="unknown dataset"):
        check_group_choices(["dataset=imagenet"])
