"""``python -m wsol.cache list|prune|clear``: what the cache under ``cache_dir`` holds, and bounding it.

The cache (``cache_dir``, default ``$WSOL_CACHE`` or ``~/.cache/wsol``) holds:

- ``maps/<key>/``: one evaluation's score maps and top-5 predictions, one ``batch_NNNNNN.npz`` per batch, and
  ``key.json``, what the key is made of (:func:`wsol.keys.map_key`: the dataset, model and method settings,
  wsol's code, the libraries' versions, the device type, the bytes of the checkpoint and metadata files);
- ``images/``: decoded eval-size images (``image_cache=true``);
- ``digests/``: the SHA-256 of each checkpoint or metadata file read, by path, size and modification time.

An entry's age is the time since it was last used (a run that reads it touches its ``key.json``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import time

from .errors import WsolError
from .io import read_json, write_json

__all__ = ["cache_root", "entries", "prune", "write_key", "touch", "main"]

KEY_FILE = "key.json"
AREAS = ("maps", "images", "digests")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SIZES = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def cache_root(cache_dir: str | None = None) -> str:
    """The cache folder: ``cache_dir``, else ``$WSOL_CACHE``, else ``~/.cache/wsol`` (the config's default)."""
    return os.path.expanduser(cache_dir or os.environ.get("WSOL_CACHE") or "~/.cache/wsol")


def write_key(folder: str, key: dict) -> None:
    """Record what a map-cache entry is keyed by (``key.json``), and mark it used now."""
    path = os.path.join(folder, KEY_FILE)
    if os.path.isfile(path):
        touch(folder)
    else:
        write_json(path, {"created": time.time(), "key": key})


def touch(folder: str) -> None:
    try:
        os.utime(os.path.join(folder, KEY_FILE))
    except OSError:
        pass


def _size(folder: str) -> int:
    total = 0
    for dirpath, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def _last_used(path: str) -> float:
    key = os.path.join(path, KEY_FILE)
    if os.path.isfile(key):
        return os.stat(key).st_mtime
    if os.path.isdir(path):
        stamps = [os.stat(os.path.join(d, f)).st_mtime for d, _, fs in os.walk(path) for f in fs]
        return max(stamps, default=os.stat(path).st_mtime)
    return os.stat(path).st_mtime


def entries(root: str) -> list[dict]:
    """Every entry of the cache: each map-cache key, each image-cache file set, each digest file."""
    out = []
    for area in AREAS:
        folder = os.path.join(root, area)
        if not os.path.isdir(folder):
            continue
        names = sorted(os.listdir(folder))
        if area == "images":  # <key>_<N>x<S>.images / .sizes / .filled: one entry per key
            names = sorted({n.rsplit(".", 1)[0] for n in names})
        for name in names:
            paths = [os.path.join(folder, n) for n in os.listdir(folder) if n.rsplit(".", 1)[0] == name] if (
                area == "images") else [os.path.join(folder, name)]
            info = {"area": area, "name": name, "paths": paths,
                    "bytes": sum(_size(p) if os.path.isdir(p) else os.path.getsize(p) for p in paths),
                    "last_used": max(_last_used(p) for p in paths)}
            if area == "maps" and os.path.isfile(os.path.join(paths[0], KEY_FILE)):
                key = (read_json(os.path.join(paths[0], KEY_FILE)) or {}).get("key") or {}
                info["what"] = " ".join(str(v) for v in (
                    (key.get("dataset") or {}).get("name"), (key.get("model") or {}).get("name"),
                    (key.get("method") or {}).get("name"), (key.get("identity") or {}).get("device_type")) if v)
            out.append(info)
    return out


def remove(entry: dict) -> None:
    for path in entry["paths"]:
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.exists(path):
            os.unlink(path)


def parse_age(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``2w`` (or plain seconds) as seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text.lower())
    if not match:
        raise WsolError(f"--older-than {text}: expected a number and a unit (s, m, h, d, w), e.g. 30d")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def parse_size(text: str) -> int:
    """``20G``, ``500M``, ``1.5T`` (or plain bytes) as bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", text.lower())
    if not match:
        raise WsolError(f"--max-size {text}: expected a size such as 20G or 500M")
    return int(float(match.group(1)) * _SIZES[match.group(2)])


def prune(root: str, older_than: float | None = None, max_bytes: int | None = None,
          now: float | None = None) -> list[dict]:
    """Remove the entries unused for ``older_than`` seconds, then the least recently used ones until the cache is
    at most ``max_bytes``; the removed entries."""
    now = time.time() if now is None else now
    items = sorted(entries(root), key=lambda e: e["last_used"])
    removed = [e for e in items if older_than is not None and now - e["last_used"] > older_than]
    kept = [e for e in items if e not in removed]
    if max_bytes is not None:
        total = sum(e["bytes"] for e in kept)
        while kept and total > max_bytes:
            oldest = kept.pop(0)
            total -= oldest["bytes"]
            removed.append(oldest)
    for entry in removed:
        remove(entry)
    return removed


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def _age(seconds: float) -> str:
    return f"{seconds / 86400:.1f} d" if seconds >= 86400 else f"{seconds / 3600:.1f} h"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wsol.cache", description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", help="the cache folder (default: $WSOL_CACHE or ~/.cache/wsol)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="every entry, its size and when it was last used")
    pruning = commands.add_parser("prune", help="remove entries unused for a while, or the oldest beyond a size")
    pruning.add_argument("--older-than", help="e.g. 30d, 12h: remove the entries unused for longer")
    pruning.add_argument("--max-size", help="e.g. 20G: then remove the least recently used down to this size")
    commands.add_parser("clear", help="remove everything in the cache")
    args = parser.parse_args(argv)
    root = cache_root(args.cache_dir)
    try:
        if args.command == "list":
            items = entries(root)
            now = time.time()
            for e in items:
                print(f"{e['area']:8} {e['name'][:32]:32} {_human(e['bytes']):>10}  used {_age(now - e['last_used'])} "
                      f"ago  {e.get('what', '')}".rstrip())
            print(f"{len(items)} entries, {_human(sum(e['bytes'] for e in items))} in {root}")
        elif args.command == "prune":
            if args.older_than is None and args.max_size is None:
                raise WsolError("prune needs --older-than AGE and/or --max-size SIZE")
            older = parse_age(args.older_than) if args.older_than else None
            limit = parse_size(args.max_size) if args.max_size else None
            removed = prune(root, older, limit)
            print(f"removed {len(removed)} entries, {_human(sum(e['bytes'] for e in removed))} from {root}")
        else:
            removed = prune(root, older_than=-1.0)
            print(f"removed {len(removed)} entries, {_human(sum(e['bytes'] for e in removed))} from {root}")
    except WsolError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
