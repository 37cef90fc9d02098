"""End-to-end: ``python -m wsol.run`` as a user types it (marked slow; run in CI)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
from conftest import REPO

pytestmark = pytest.mark.slow


def wsol(*args: str, module: str = "wsol.run") -> subprocess.CompletedProcess:
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True, env=env, timeout=600
    )


def test_default_run_writes_the_run_folder(tmp_path):
    out = tmp_path / "run"
    proc = wsol(f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| gradcam | efficientnet_lite0 | features | demo |" in proc.stdout
    for name in ("config.yaml", "metrics.json", "per_image.csv", "curves.csv", "table.md", "table.tex", "table.csv"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "metrics.json").read_text())
    m = summary["metrics"]
    assert summary["images"] == 120 and summary["skipped"] == {} and summary["layer"] == "features"
    assert 0 < m["maxboxacc_v2"] < 100 and 0 < m["top1_cls"] < 100
    assert m["maxboxacc"] == m["gt_known_loc"] >= m["top5_loc"] >= m["top1_loc"]
    assert m["maxboxacc_v2"] == pytest.approx(
        (m["maxboxacc_v2_iou30"] + m["maxboxacc_v2_iou50"] + m["maxboxacc_v2_iou70"]) / 3
    )
    rows = list(csv.DictReader((out / "per_image.csv").open()))
    assert len(rows) == 120 and {"id", "label", "prediction", "iou_largest", "box"} <= set(rows[0])
    # the per-image records reproduce the GT-known count at the loc threshold
    hits = sum(float(r["iou_largest"]) >= 0.5 for r in rows)
    assert 100 * hits / 120 == pytest.approx(m["gt_known_loc"])
    curves = list(csv.DictReader((out / "curves.csv").open()))
    assert len(curves) == 1000 * 2 * 3  # default protocol wsoleval_v2: interval 0.001
    config = (out / "config.yaml").read_text()
    assert "interval: 0.001" in config and "backend: contours" in config and "protocol: wsoleval_v2" in config
    assert summary["protocol"] == "wsoleval_v2" and 0 < m["pxap"] < 100 and 0 < m["pointing_game"] <= 100
    assert r"\toprule" in (out / "table.tex").read_text()


def test_multirun_over_methods_and_aggregate(tmp_path):
    sweep = tmp_path / "sweep"
    proc = wsol("-m", "method=cam,gradcam,gradcampp", "limit=40", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = {d: json.loads((sweep / d / "metrics.json").read_text()) for d in os.listdir(sweep) if "=" in d}
    assert sorted(runs) == ["method=cam", "method=gradcam", "method=gradcampp"]  # named by what varies
    cam, grad, pp = (runs[f"method={m}"]["metrics"] for m in ("cam", "gradcam", "gradcampp"))
    # at a layer that feeds GAP → FC, Grad-CAM's map is CAM's / hw: the quantised box metrics are
    # identical, the float ones (PxAP, energy) equal up to float rounding; Grad-CAM++ differs
    assert cam.keys() == grad.keys()
    for key in cam:
        if key in ("pxap", "energy_pointing_game"):
            assert cam[key] == pytest.approx(grad[key], rel=2e-7)
        else:
            assert cam[key] == grad[key], key
    assert pp["maxboxacc_v2"] != grad["maxboxacc_v2"]
    table = (sweep / "table.md").read_text()
    assert table.count("| efficientnet_lite0 |") == 3
    assert "Failed" not in table
    again = wsol(str(sweep), module="wsol.aggregate")
    assert again.returncode == 0 and again.stdout.count("efficientnet_lite0") == 3


def test_layer_sweep_table_and_fused_layers(tmp_path):
    sweep = tmp_path / "layers"
    proc = wsol("-m", "model.layer=features.4,features.6,features", "limit=8", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = (sweep / "table.md").read_text()
    rows = [line for line in table.splitlines() if "| efficientnet_lite0 |" in line]
    assert [row.split("|")[3].strip() for row in rows] == ["features", "features.4", "features.6"]
    pxap = [line for line in table.splitlines() if "| Method |" in line][0].split("|").index(" PxAP ")
    assert len({row.split("|")[pxap] for row in rows}) == 3  # PxAP differs layer by layer
    fused = tmp_path / "fused"
    proc = wsol(
        "model.layer=[features.6,features]",
        "model.fusion=layercam",
        "method=layercam",
        "limit=8",
        f"hydra.run.dir={fused}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((fused / "metrics.json").read_text())
    assert summary["layer"] == "features.6+features" and 0 < summary["metrics"]["pxap"] < 100


def test_method_option_errors_are_one_line(tmp_path):
    proc = wsol("method=scorecam", "method.weighting=softmax", "limit=1", f"hydra.run.dir={tmp_path}")
    expected = "error: method.weighting=softmax: expected one of probability, channel_softmax"
    assert proc.returncode == 2 and expected in proc.stderr
    proc = wsol("model.fusion=sum", "model.layer=[features.6,features]", "limit=1", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 2 and "error: model.fusion=sum: expected one of mean, max, layercam" in proc.stderr


def test_report_true_writes_run_and_sweep_reports(tmp_path):
    sweep = tmp_path / "sweep"
    proc = wsol("-m", "method=cam,gradcampp", "report=true", "limit=6", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (sweep / "report.html").is_file() and (sweep / "figures" / "grid.png").is_file()
    for method in ("cam", "gradcampp"):
        run_dir = sweep / f"method={method}"  # constants (limit, report) stay out of the folder name
        assert (run_dir / "report.html").is_file() and (run_dir / "figures" / "curves.png").is_file()
    # the final summary line of each run: headline metrics, images, speed, folder
    output = proc.stdout + proc.stderr
    summaries = [line for line in output.splitlines() if "img/s" in line and "written to" in line]
    assert len(summaries) == 2 and "6 images" in summaries[0], output[-2000:]


def test_gradcampp_and_fixed_threshold(tmp_path):
    proc = wsol("method=gradcampp", "localize=fixed", "localize.threshold=0.2", "limit=16", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["num_thresholds"] == 1 and summary["metrics"]["loc_threshold"] == 0.2
    assert summary["backend"] == "cc"  # localize=fixed's own region rule, not the default protocol's contours
    assert summary["protocol"] == "custom" and summary["protocol_changes"]["preset"] == "wsoleval_v2"
    assert "protocol custom (wsoleval_v2 with localize.mode=fixed" in proc.stdout


def test_paper_preset_table(tmp_path):
    proc = wsol("protocol=gradcam17", "limit=16", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| Top-1 Loc Err | Top-5 Loc Err |" in proc.stdout and "MaxBoxAccV2" not in proc.stdout
    m = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
    assert m["loc_threshold"] == 0.15 and m["top1_loc_err"] == pytest.approx(100 - m["top1_loc"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["dataset=wsoleval", "dataset.root=/nonexistent", "dataset.metadata_root=/x"],
         "error: dataset.root does not exist"),
        (["method=gradcamm"], "error: unknown method 'gradcamm'; did you mean: gradcam"),
        (["model.layer=features.99"], "error: no layer 'features.99'"),
        (["eval.target=x"], "error: eval.target=x: expected one of gt, top1"),
        (["batch_sz=3"], "error: unknown config key 'batch_sz'; did you mean: batch_size"),
        pytest.param(
            ["device=cuda"], "error: device=cuda but no CUDA GPU is available",
            marks=pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU"),
        ),
    ],
)
def test_bad_input_is_one_line(tmp_path, args, message):
    proc = wsol(*args, f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if line.startswith("error:")]) == 1
