"""Sweeps to tables, resume after a kill, the map cache, shard merge, launchers."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO, compose

from wsol.aggregate import aggregate
from wsol.cams.core import CamMethod
from wsol.config import check_overrides
from wsol.errors import WsolError
from wsol.io import read_arrays
from wsol.pipeline import Evaluation, evaluate
from wsol.report.tables import format_table, metrics_frame, summarize_seeds
from wsol.stages import prefetch_batches


def _config(*overrides: str, cache: str | None = None):
    return compose(f"cache_dir={cache or 'null'}", *overrides)


def _run(method, metrics, seed=0, overrides=()):
    return {"method": method, "model": "m", "layer": "l", "dataset": "d", "seed": seed,
            "overrides": [f"method={method}", f"dataset.seed={seed}", *overrides], "metrics": metrics}


def test_table_bold_underline_and_errors_lower_is_better():
    runs = [_run("a", {"maxboxacc_v2": 50.0, "top1_loc_err": 40.0}), _run("b", {"maxboxacc_v2": 60.0,
            "top1_loc_err": 30.0}), _run("c", {"maxboxacc_v2": 55.0, "top1_loc_err": 35.0})]
    frame = metrics_frame(runs, ["maxboxacc_v2", "top1_loc_err"])
    md = format_table(frame, "md")
    assert "| a | m | l | d | 50.00 | 40.00 |" in md
    assert "| b | m | l | d | **60.00** | **30.00** |" in md
    assert "| c | m | l | d | <u>55.00</u> | <u>35.00</u> |" in md
    tex = format_table(frame, "tex")
    assert r"\textbf{60.00}" in tex and r"\underline{55.00}" in tex and r"\toprule" in tex
    assert "**" not in format_table(frame, "csv")


def test_seeds_become_mean_and_std():
    runs = [_run("a", {"maxboxacc_v2": v}, seed=s) for s, v in enumerate([50.0, 52.0, 54.0])]
    runs.append(_run("b", {"maxboxacc_v2": 40.0}))
    mean, std = summarize_seeds(metrics_frame(runs, ["maxboxacc_v2"]))
    assert mean["MaxBoxAccV2"].tolist() == [52.0, 40.0] and mean["Seeds"].tolist() == ["3", "1"]
    assert std["MaxBoxAccV2"].iloc[0] == pytest.approx(2.0)  # sample std of 50, 52, 54
    md = format_table(mean, "md", std=std)
    assert "**52.00 ± 2.00**" in md
    assert "MaxBoxAccV2 std" in format_table(mean, "csv", std=std)


def test_varying_overrides_become_columns():
    runs = [_run("a", {"maxboxacc_v2": 1.0}, overrides=["localize.threshold=0.1"]),
            _run("a", {"maxboxacc_v2": 2.0}, overrides=["localize.threshold=0.2"])]
    frame = metrics_frame(runs, ["maxboxacc_v2"])
    assert frame["localize.threshold"].tolist() == ["0.1", "0.2"]


@pytest.mark.parametrize("overlap", [True, False])
def test_interrupted_run_resumes_to_the_same_numbers(tmp_path, monkeypatch, overlap):
    cfg = _config("limit=20", "batch_size=4", f"speed.overlap={overlap}")
    whole = evaluate(cfg)
    run_dir = str(tmp_path)
    original = Evaluation.process

    def crash_on_third(self, index, batch, scores):
        if index == 2:
            raise KeyboardInterrupt  # a kill between batches
        return original(self, index, batch, scores)

    monkeypatch.setattr(Evaluation, "process", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        evaluate(cfg, run_dir)
    state = tmp_path / "partials"
    saved = sorted(os.listdir(state))  # overlapped, the batch already in flight behind the failed one is saved too
    assert saved[:2] == ["batch_000000.npz", "batch_000001.npz"] and "batch_000002.npz" not in saved
    assert saved[-1] == "meta.json" and len(saved) <= (4 if overlap else 3)
    monkeypatch.setattr(Evaluation, "process", original)
    resumed = evaluate(cfg, run_dir)
    assert resumed.metrics == whole.metrics
    assert resumed.info["ci"] == whole.info["ci"] and resumed.info["bootstrap"] == whole.info["bootstrap"]
    assert all((resumed.samples[k] == v).all() for k, v in whole.samples.items())
    assert resumed.images == whole.images and resumed.curves == whole.curves
    with pytest.raises(WsolError, match="another configuration"):
        evaluate(_config("limit=20", "batch_size=4", "method=cam"), run_dir)


def test_overlapped_loop_is_bit_identical_to_the_serial_one():
    serial = evaluate(_config("limit=24", "batch_size=4", "speed.overlap=false"))
    overlapped = evaluate(_config("limit=24", "batch_size=4", "speed.overlap=true"))
    assert overlapped.metrics == serial.metrics and overlapped.images == serial.images
    assert overlapped.curves == serial.curves
    split = evaluate(_config("limit=24", "batch_size=4", "speed.overlap=true", "speed.box_threads=1"))
    assert split.metrics == serial.metrics and split.images == serial.images


def test_box_threads_split_the_cores_only_when_scoring_shares_them(monkeypatch):
    """null: half the cores for boxes when an overlapped loop scores on the CPU, else every core (None)."""
    from wsol import stages as stage

    monkeypatch.setattr(stage, "available_cores", lambda: 6)
    assert stage.box_threads(None, True, "cpu") == 3
    assert stage.box_threads(None, False, "cpu") is None and stage.box_threads(None, True, "cuda") is None
    assert stage.box_threads(4, False, "cuda") == 4
    monkeypatch.setattr(stage, "available_cores", lambda: 1)
    assert stage.box_threads(None, True, "cpu") == 1


def test_partials_are_compact_and_load_without_pickle(tmp_path):
    """At interval 0.001 a batch file holds each image's boxes at every cut level (well under 2 KB per image) and
    its PxAP histograms (2 × 1,002 uint16 bins, compressed below their 4 KB)."""
    import zipfile

    import numpy as np

    cfg = _config("limit=16", "batch_size=8")
    evaluate(cfg, str(tmp_path))
    files = sorted((tmp_path / "partials").glob("batch_*.npz"))
    members = [m for f in files for m in zipfile.ZipFile(f).infolist()]
    boxes = sum(m.compress_size for m in members if not m.filename.startswith("pxap."))
    pxap = sum(m.compress_size for m in members if m.filename.startswith("pxap."))
    assert len(files) == 2 and boxes / 16 < 2048 and pxap / 16 < 2 * 1002 * 2 / 2
    with np.load(files[0], allow_pickle=False) as data:
        assert data["boxes.largest"].dtype == np.uint8 and len(data["ids"]) == 8


def test_map_cache_reused_across_localization_sweeps(tmp_path, monkeypatch):
    calls = []
    original = CamMethod.__call__
    monkeypatch.setattr(CamMethod, "__call__", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    cache = str(tmp_path / "cache")
    first = evaluate(_config("limit=12", "batch_size=4", cache=cache))
    assert len(calls) == 3
    second = evaluate(_config("limit=12", "batch_size=4", "localize.backend=cc", "protocol=cam16", cache=cache))
    assert len(calls) == 3  # maps came from the cache
    assert second.metrics["top1_cls"] == first.metrics["top1_cls"]
    uncached = evaluate(_config("limit=12", "batch_size=4", "localize.backend=cc", "protocol=cam16"))
    assert uncached.metrics == second.metrics and len(calls) == 6
    evaluate(_config("limit=12", "batch_size=4", "method=gradcampp", cache=cache))
    assert len(calls) == 9  # another method: new maps


def test_launcher_configs_compose():
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=os.path.join(REPO, "wsol", "conf"), version_base="1.3"):
        slurm = hydra_compose("config", overrides=["hydra/launcher=slurm"], return_hydra_config=True).hydra.launcher
        local = hydra_compose("config", overrides=["hydra/launcher=local"], return_hydra_config=True).hydra.launcher
    assert "SlurmLauncher" in slurm._target_ and slurm.gpus_per_node == 1 and slurm.array_parallelism == 64
    assert "JoblibLauncher" in local._target_ and local.n_jobs == 2


def wsol(*args: str, module: str = "wsol.run", env: dict | None = None, wait: bool = True):
    full_env = {**os.environ, **(env or {})}
    cmd = [sys.executable, "-m", module, *args]
    if not wait:
        return subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=full_env, timeout=600)


@pytest.mark.slow
def test_cli_kill_and_resume(tmp_path):
    env = {"WSOL_CACHE": str(tmp_path / "cache")}
    args = ["limit=40", "batch_size=4", "num_workers=0"]
    run_dir = tmp_path / "run"
    proc = wsol(*args, f"hydra.run.dir={run_dir}", env=env, wait=False)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((run_dir / "partials").glob("batch_*.npz"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list((run_dir / "partials").glob("batch_*.npz")))
    assert 2 <= done_before < 10 and not (run_dir / "metrics.json").exists()
    again = wsol(*args, f"hydra.run.dir={run_dir}", env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resuming: {done_before} of 10 batches already done" in again.stdout + again.stderr
    straight = wsol(*args, f"hydra.run.dir={tmp_path / 'straight'}", "cache_dir=null", env=env)
    assert straight.returncode == 0, straight.stderr[-2000:]
    metrics = [json.loads((d / "metrics.json").read_text())["metrics"] for d in (run_dir, tmp_path / "straight")]
    assert metrics[0] == metrics[1]
    assert (run_dir / "per_image.csv").read_text() == (tmp_path / "straight" / "per_image.csv").read_text()


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code", "name"), [(signal.SIGINT, 130, "SIGINT"), (signal.SIGTERM, 143, "SIGTERM")])
def test_ctrl_c_and_sigterm_stop_with_one_line_and_resume(tmp_path, signum, code, name):
    """Ctrl-C, or SLURM's pre-emption (SIGTERM): one line, the finished batches saved, the shell's exit code, and
    the same command resumes to the numbers of an uninterrupted run."""
    env = {"WSOL_CACHE": str(tmp_path / "cache")}
    args = ["limit=40", "batch_size=4", "num_workers=0", "progress=false"]
    run_dir = tmp_path / "run"
    proc = wsol(*args, f"hydra.run.dir={run_dir}", env=env, wait=False)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((run_dir / "partials").glob("batch_*.npz"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"stopped by {name}") and f"hydra.run.dir={run_dir} resumes it" in last
    assert "Traceback" not in err
    done_before = len(list((run_dir / "partials").glob("batch_*.npz")))
    assert 2 <= done_before < 10 and not (run_dir / "metrics.json").exists()
    again = wsol(*args, f"hydra.run.dir={run_dir}", env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resuming: {done_before} of 10 batches already done" in again.stdout + again.stderr
    straight = wsol(*args, f"hydra.run.dir={tmp_path / 'straight'}", "cache_dir=null", env=env)
    assert straight.returncode == 0, straight.stderr[-2000:]
    metrics = [json.loads((d / "metrics.json").read_text())["metrics"] for d in (run_dir, tmp_path / "straight")]
    assert metrics[0] == metrics[1]


@pytest.mark.slow
def test_two_shards_merge_to_one_run(tmp_path):
    env = {"WSOL_CACHE": str(tmp_path / "cache")}
    args = ["limit=30", "batch_size=4", "num_workers=0", "method=gradcampp"]
    shards = [
        wsol(*args, "shard.count=2", f"shard.index={i}", f"hydra.run.dir={tmp_path / f's{i}'}", env=env, wait=False)
        for i in range(2)
    ]
    for proc in shards:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-2000:]
    assert not (tmp_path / "s0" / "metrics.json").exists()
    merged = wsol(str(tmp_path / "s0"), str(tmp_path / "s1"), "--out", str(tmp_path / "merged"), module="wsol.merge")
    assert merged.returncode == 0, merged.stderr[-2000:]
    single = wsol(*args, f"hydra.run.dir={tmp_path / 'single'}", env=env)
    assert single.returncode == 0, single.stderr[-2000:]
    a, b = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("merged", "single"))
    assert a["metrics"] == b["metrics"] and a["images"] == b["images"] == 30
    assert a["ci"] == b["ci"] and a["bootstrap"] == b["bootstrap"]  # per-image data merged exactly
    samples = [read_arrays(str(tmp_path / d / "bootstrap.npz")) for d in ("merged", "single")]
    assert samples[0].keys() == samples[1].keys() and all((samples[0][k] == samples[1][k]).all() for k in samples[0])
    rows = [list(csv.reader((tmp_path / d / "per_image.csv").open())) for d in ("merged", "single")]
    assert rows[0] == rows[1]
    incomplete = wsol(str(tmp_path / "s0"), "--out", str(tmp_path / "bad"), module="wsol.merge")
    assert incomplete.returncode == 2 and "need shards 0..1" in incomplete.stderr


@pytest.mark.slow
def test_sweep_with_a_failed_job_and_seeds_to_table(tmp_path):
    env = {"WSOL_CACHE": str(tmp_path / "cache")}
    sweep = tmp_path / "sweep"
    proc = wsol("-m", "method=cam,gradcampp", "model.layer=features,features.99", "dataset.seed=0,1", "limit=8",
                f"hydra.sweep.dir={sweep}", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "error: no layer 'features.99'" in proc.stderr
    table = (sweep / "table.md").read_text()
    assert "Seeds" in table and " ± " in table
    assert table.count("| features |") == 2  # cam and gradcampp, seeds averaged
    failed = [line for line in table.splitlines() if line.startswith("- ") and "features.99" in line]
    assert len(failed) == 4 and "Failed or unfinished runs:" in table
    assert r"\toprule" in (sweep / "table.tex").read_text()
    pivot = aggregate(str(sweep), str(tmp_path / "pivot"), rows=["method"], cols=["dataset"],
                      metrics=["maxboxacc_v2"])
    assert "Method" in pivot and "demo · MaxBoxAccV2" in pivot


@pytest.mark.slow
def test_submitit_local_launcher(tmp_path):
    sweep = tmp_path / "sweep"
    proc = wsol("-m", "method=cam,gradcam", "limit=4", "hydra/launcher=submitit_local", f"hydra.sweep.dir={sweep}",
                env={"WSOL_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(d for d in os.listdir(sweep) if "=" in d) == ["method=cam", "method=gradcam"]
    assert all((sweep / d / "metrics.json").is_file() for d in os.listdir(sweep) if "=" in d)
    assert (sweep / ".submitit").is_dir()


def test_shard_values_from_environment_strings():
    # ${oc.env:RANK} and SLURM variables arrive as strings
    evaluation = Evaluation(_config("limit=12", "batch_size=4", "shard.index='1'", "shard.count='2'"))
    assert evaluation.meta["shard"] == {"index": 1, "count": 2}
    assert sorted(evaluation.batches) == [2]  # 3 batches: shard 0 gets batches 0-1, shard 1 batch 2
    with pytest.raises(WsolError, match="shard.index"):
        Evaluation(_config("limit=12", "shard.index=2", "shard.count=2"))
    with pytest.raises(WsolError, match="shard.index"):
        check_overrides(["limit=12", "shard.index=2", "shard.count=2"])


def test_layer_sweep_rows_in_numeric_layer_order(tmp_path):
    for layer in ("features.16", "features.4", "features.29", "layer4"):
        run = {**_run("gradcam", {"maxboxacc_v2": 50.0}), "layer": layer}
        folder = tmp_path / layer
        folder.mkdir()
        (folder / "metrics.json").write_text(json.dumps(run))
    table = aggregate(str(tmp_path))
    layers = [line.split("|")[3].strip() for line in table.splitlines() if "| gradcam |" in line]
    assert layers == ["features.4", "features.16", "features.29", "layer4"]


@pytest.mark.parametrize("method", ["gradcam", "gradcampp"])
def test_speed_modes_stay_within_their_stated_tolerance(method):
    # docs/speed.md: channels-last and folded batch norms (the CPU default) change nothing beyond float
    # rounding (0.05 points) against the network as written in NCHW; bf16 autocast keeps MaxBoxAccV2 within
    # 2.5 points, PxAP and the energy pointing game within 1 point and GT-known loc and top-1 classification
    # within one image, on 32 demo images (EfficientNet-Lite0: 49 real batch norms)
    def metrics(*overrides):
        return evaluate(_config(f"method={method}", "limit=32", "progress=false", *overrides)).metrics

    base = metrics("speed.channels_last=false", "speed.fold_batchnorm=false")
    for modes in [(), ("speed.fold_batchnorm=false",), ("speed.channels_last=false",)]:
        fast = metrics(*modes)
        assert all(abs(fast[k] - base[k]) <= 0.05 for k in base if isinstance(base[k], float)), (modes, base, fast)
    bf16 = metrics("speed.precision=bf16")
    for key, tolerance in (("maxboxacc_v2", 2.5), ("gt_known_loc", 100 / 32), ("pxap", 1.0),
                           ("energy_pointing_game", 1.0), ("top1_cls", 100 / 32)):
        assert abs(bf16[key] - base[key]) <= tolerance, (key, base[key], bf16[key])
    with pytest.raises(WsolError, match="speed.precision=fp16: expected one of fp32, bf16"):
        check_overrides(["speed.precision=fp16"])


def test_compile_around_leaves_the_target_layer_and_its_ancestors_eager():
    from torchvision.models import resnet18

    from wsol.models import compile_around

    model = resnet18()
    compiled = compile_around(model, ["layer4.1.conv2"])
    assert compiled == ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4.0", "layer4.1.conv1", "layer4.1.bn1",
                        "layer4.1.bn2", "fc"]
    modules = dict(model.named_modules())
    assert all(modules[name]._compiled_call_impl is not None for name in compiled)
    assert all(modules[name]._compiled_call_impl is None for name in ("", "layer4", "layer4.1", "layer4.1.conv2"))
    with pytest.raises(WsolError, match="speed.compile=.fastest.: expected true, false, default"):
        check_overrides(["speed.compile=fastest"])


@pytest.mark.slow
def test_compile_mode_stays_within_its_stated_tolerance():
    # README: speed.compile=true changes nothing beyond float rounding (0.05 points); resnet18 with random
    # weights (nothing to download), 8 demo images in batches of 4 (one compiled shape), Grad-CAM++
    def metrics(*overrides):
        config = _config("model=resnet18", "model.weights=null", "method=gradcampp", "limit=8", "batch_size=4",
                         "progress=false", *overrides)
        return evaluate(config).metrics

    base, compiled = metrics(), metrics("speed.compile=true")
    assert base.keys() == compiled.keys()
    assert all(abs(compiled[k] - base[k]) <= 0.05 for k in base), (base, compiled)


def test_image_cache_fills_once_and_gives_the_same_results(tmp_path, monkeypatch):
    import torch

    from wsol.data import build_dataset
    from wsol.data.cache import ImageCache

    cache = str(tmp_path / "cache")
    plain = evaluate(_config("limit=10", "batch_size=4", "progress=false"))
    first = evaluate(_config("limit=10", "batch_size=4", "progress=false", "image_cache=true", "num_workers=2",
                             cache=cache))
    assert first.metrics == plain.metrics
    dataset = build_dataset("demo", num_classes=1000)
    dataset.records = dataset.records[:10]
    filled = dataset.use_image_cache(os.path.join(cache, "images"))
    assert filled.filled() == 10  # written by two DataLoader worker processes
    fresh = build_dataset("demo", num_classes=1000)
    fresh.records = fresh.records[:10]
    expected = [fresh[i] for i in range(10)]

    def no_decoding(*_):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(type(dataset), "load_image", no_decoding)
    for i in range(10):
        sample = dataset[i]
        assert torch.equal(sample["image"], expected[i]["image"]) and sample["size"] == expected[i]["size"]
        assert torch.equal(sample["boxes"], expected[i]["boxes"])
    monkeypatch.undo()
    second = evaluate(_config("limit=10", "batch_size=4", "progress=false", "image_cache=true", cache=cache))
    assert second.metrics == plain.metrics
    other = ImageCache(os.path.join(cache, "images"), {"ids": ["x"]}, 1, 224)  # another key: a new, empty file
    assert other.get(0) is None and other.filled() == 0
    reseeded = build_dataset("demo", num_classes=1000, seed=1)
    reseeded.records = reseeded.records[:10]
    assert reseeded.use_image_cache(os.path.join(cache, "images")).filled() == 0  # other images, other key


def test_a_second_process_that_saw_no_cache_file_never_truncates_the_first_ones(tmp_path, monkeypatch):
    """Two processes start on an empty cache: the one that checks second still finds no file (the race), and
    creates its own; the first one's file, which it maps and fills, is kept as it is."""
    import numpy as np

    from wsol.data.cache import ImageCache

    first = ImageCache(str(tmp_path), {"ids": ["a", "b"]}, 2, 8)
    row = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)
    first.put(1, row, (40, 30))
    real_isfile = os.path.isfile
    monkeypatch.setattr(os.path, "isfile", lambda p: False if str(p).startswith(first.base) else real_isfile(p))
    second = ImageCache(str(tmp_path), {"ids": ["a", "b"]}, 2, 8)
    monkeypatch.undo()
    for cache in (first, second):
        image, size = cache.get(1)
        assert np.array_equal(image, row) and size == (40, 30) and cache.get(0) is None
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(first.base) + s
                                                  for s in (".images", ".sizes", ".filled"))  # no temporary left


