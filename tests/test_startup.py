"""Start-up: the box engine's compiled kernels are cached on disk and reused by the next process, also for a
package installed where it cannot write; an edited kernel file or another CPU is compiled again, never served
from a stale cache. Checked by numba's own cache counters, not by timing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

PROBE = """
import hashlib, json
import numpy as np
from wsol.localize.sweep import sweep_boxes, _kernel
rng = np.random.default_rng(0)
maps = (rng.random((3, 40, 48)) * 255).astype(np.uint8)
levels = np.tile(np.arange(0, 255, 5), (3, 1))
gt = np.array([[[1, 1, 10, 10]], [[3, 3, 20, 20]], [[0, 0, 47, 39]]])
out = sweep_boxes(maps, levels, gt, np.ones((3, 1), bool), "contours")
digest = hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in (out.iou_largest, out.iou_all, out.box)))
kernel = _kernel()
print(json.dumps({"hits": sum(kernel.stats.cache_hits.values()), "misses": sum(kernel.stats.cache_misses.values()),
                  "digest": digest.hexdigest(), "file": __import__("wsol").__file__}))
"""


def _probe(site: str, cache_home: str, **env: str) -> dict:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    environ.update(PYTHONPATH=site, XDG_CACHE_HOME=cache_home, **env)
    proc = subprocess.run(  # run from the cache folder, so that the checkout's own wsol is not on the path
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=environ, cwd=cache_home, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_second_process_loads_the_kernels_from_the_user_cache_of_a_read_only_install(tmp_path):
    """wsol copied as an installed package whose folder cannot take a ``__pycache__`` (a file of that name stands
    in for a read-only site-packages, which root could still write): numba falls back to the user's cache
    directory, and the second process compiles nothing."""
    site = tmp_path / "site"
    shutil.copytree(os.path.join(REPO, "wsol"), site / "wsol", ignore=shutil.ignore_patterns("__pycache__"))
    for package in ("wsol", "wsol/localize"):
        (site / package / "__pycache__").write_text("not a folder: nothing can be cached beside the package\n")
    cache_home = tmp_path / "user-cache"
    cache_home.mkdir()
    first = _probe(str(site), str(cache_home))
    assert first["file"] == str(site / "wsol" / "__init__.py")
    assert first["misses"] == 1 and first["hits"] == 0  # compiled once
    assert list((cache_home / "numba").rglob("kernels.kernel-*.nbi"))  # written to the user's cache
    second = _probe(str(site), str(cache_home))
    assert second["misses"] == 0 and second["hits"] == 1  # loaded, not compiled
    assert second["digest"] == first["digest"]
    # another CPU (numba's CPU name is part of the cache key): compiled again, same results
    foreign = _probe(str(site), str(cache_home), NUMBA_CPU_NAME="generic")
    assert foreign["misses"] == 1 and foreign["hits"] == 0 and foreign["digest"] == first["digest"]
    # an edited kernel file: its content hash no longer matches, so the cache is not used
    kernels = site / "wsol" / "localize" / "kernels.py"
    kernels.write_text(kernels.read_text() + "\n# edited\n")
    edited = _probe(str(site), str(cache_home))
    assert edited["misses"] == 1 and edited["hits"] == 0 and edited["digest"] == first["digest"]


def test_num_workers_auto_leaves_one_core_for_the_main_loop(monkeypatch):
    from wsol.errors import WsolError
    from wsol.stages import resolve_workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1, 2, 3}, raising=False)
    assert resolve_workers("auto") == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {5}, raising=False)
    assert resolve_workers("auto") == 0  # one core: load in the main process
    assert resolve_workers(2) == 2 and resolve_workers("0") == 0
    for bad in (-1, "many"):
        with pytest.raises(WsolError, match="num_workers must be auto or a number"):
            resolve_workers(bad)


@pytest.mark.slow
def test_whole_process_bench_runs_wsol_on_the_split_it_writes(tmp_path):
    """``bench.py --vs-peers`` pieces: the split it writes is read back by wsol's loader with the demo's boxes, a
    whole-process row is measured (the peer row needs a wsolevaluation checkout: skipped with one line), and
    the start-up probe profiles a fresh process phase by phase."""
    sys.path.insert(0, os.path.join(REPO, "scripts"))
    import bench
    import bench_peers

    from wsol.data import build_dataset
    from wsol.data.demo import DemoDataset

    root, metadata = bench_peers.write_split(str(tmp_path / "split"), 6)
    written = build_dataset("wsoleval", root=root, metadata_root=metadata)
    demo = DemoDataset(num_images=6)
    assert [r.boxes.tolist() for r in written.records] == [r.boxes.tolist() for r in demo.records]
    assert [r.size for r in written.records] == [r.size for r in demo.records]
    table = bench_peers.vs_peers([6], None, 4, 1, 0)
    row = table.strip().splitlines()[-1].split("|")
    assert row[1].strip() == "6" and float(row[2]) > 0 and "not measured" in table
    phases = bench._startup_in(REPO, str(tmp_path / "probe"))
    assert phases["whole process, profiled"] > phases["everything after the imports (main)"] > phases["model build"] > 0
    assert phases["box sweep (every batch; the first one loads the kernels)"] > 0


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_files_are_written_with_the_users_umask(tmp_path, monkeypatch, umask):
    """Atomic writes get a plain open()'s mode (colleagues on a shared cluster read them) without wsol reading or
    setting the process-wide umask (another thread's files would get the wrong mode meanwhile)."""
    import stat

    from wsol.io import atomic_write_text, read_arrays, write_arrays

    previous = os.umask(umask)
    try:
        def no_umask(_):
            raise AssertionError("wsol changed the process umask")

        monkeypatch.setattr(os, "umask", no_umask)
        atomic_write_text(str(tmp_path / "a.txt"), "x")
        write_arrays(str(tmp_path / "b.npz"), ids=np.array(["x", "y"]), n=np.arange(3))
        monkeypatch.undo()
    finally:
        os.umask(previous)
    for name in ("a.txt", "b.npz"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask
    assert read_arrays(str(tmp_path / "b.npz"))["ids"].tolist() == ["x", "y"]
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "b.npz"]  # no temporary left


EXIT_PROBE = """
import atexit, multiprocessing, os, threading, time
from concurrent.futures import ThreadPoolExecutor
from torch import nn

FOLDER = os.environ["EXIT_PROBE_DIR"]


def late():
    time.sleep(0.3)
    open(os.path.join(FOLDER, "thread"), "w").write("joined")


def build():
    # What a user's builder (or a library it imports) may leave behind when the run ends.
    build.executor = ThreadPoolExecutor(max_workers=1)  # an idle executor, never shut down
    build.executor.submit(time.sleep, 0)
    threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
    threading.Thread(target=late).start()  # a non-daemon thread that ends by itself
    build.pool = multiprocessing.get_context("spawn").Pool(1)  # a pool never closed
    atexit.register(lambda: open(os.path.join(FOLDER, "atexit"), "w").write("ran"))
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 1000))
"""


@pytest.mark.slow
def test_a_run_ends_with_an_idle_executor_threads_a_pool_and_an_atexit_handler(tmp_path):
    """``python -m wsol.run`` exits as the interpreter does: nothing a builder leaves open makes it hang, and the
    ``atexit`` handlers and late non-daemon threads complete."""
    (tmp_path / "probe.py").write_text(EXIT_PROBE)
    env = {**os.environ, "EXIT_PROBE_DIR": str(tmp_path), "HYDRA_FULL_ERROR": "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "wsol.run", "model=custom", f"model.target={tmp_path / 'probe.py'}:build",
         "model.layer='1'", "limit=2", "batch_size=2", "cache_dir=null", "progress=false", "num_workers=0",
         f"hydra.run.dir={tmp_path / 'run'}"], cwd=REPO, capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "run" / "metrics.json").is_file()
    assert (tmp_path / "thread").read_text() == "joined" and (tmp_path / "atexit").read_text() == "ran"
