"""The map cache and the run fingerprint are keyed by content: file bytes, library versions, code, device type."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO, compose

from wsol import identity
from wsol.cache import entries, main, parse_age, parse_size, prune
from wsol.config import to_dict
from wsol.errors import WsolError
from wsol.keys import map_key, run_fingerprint
from wsol.pipeline import evaluate
from wsol.state import PartialStore


def _checkpoint(path, seed: int) -> None:
    import torchvision

    torch.manual_seed(seed)
    torch.save(torchvision.models.resnet18(num_classes=1000).state_dict(), path)


def test_an_overwritten_checkpoint_is_not_served_from_the_cache(tmp_path):
    """The issue's sequence: evaluate, overwrite the checkpoint at the same path with other weights, evaluate again
    with the default (on) cache: the numbers of the new weights, as with the cache off."""
    ck, cache = str(tmp_path / "ck.pth"), str(tmp_path / "cache")
    args = ("model=resnet18", "model.weights=null", f"model.checkpoint={ck}", "limit=8", "batch_size=8",
            "eval.bootstrap=0")
    _checkpoint(ck, 0)
    first = evaluate(compose(*args, f"cache_dir={cache}"))
    _checkpoint(ck, 1)
    os.utime(ck, ns=(os.stat(ck).st_atime_ns, os.stat(ck).st_mtime_ns + 1))  # even within one clock tick
    second = evaluate(compose(*args, f"cache_dir={cache}"))
    uncached = evaluate(compose(*args, "cache_dir=null"))
    assert second.metrics == uncached.metrics
    assert second.metrics != first.metrics  # other weights, other numbers: the test can fail
    assert len(os.listdir(os.path.join(cache, "maps"))) == 2
    again = evaluate(compose(*args, f"cache_dir={cache}"))  # the second entry is reused
    assert again.metrics == uncached.metrics and len(os.listdir(os.path.join(cache, "maps"))) == 2


def test_file_digests_are_of_the_bytes_and_remembered_by_stamp(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"one")
    first = identity.file_digest(str(path), str(tmp_path / "cache"))
    assert first == "7692c3ad3540bb803c020b3aee66cd8887123234ea0c6e7143c0add73ff431ed"  # sha256(b"one")
    saved = json.loads(next((tmp_path / "cache" / "digests").iterdir()).read_text())
    assert saved["sha256"] == first and saved["size"] == 3
    path.write_bytes(b"two")
    os.utime(path, ns=(saved["mtime_ns"] + 5, saved["mtime_ns"] + 5))
    assert identity.file_digest(str(path), str(tmp_path / "cache")) != first
    assert identity.file_digest(str(tmp_path / "none")) == "missing"


def test_the_fingerprints_change_with_libraries_code_device_and_input_files(tmp_path, monkeypatch):
    meta = tmp_path / "meta"
    meta.mkdir()
    (meta / "localization.txt").write_text("a.jpg,1,1,5,5\n")
    config = to_dict(compose("dataset=wsoleval", "dataset.root=/x", f"dataset.metadata_root={meta}"))
    run, maps = run_fingerprint(config), json.dumps(map_key(config), sort_keys=True)
    (meta / "localization.txt").write_text("a.jpg,1,1,5,6\n")
    os.utime(meta / "localization.txt", ns=(1, time.time_ns() + 10))
    assert run_fingerprint(config) != run
    versions = {**identity.library_versions(), "torchvision": "0.0.1"}
    monkeypatch.setattr(identity, "library_versions", lambda: versions)
    changed = run_fingerprint(config)
    assert changed != run and json.dumps(map_key(config), sort_keys=True) != maps
    monkeypatch.setattr(identity, "code_hash", lambda: "0" * 16)
    assert run_fingerprint(config) != changed
    monkeypatch.setattr(identity, "device_type", lambda device: "cuda")
    assert map_key(config)["identity"]["device_type"] == "cuda"


def test_resume_refuses_a_folder_written_under_other_library_versions(tmp_path):
    meta = {"fingerprint": "a", "libraries": {"torch": "2.4.0", "numpy": "2.0.0"}}
    PartialStore(str(tmp_path), meta)
    with pytest.raises(WsolError, match=r"was written under torch 2.4.0 \(now 2.14.1\); resume only with the same"):
        PartialStore(str(tmp_path), {"fingerprint": "b", "libraries": {"torch": "2.14.1", "numpy": "2.0.0"}})
    with pytest.raises(WsolError, match="another configuration, code or input files"):
        PartialStore(str(tmp_path), {"fingerprint": "b", "libraries": meta["libraries"]})


def test_cache_list_prune_and_clear(tmp_path, capsys):
    root = tmp_path / "cache"
    for name, age in (("old", 40 * 86400), ("new", 60)):
        folder = root / "maps" / name
        folder.mkdir(parents=True)
        (folder / "batch_000000.npz").write_bytes(b"x" * 1000)
        (folder / "key.json").write_text(json.dumps({"key": {"model": {"name": name}}}))
        stamp = time.time() - age
        os.utime(folder / "key.json", (stamp, stamp))
    (root / "digests").mkdir()
    (root / "digests" / "d.json").write_text("{}")
    assert main(["--cache-dir", str(root), "list"]) == 0
    out = capsys.readouterr().out
    assert "3 entries" in out and "old" in out
    assert [e["name"] for e in prune(str(root), older_than=parse_age("30d"))] == ["old"]
    assert sorted(e["name"] for e in entries(str(root))) == ["d.json", "new"]
    assert [e["name"] for e in prune(str(root), max_bytes=parse_size("100"))] == ["new"]  # least recently used
    assert main(["--cache-dir", str(root), "clear"]) == 0 and entries(str(root)) == []
    assert main(["--cache-dir", str(root), "prune", "--older-than", "soon"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: --older-than soon")


@pytest.mark.slow
def test_the_cache_command_runs_as_a_module(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "wsol.cache", "--cache-dir", str(tmp_path), "list"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "0 entries" in proc.stdout
