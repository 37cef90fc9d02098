"""Files, written atomically and readable without running code: the bottom layer every stage may use.

Every file wsol writes goes through :func:`atomic_write_bytes`: a temporary file in the same folder,
then a rename, so a reader sees the old file or the whole new one. The file gets the permissions a
plain ``open()`` would give it (``0o666`` less the user's umask), so colleagues on a shared cluster
read the results as they read any other file. Arrays are stored as ``.npz`` and read with
``allow_pickle=False``, structured data as JSON: opening a run folder someone else wrote never runs
their code.
"""

from __future__ import annotations

import io
import json
import os
import secrets

import numpy as np

__all__ = [
    "is_safe_id", "atomic_write_bytes", "atomic_write_text", "write_json", "read_json", "write_arrays", "read_arrays"
]


def is_safe_id(image_id: str) -> bool:
    """Whether ``image_id`` names a file below the folder it is joined to: relative, no ``..`` part, no NUL
    (ids become paths under the image root, ``maps_dir`` and ``method.maps_dir``)."""
    parts = image_id.replace("\\", "/").split("/")
    return bool(image_id) and not os.path.isabs(image_id) and ".." not in parts and "\0" not in image_id


def _create_temporary(folder: str, name: str) -> tuple[int, str]:
    """A new file beside ``name`` in ``folder``, opened for writing. Created with mode ``0o666``, so the kernel
    applies the umask as for a plain ``open()`` (the umask is never read or changed: it is process-wide)."""
    for _ in range(100):
        tmp = os.path.join(folder, f".tmp-{secrets.token_hex(6)}-{name}")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name in {folder}")


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = _create_temporary(folder, os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str, text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode())


def write_json(path: str, value: object) -> None:
    atomic_write_text(path, json.dumps(value, indent=2, default=str) + "\n")


def read_json(path: str) -> object:
    with open(path) as f:
        return json.load(f)


def write_arrays(path: str, **arrays: np.ndarray) -> None:
    """Named arrays as one compressed ``.npz`` (numeric, bool or unicode arrays: no pickled objects)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
    atomic_write_bytes(path, buffer.getvalue())


def read_arrays(path: str) -> dict[str, np.ndarray]:
    """The arrays of a ``.npz`` written by :func:`write_arrays`, loaded without unpickling anything."""
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
