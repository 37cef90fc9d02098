"""Score maps produced elsewhere: ``method=from_files method.maps_dir=DIR``.

The layout is wsolevaluation's: one float ``.npy`` array per image at ``DIR/<image_id>.npy``
(``image_id`` as the dataset names it, e.g. ``val/ILSVRC2012_val_00000001.JPEG.npy``), any 2-D
size (resized to the eval size like a model's map). :func:`save_maps` writes that layout.
"""

from __future__ import annotations

import io
import os

import numpy as np
import torch

from ..errors import WsolError
from ..io import atomic_write_bytes, is_safe_id

__all__ = ["load_maps", "save_maps", "map_path"]


def map_path(maps_dir: str, image_id: str) -> str:
    """``maps_dir/<image_id>.npy``; an id that would name a file outside ``maps_dir`` (absolute, or with a
    ``..`` part) is refused."""
    if not is_safe_id(image_id):
        raise WsolError(f"image id {image_id!r} is not a relative path below {maps_dir}")
    return os.path.join(maps_dir, image_id + ".npy")


def load_maps(maps_dir: str, ids: list[str]) -> tuple[list[torch.Tensor | None], list[str | None]]:
    """Each id's map as a float32 ``[h, w]`` tensor, or ``None`` with a skip reason (``maps_dir`` must exist)."""
    maps, reasons = [], []
    for image_id in ids:
        if not is_safe_id(image_id):
            maps.append(None)
            reasons.append("unsafe_id")
            continue
        path = map_path(maps_dir, image_id)
        try:
            array = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            maps.append(None)
            reasons.append("missing_map")
            continue
        except (OSError, ValueError):
            maps.append(None)
            reasons.append("unreadable_map")
            continue
        if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
            maps.append(None)
            reasons.append("invalid_map")
            continue
        maps.append(torch.from_numpy(array.astype(np.float32)))
        reasons.append(None)
    return maps, reasons


def save_maps(maps_dir: str, ids: list[str], maps: np.ndarray) -> None:
    """Write normalised maps ``[B, H, W]`` as float32 ``.npy`` files, one per image id (atomically)."""
    for image_id, array in zip(ids, maps, strict=True):
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(array, dtype=np.float32))
        atomic_write_bytes(map_path(maps_dir, image_id), buffer.getvalue())