def test_job_folders_are_named_by_what_varies(tmp_path):
    from wsol.callbacks import SWEEP_FILE, job_dirname, varying_keys

    assert varying_keys(["method=cam,gradcampp", "dataset.root=/data/x", "limit=3", "seed=range(0,2)"]) == [
        "method", "seed"]
    overrides = ["dataset=wsoleval", "dataset.root=/data/x", "dataset.metadata_root=/data/x/metadata/HIDDEN/test",
                 "method=cam"]
    (tmp_path / SWEEP_FILE).write_text(json.dumps({"varying": ["method"]}))
    assert job_dirname(overrides, str(tmp_path)) == "method=cam"  # one level: paths and constants stay out
    (tmp_path / SWEEP_FILE).write_text(json.dumps({"varying": ["dataset.metadata_root", "method"]}))
    name = job_dirname(overrides, str(tmp_path))
    assert "/" not in name and name.startswith("dataset.metadata_root=test~") and name.endswith(",method=cam")


def test_loading_starts_before_the_model_and_restarts_when_its_classes_drop_records():
    """The workers start on all batches before the model is built; a model with fewer classes than the labels
    drops records (counted), and the batches are planned and loaded again from the records that remain."""
    common = ("method=cam", "batch_size=4", "limit=10", "num_workers=1")
    kept = Evaluation(_config(*common), start_loading=True)
    started = kept.plan._started
    assert started is not None and started[0] == [0, 1, 2]
    assert kept.loader([0, 1, 2]) is started[1] and kept.plan._started is None  # handed over, not started again
    assert not kept.dataset.skipped

    # the demo's labels are 285, 657, 872, 967 in turn: a 700-class model keeps half of its 120 records
    small = Evaluation(_config(*common, "model=resnet18", "model.weights=null", "model.num_classes=700"),
                       start_loading=True)
    assert small.meta["dataset_skipped"] == {"class_id_out_of_range": 60}
    assert len(small.dataset) == 10 and {r.label for r in small.dataset.records} == {285, 657}
    assert small.batches == {0: [0, 1, 2, 3], 1: [4, 5, 6, 7], 2: [8, 9]}
    assert small.plan._started is None  # the early workers (on records now dropped) were stopped
    batches = list(small.loader(list(small.batches)))
    assert [b.ids for b in batches] == [[small.dataset.records[i].image_id for i in positions]
                                        for positions in small.batches.values()]


def test_decoding_ahead_stays_within_a_quarter_of_the_free_shared_memory():
    image = 3 * 224 * 224  # uint8 pixels of one 224² image: 150,528 bytes
    assert prefetch_batches(32, 1, image, None) == 16  # 512 images ahead, no bound known
    assert prefetch_batches(32, 1, image, 25 << 30) == 16
    assert prefetch_batches(32, 1, image, 64 << 20) == 3  # Docker's default /dev/shm: 16 MiB → 111 images
    assert prefetch_batches(256, 15, image, None) == 2  # never below DataLoader's default
    assert prefetch_batches(32, 1, image, 0) == 2
