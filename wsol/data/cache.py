"""A cache of decoded eval-size images, so a sweep decodes and resizes each image once.

Rows of a memory-mapped ``uint8 [N, S, S, 3]`` file are filled on first read, with the decoded
image's ``(width, height)`` beside them and a flag written after the row: a killed run leaves unflagged
rows, which are decoded again. Each process (DataLoader workers included) opens the maps itself.
The key covers the dataset's name, image folder, eval size and records (ids, labels, boxes); delete
the folder after changing image files in place.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

__all__ = ["ImageCache"]


class ImageCache:
    """``get(i)`` → ``(image uint8 [S, S, 3], (w, h))`` or ``None``; ``put(i, image, size)``."""

    def __init__(self, folder: str, identity: dict, count: int, size: int) -> None:
        key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
        os.makedirs(folder, exist_ok=True)
        self.base = os.path.join(folder, f"{key}_{count}x{size}")
        self.count, self.size = count, size
        self._pid: int | None = None
        for suffix, shape, dtype in self._files():
            path = self.base + suffix
            if not os.path.isfile(path) or os.path.getsize(path) != int(np.prod(shape)) * np.dtype(dtype).itemsize:
                np.memmap(path, dtype=dtype, mode="w+", shape=shape).flush()

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
