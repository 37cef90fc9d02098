"""Honest tables: intervals and paired significance in every format, choose on val and report on test,
fixed thresholds taken from a val run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml
from conftest import REPO, compose

from wsol.aggregate import aggregate
from wsol.config import resolve_threshold, validate
from wsol.errors import WsolError
from wsol.io import write_arrays
from wsol.metrics.bootstrap import percentile_interval
from wsol.report.compare import paper_tables
from wsol.select import select


def _write_run(folder, method, score, overrides=(), split=None, samples=None, key="imgs", model="m", images=100,
               layer="l"):
    """A finished run folder as wsol.run writes it: metrics.json, config.yaml and (with samples) bootstrap.npz."""
    os.makedirs(folder, exist_ok=True)
    metrics = {"maxboxacc_v2": score, "pxap": score / 2}
    summary = {"method": method, "model": model, "layer": layer, "dataset": "wsoleval", "images": images,
               "overrides": [f"method={method}", f"model={model}", *overrides], "metrics": metrics}
    if samples is not None:
        resampled = {"maxboxacc_v2": samples, "pxap": samples / 2}
        write_arrays(os.path.join(folder, "bootstrap.npz"), **resampled)
        summary["ci"] = {k: list(percentile_interval(v)) for k, v in resampled.items()}
        summary["bootstrap"] = {"resamples": len(samples), "seed": 0, "level": 95.0, "images_key": key}
    with open(os.path.join(folder, "metrics.json"), "w") as f:
        json.dump(summary, f)
    with open(os.path.join(folder, "config.yaml"), "w") as f:
        yaml.safe_dump({"dataset": {"name": "wsoleval", "split": split, "metadata_root": "meta"}}, f)
    return {**summary, "folder": str(folder)}


def test_intervals_in_every_format():
    run = {"method": "gradcam", "model": "m", "layer": "l", "dataset": "d", "metrics": {"maxboxacc_v2": 58.1},
           "ci": {"maxboxacc_v2": [56.8, 59.4]}, "bootstrap": {"resamples": 1000}}
    pm = paper_tables([run], ["maxboxacc_v2"], "cap")
    assert "58.10 ± 1.30" in pm["md"] and r"58.10 $\pm$ 1.30" in pm["tex"] and "58.10 ± 1.30" in pm["html"]
    assert "half-width of the 95 % percentile bootstrap interval over images (1000 resamples)" in pm["md"]
    assert pm["csv"].splitlines()[0].endswith("MaxBoxAccV2,MaxBoxAccV2 ci_lo,MaxBoxAccV2 ci_hi")
    assert pm["csv"].splitlines()[1].endswith("58.1000,56.8000,59.4000")
    interval = paper_tables([run], ["maxboxacc_v2"], "cap", ci_style="interval")
    assert "58.10 [56.80, 59.40]" in interval["md"] and "58.10 [56.80, 59.40]" in interval["tex"]
    none = paper_tables([run], ["maxboxacc_v2"], "cap", ci_style="none")
    assert "±" not in none["md"] and "ci_lo" not in none["csv"] and "bootstrap" not in none["md"]


def test_rows_tied_with_the_best_are_marked_by_a_paired_bootstrap(tmp_path):
    rng = np.random.default_rng(0)
    shared = rng.normal(0, 2, 500)  # the resamples' common image effect: pairing removes it
    best = _write_run(tmp_path / "a", "gradcampp", 60.0, samples=60.0 + shared)
    close = _write_run(tmp_path / "b", "gradcam", 59.8, samples=59.8 + shared + rng.normal(0, 0.3, 500))
    worse = _write_run(tmp_path / "c", "cam", 57.0, samples=57.0 + shared + rng.normal(0, 0.3, 500))
    other = _write_run(tmp_path / "d", "layercam", 59.9, samples=59.9 + shared, key="other images")
    tables = paper_tables([best, close, worse, other], ["maxboxacc_v2"], "cap")
    rows = {line.split(" | ")[0].strip("| "): line for line in tables["md"].splitlines() if line.startswith("| ")}
    assert "**60.00" in rows["gradcampp"] and "†" not in rows["gradcampp"]
    assert "59.80 ± " in rows["gradcam"] and "†" in rows["gradcam"]  # not significantly worse
    assert "†" not in rows["cam"]  # 3 points worse on every resample
    assert "†" not in rows["layercam"]  # other images: no paired comparison
    assert "not significantly different from the column's best (paired bootstrap, 95 %)" in tables["md"]
    assert r"59.80 $\pm$" in tables["tex"] and r"$^\dagger$" in tables["tex"] and "†" in tables["html"]
    tied = [line.split(",")[-1] for line in tables["csv"].splitlines()[1:]]
    assert tied == ["", "1", "0", ""]
    # the two runs' own intervals overlap, their paired difference's does not: pairing tells cam apart
    assert percentile_interval(57.0 + shared)[1] > percentile_interval(60.0 + shared)[0]


def test_aggregate_shows_intervals_and_marks_in_a_pivot(tmp_path):
    rng = np.random.default_rng(1)
    shared = rng.normal(0, 1, 300)
    for model in ("r18", "r50"):
        _write_run(tmp_path / f"{model}_a", "gradcam", 50.0, samples=50 + shared, model=model, key=model)
        _write_run(tmp_path / f"{model}_b", "cam", 49.9, samples=49.9 + shared + rng.normal(0, .1, 300), model=model,
                   key=model)
    md = aggregate(str(tmp_path), rows=["method"], cols=["model"], metrics=["maxboxacc_v2"])
    body = "".join(line for line in md.splitlines() if line.startswith("| "))
    assert "r18 · MaxBoxAccV2" in md and body.count("†") == 2 and body.count("±") == 4
    plain = aggregate(str(tmp_path), metrics=["maxboxacc_v2"], ci="none", significance=False)
    assert "±" not in plain and "†" not in plain


def _sweeps(tmp_path, val_scores, test_scores, thresholds=("0.1", "0.2", "0.3")):
    for split, scores in (("val", val_scores), ("test", test_scores)):
        for method, values in scores.items():
            for t, score in zip(thresholds, values, strict=True):
                _write_run(tmp_path / split / f"{method}_{t}", method, score, [f"localize.threshold={t}",
                           f"dataset.metadata_root=meta/{split}"], samples=np.full(50, score), key=split)
    return str(tmp_path / "val"), str(tmp_path / "test")


def test_select_picks_the_val_best_setting_not_the_test_best(tmp_path):
    val, test = _sweeps(tmp_path, {"gradcam": [50.0, 55.0, 52.0], "cam": [40.0, 41.0, 44.0]},
                        {"gradcam": [58.0, 54.0, 57.0], "cam": [49.0, 43.0, 45.0]})
    md = select(val, test)
    rows = {line.split(" | ")[0].strip("| "): line for line in md.splitlines() if line.startswith("| ")}
    assert "| 0.2 | 55.00 | **54.00 ± 0.00**" in rows["gradcam"]  # val best 0.2, though 0.1 is best on test (58)
    assert "| 0.3 | 44.00 | <u>45.00 ± 0.00</u>" in rows["cam"]
    assert "localize.threshold | Val MaxBoxAccV2 | MaxBoxAccV2" in md
    choices = json.loads((tmp_path / "test" / "selected.json").read_text())
    assert {c["setting"]["localize.threshold"] for c in choices} == {"0.2", "0.3"}
    assert all(c["test_run"].startswith(test) and c["val_run"].startswith(val) for c in choices)
    assert (tmp_path / "test" / "selected.tex").is_file() and (tmp_path / "test" / "selected.csv").is_file()


def test_select_ties_go_to_the_first_setting_in_natural_order(tmp_path):
    val, test = _sweeps(tmp_path, {"gradcam": [55.0, 50.0, 55.0]}, {"gradcam": [40.0, 60.0, 70.0]},
                        thresholds=("0.25", "0.5", "0.125"))
    md = select(val, test)
    assert "| 0.125 | 55.00 | 70.00 ± 0.00" in md


def test_select_names_missing_test_runs_in_one_line(tmp_path):
    val, test = _sweeps(tmp_path, {"gradcam": [50.0, 55.0, 52.0]}, {"gradcam": [58.0, 54.0, 57.0]})
    os.remove(os.path.join(test, "gradcam_0.2", "metrics.json"))
    with pytest.raises(WsolError, match=r"^1 chosen setting\(s\) have no test run: .*method=gradcam") as error:
        select(val, test)
    assert "\n" not in str(error.value) and "localize.threshold=0.2" in str(error.value)
    result = subprocess.run([sys.executable, "-m", "wsol.select", val, test], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "no test run" in result.stderr


def test_select_on_one_sweep_over_the_split(tmp_path):
    for split, scores in (("val", (50.0, 53.0)), ("test", (60.0, 51.0))):
        for layer, score in zip(("layer3", "layer4"), scores, strict=True):
            _write_run(tmp_path / f"{split}_{layer}", "gradcam", score, [f"model.layer={layer}",
                       f"dataset.split={split}"], split=split, layer=layer)
    md = select(str(tmp_path))
    assert "| layer4 | wsoleval | 53.00 | 51.00" in md  # the val best


def test_threshold_from_a_val_run(tmp_path):
    run = tmp_path / "val_run"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"metrics": {"loc_threshold": 0.35}}))
    dataset = {"name": "demo", "num_images": 40, "seed": 1, "image_size": 224}  # another seed: other images
    (run / "config.yaml").write_text(yaml.safe_dump({"dataset": dataset}))
    cfg = compose("localize=fixed", f"localize.threshold=from:{run}")
    validate(cfg)
    assert resolve_threshold(cfg).localize.threshold == 0.35 and cfg.localize.threshold == f"from:{run}"
    same = compose("localize=fixed", f"localize.threshold=from:{run}", "dataset.num_images=40", "dataset.seed=1")
    with pytest.raises(WsolError, match="same dataset and split"):
        resolve_threshold(same)
    with pytest.raises(WsolError, match="no finished run there"):
        validate(compose("localize=fixed", f"localize.threshold=from:{tmp_path / 'nothing'}"))
    with pytest.raises(WsolError, match=r"must be in \[0, 1\) or from:VAL_RUN_DIR"):
        validate(compose("localize=fixed", "localize.threshold=high"))


def _two_splits(folder, count=6):
    """Demo photographs as a wsolevaluation dataset with ``val`` and ``test`` metadata folders."""
    from wsol.data.demo import DemoDataset

    root, meta = os.path.join(folder, "images"), os.path.join(folder, "metadata")
    for seed, split in enumerate(("val", "test"), start=1):
        demo = DemoDataset(num_images=count, seed=seed)
        os.makedirs(os.path.join(root, split), exist_ok=True)
        os.makedirs(os.path.join(meta, split), exist_ok=True)
        lines = {"image_ids": [], "class_labels": [], "localization": []}
        for index, record in enumerate(demo.records):
            image_id = f"{split}/{index:03d}.jpg"
            demo.load_image(record).save(os.path.join(root, image_id), quality=90)
            lines["image_ids"].append(image_id)
            lines["class_labels"].append(f"{image_id},{record.label}")
            lines["localization"] += [f"{image_id},{','.join(str(int(v)) for v in b)}" for b in record.boxes]
        for name, rows in lines.items():
            with open(os.path.join(meta, split, f"{name}.txt"), "w") as f:
                f.write("\n".join(rows) + "\n")
    return root, meta


@pytest.mark.slow
def test_val_test_experiment_then_select_end_to_end(tmp_path):
    root, meta = _two_splits(str(tmp_path / "data"))
    sweep = tmp_path / "sweep"
    command = [sys.executable, "-m", "wsol.run", "-m", "+experiment=val_test", "dataset=wsoleval",
               f"dataset.root={root}", f"dataset.metadata_root={meta}", "localize=fixed",
               "localize.threshold=0.2,0.4", "batch_size=6", "num_workers=0", "cache_dir=null",
               "eval.bootstrap=200", f"hydra.sweep.dir={sweep}"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = [json.loads(p.read_text()) for p in sweep.rglob("metrics.json")]
    assert len(runs) == 4 and all(r["bootstrap"]["resamples"] == 200 for r in runs)
    val = {o: r for r in runs for o in r["overrides"] if "dataset.split=val" in r["overrides"] and "threshold" in o}
    best = max(val, key=lambda o: (val[o]["metrics"]["maxboxacc_v2"], -float(o.split("=")[1])))
    chosen = subprocess.run([sys.executable, "-m", "wsol.select", str(sweep)], capture_output=True, text=True, cwd=REPO)
    assert chosen.returncode == 0, chosen.stderr
    choice = json.loads((sweep / "selected.json").read_text())[0]
    assert f"localize.threshold={choice['setting']['localize.threshold']}" == best
    assert choice["val_score"] == val[best]["metrics"]["maxboxacc_v2"]
    test_run = json.loads(open(os.path.join(choice["test_run"], "metrics.json")).read())
    assert "dataset.split=test" in test_run["overrides"]
    assert f"{test_run['metrics']['maxboxacc_v2']:.2f}" in chosen.stdout
    # a test run at the threshold its val run chose, never a test-tuned one
    val_dir = choice["val_run"]
    fixed = subprocess.run([sys.executable, "-m", "wsol.run", "dataset=wsoleval", f"dataset.root={root}",
                            f"dataset.metadata_root={meta}", "dataset.split=test", "localize=fixed",
                            f"localize.threshold='from:{val_dir}'", "batch_size=6", "num_workers=0", "cache_dir=null",
                            f"hydra.run.dir={tmp_path / 'fixed'}"], capture_output=True, text=True, cwd=REPO)
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    summary = json.loads((tmp_path / "fixed" / "metrics.json").read_text())
    assert summary["metrics"]["loc_threshold"] == float(choice["setting"]["localize.threshold"])
