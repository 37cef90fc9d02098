"""Keep the C allocator's freed memory for the next batch on a CPU run.

glibc's malloc serves every block above its mmap threshold with a fresh ``mmap`` and returns it with ``munmap``
on free; the threshold adapts to freed blocks but never beyond 32 MiB. A CPU forward frees and reallocates
blocks larger than that every batch (ResNet-18 at batch 32: its stem's ``[32, 64, 112, 112]`` float32 output,
103 MB), so the kernel maps and zero-fills those pages again each time (docs/speed.md: the forward of
ResNet-18 over 1,000 images on a 2-core CPU, 9.7 s without this and 8.0 s with it in the latest run).

Raising the mmap threshold and the trim threshold (``mallopt(3)``: ``M_MMAP_THRESHOLD``, ``M_TRIM_THRESHOLD``)
keeps freed blocks in the heap, where the next batch reuses them: the process holds its peak memory until it
exits instead of handing it back between batches. Intel's PyTorch CPU tuning guide reaches the same end by
preloading jemalloc or tcmalloc; this needs no second allocator. Other C libraries (musl, macOS) are left as
they are.
"""

from __future__ import annotations

import ctypes
import functools

__all__ = ["keep_freed_memory"]

M_TRIM_THRESHOLD = -1  # <malloc.h>
M_MMAP_THRESHOLD = -3
# glibc before 2.36 refuses an mmap threshold above HEAP_MAX_SIZE / 2 (32 MiB on 64-bit): the fallback
MMAP_THRESHOLDS = (1 << 30, 32 << 20)
TRIM_THRESHOLD = (1 << 31) - 1


@functools.cache
def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process (and the workers it forks after); whether it
    took effect. Once per process: the thresholds are process-wide, and a later call changes nothing."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - glibc's own symbol: other C libraries are left alone
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if not any(mallopt(M_MMAP_THRESHOLD, size) for size in MMAP_THRESHOLDS):
        return False
    return bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
