"""``speed.keep_freed_memory``: glibc keeps a freed 100 MiB block in its heap for reuse instead of unmapping it,
read off glibc's own accounting (``mallinfo2``) in fresh processes, not off timing."""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys

import pytest
import torch
from conftest import REPO

from wsol.keys import run_fingerprint
from wsol.scoring import auto_on_cpu

PROBE = """
import ctypes, json, sys
import torch
from wsol.allocator import keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
kept = keep_freed_memory() if sys.argv[1] == "on" else False
block = torch.ones(100 * 2**20, dtype=torch.uint8)
mapped = libc.mallinfo2().hblkhd  # bytes in blocks served by their own mmap
del block
print(json.dumps({"kept": kept, "again": keep_freed_memory() if kept else None, "mapped": mapped,
                  "free_in_heap": libc.mallinfo2().fordblks}))
"""


def _glibc_with_mallinfo2() -> bool:
    try:
        libc = ctypes.CDLL(None)
        return hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallinfo2")
    except OSError:
        return False


def _probe(mode: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not _glibc_with_mallinfo2(), reason="glibc ≥ 2.33 only (mallinfo2)")
def test_a_freed_large_block_stays_in_the_heap_only_when_kept():
    block = 100 * 2**20
    default = _probe("off")
    assert default["mapped"] >= block and default["free_in_heap"] < block  # its own mmap, unmapped on free
    kept = _probe("on")
    assert kept["kept"] is True and kept["again"] is True
    assert kept["mapped"] < block and kept["free_in_heap"] >= block  # from the heap, and still there after free


def test_auto_keeps_freed_memory_on_a_cpu_only_and_the_setting_changes_no_result():
    assert auto_on_cpu("auto", torch.device("cpu"))
    assert not auto_on_cpu("auto", torch.device("cuda"))
    assert auto_on_cpu(True, torch.device("cuda")) and not auto_on_cpu(False, torch.device("cpu"))
    config = {"method": {"name": "gradcam"}, "speed": {"fold_batchnorm": True, "keep_freed_memory": "auto"}}
    other = {**config, "speed": {"fold_batchnorm": True, "keep_freed_memory": False}}
    assert run_fingerprint(config) == run_fingerprint(other)
    assert run_fingerprint(config) != run_fingerprint({**config, "speed": {"fold_batchnorm": False}})


def test_only_the_cli_entry_point_sets_the_allocator():
    """The library (wsol.pipeline.evaluate, wsol.evaluate) never calls mallopt; the CLI does, switchably."""
    code = (
        "import sys; sys.path.insert(0, 'tests'); from conftest import compose; import wsol, wsol.allocator as a;"
        "from wsol.pipeline import evaluate; from wsol.run import process_settings;"
        "cfg = compose('limit=2', 'batch_size=2', 'device=cpu');"
        "evaluate(cfg); wsol.evaluate(wsol.models.build_model('efficientnet_lite0').module,"
        " wsol.datasets.demo(num_images=2), method='cam', num_workers=0);"
        "assert a.keep_freed_memory.cache_info().misses == 0, 'the library set the allocator';"
        "assert process_settings(compose('speed.keep_freed_memory=false')) == {'keep_freed_memory': False};"
        "assert a.keep_freed_memory.cache_info().misses == 0;"
        "print(process_settings(cfg))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() in ("{'keep_freed_memory': True}", "{'keep_freed_memory': False}")  # False: not glibc
