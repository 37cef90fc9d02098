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
import tempfile

import numpy as np

__all__ = ["atomic_write_bytes", "atomic_write_text", "write_json", "read_json", "write_arrays", "read_arrays"]


def _umask() -> int:
    mask = os.umask(0)  # read it: os.umask sets and returns the old value
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # read once, at import (single-threaded)


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        os.fchmod(fd, _FILE_MODE)  # mkstemp creates 0600 whatever the umask
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
