"""Every leaf a user can set, generated from the schemas themselves: a wrongly typed value, and an out-of-range one
where the leaf has a range, each stop ``python -m wsol.run`` with exit code 2 and one ``error:`` line naming the
key, before any work."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO

from wsol import run
from wsol.config import compose_config, group_choices, schema_leaves
from wsol.schema import conforms

# the values a group needs before its other keys can be checked (required paths; nothing is read)
GROUP_BASE = {
    "dataset=wsoleval": ["dataset.root=/r", "dataset.metadata_root=/m"],
    "dataset=cub": ["dataset.root=/r"],
    "dataset=ilsvrc": ["dataset.root=/r"],
    "dataset=coco": ["dataset.root=/r", "dataset.ann_file=a.json"],
    "method=from_files": ["method.maps_dir=/maps"],
}
# (override text, the value Hydra parses it to): the first one a leaf's kind does not take is its wrong value
CANDIDATES = [("zzz", "zzz"), ("[zzz]", ["zzz"]), ("{a: 1}", {"a": 1}), ("7", 7)]


def _leaves() -> list[tuple[list[str], str, object, dict]]:
    """(group overrides, key, declared kind, field metadata) of every leaf of every dataset and method choice."""
    cases, seen = [], set()
    groups = [[f"dataset={d}"] for d in group_choices("dataset")] + [[f"method={m}"] for m in group_choices("method")]
    for group in groups:
        base = [*group, *GROUP_BASE.get(group[0], [])]
        cfg = compose_config(base)
        for key, f, kind in schema_leaves(cfg):
            scope = key if key.split(".")[0] not in ("dataset", "method") else f"{group[0]}:{key}"
            if scope in seen:
                continue
            seen.add(scope)
            cases.append((base, key, (f.metadata or {}).get("kind") or kind, dict(f.metadata or {})))
    return cases


LEAVES = _leaves()


def _wrong(kind) -> str:
    return next(text for text, value in CANDIDATES if not conforms(value, kind))


def _outside(meta: dict, kind) -> str | None:
    bounds = meta.get("range")
    if bounds is None:
        return None
    value = bounds.low if bounds.low_open else (bounds.low - 1 if bounds.low is not None else None)
    if value is None:
        value = bounds.high if bounds.high_open else bounds.high + 1
    if not conforms(value, kind):
        value = float(value) if conforms(float(value), kind) else [value]
    return str(value).replace(" ", "")


def _exits_with_one_line(args: list[str], key: str, monkeypatch, capsys) -> str:
    monkeypatch.setattr(sys, "argv", ["wsol.run", *args])
    with pytest.raises(SystemExit) as done:
        run.main()
    err = capsys.readouterr().err
    assert done.value.code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and key in lines[0], err
    assert "Traceback" not in err
    return lines[0]


def test_the_generated_cases_cover_every_leaf():
    keys = {key for _, key, _, _ in LEAVES}
    assert {"model.layer", "speed.keep_freed_memory", "speed.compile", "num_workers", "progress",
            "eval.classifier", "model.kwargs", "localize.threshold", "method.num_samples", "method.path",
            "dataset.box_rescale", "dataset.image_size"} <= keys
    assert len(LEAVES) > 100


@pytest.mark.parametrize(("base", "key", "kind", "meta"), LEAVES, ids=[f"{b[0]}:{k}" for b, k, _, _ in LEAVES])
def test_a_wrongly_typed_value_is_one_line_and_exit_2(base, key, kind, meta, monkeypatch, capsys):
    _exits_with_one_line([*base, f"{key}={_wrong(kind)}"], key, monkeypatch, capsys)


RANGED = [(b, k, t, m) for b, k, t, m in LEAVES if m.get("range") is not None]


@pytest.mark.parametrize(("base", "key", "kind", "meta"), RANGED, ids=[f"{b[0]}:{k}" for b, k, _, _ in RANGED])
def test_an_out_of_range_value_is_one_line_and_exit_2(base, key, kind, meta, monkeypatch, capsys):
    line = _exits_with_one_line([*base, f"{key}={_outside(meta, kind)}"], key, monkeypatch, capsys)
    assert "must be" in line


@pytest.mark.parametrize(("override", "message"), [
    ("speed.keep_freed_memory=off", "speed.keep_freed_memory='off': expected true, false or auto"),
    ("model.layer=3", "model.layer=3: expected a string, a list of strings or null"),
    ("model.layer=0", "model.layer=0: expected"),
    ("model.layer=[]", "model.layer=[]: expected a string, a list of strings or null, not empty"),
])
def test_the_issues_examples(override, message, monkeypatch, capsys):
    assert message in _exits_with_one_line([override], override.split("=")[0], monkeypatch, capsys)


@pytest.mark.slow
@pytest.mark.parametrize("flags", [["-c", "job"], ["--cfg", "job"], ["-cn", "config", "-c", "job"],
                                   ["-cp", "conf", "-c", "job"], ["-cd", "/tmp", "--cfg", "job"],
                                   ["--info", "defaults"], ["-i", "searchpath"], ["--help"]])
def test_hydras_flags_work_and_the_pre_check_runs_beside_them(flags):
    good = subprocess.run([sys.executable, "-m", "wsol.run", *flags, "limit=3"], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert good.returncode == 0, good.stderr[-2000:]
    if "job" in flags:
        assert "limit: 3" in good.stdout and "dataset:" in good.stdout
    bad = subprocess.run([sys.executable, "-m", "wsol.run", *flags, "model.layer=3"], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "error: model.layer=3: expected a string, a list of strings or null (quote a number that names a module: "
        "model.layer='3')"]
