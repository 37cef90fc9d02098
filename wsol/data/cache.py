"""A cache of decoded eval-size images, so a sweep decodes and resizes each image once.

Rows of a memory-mapped ``uint8 [N, S, S, 3]`` file are filled on first read, with the decoded
image's ``(width, height)`` beside them and a flag written after the row: a killed run leaves unflagged
rows, which are decoded again. Each process (DataLoader workers included) opens the maps itself; the
files are created whole and linked into place, so a process never truncates a file another one maps.
The key covers the dataset's name, image folder, eval size and records (ids, labels, boxes); delete
the folder after changing image files in place.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets

import numpy as np

__all__ = ["ImageCache"]


def _create_zeroed(path: str, nbytes: int) -> None:
    """A zero-filled file of ``nbytes`` at ``path``, made whole under a temporary name, then linked in: a file
    another process created (and maps) meanwhile is kept, never truncated; one of the wrong size (an older
    layout, never mapped at this size) is replaced by a rename, which leaves existing mappings intact."""
    tmp = f"{path}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    with open(tmp, "xb") as f:
        f.truncate(nbytes)
    try:
        if os.path.isfile(path):
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    except FileExistsError:
        pass  # created by another process first: its file is the cache
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class ImageCache:
    """``get(i)`` → ``(image uint8 [S, S, 3], (w, h))`` or ``None``; ``put(i, image, size)``."""

    def __init__(self, folder: str, identity: dict, count: int, size: int) -> None:
        key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
        os.makedirs(folder, exist_ok=True)
        self.base = os.path.join(folder, f"{key}_{count}x{size}")
        self.count, self.size = count, size
        self._pid: int | None = None
        for suffix, shape, dtype in self._files():
            nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
            path = self.base + suffix
            if not os.path.isfile(path) or os.path.getsize(path) != nbytes:
                _create_zeroed(path, nbytes)

    def _files(self) -> tuple[tuple[str, tuple[int, ...], type], ...]:
        return (
            (".images", (self.count, self.size, self.size, 3), np.uint8),
            (".sizes", (self.count, 2), np.int32),
            (".filled", (self.count,), np.uint8),
        )

    def _maps(self) -> tuple[np.memmap, ...]:
        if self._pid != os.getpid():  # a forked or spawned worker opens its own mapping
            self._arrays = tuple(np.memmap(self.base + s, dtype=d, mode="r+", shape=sh) for s, sh, d in self._files())
            self._pid = os.getpid()
        return self._arrays

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("_arrays", "_pid")} | {"_pid": None}

    def get(self, index: int) -> tuple[np.ndarray, tuple[int, int]] | None:
        images, sizes, filled = self._maps()
        if not filled[index]:
            return None
        return np.array(images[index]), (int(sizes[index, 0]), int(sizes[index, 1]))

    def put(self, index: int, image: np.ndarray, size: tuple[int, int]) -> None:
        images, sizes, filled = self._maps()
        images[index] = image
        sizes[index] = size
        filled[index] = 1

    def filled(self) -> int:
        return int(self._maps()[2].sum())
