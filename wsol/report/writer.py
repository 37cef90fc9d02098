"""Run folder outputs, each written atomically (temporary file + rename)."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile

__all__ = ["atomic_write_bytes", "atomic_write_text", "write_run"]


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
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


def _csv(rows: list[dict]) -> str:
    if not rows:
        return ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    for row in rows:
        writer.writerow({k: " ".join(map(str, v)) if isinstance(v, list) else v for k, v in row.items()})
    return buffer.getvalue()


def write_run(run_dir: str, *, config_yaml: str, summary: dict, images: list[dict], curves: list[dict],
              tables: dict[str, str]) -> None:
    """Write ``config.yaml``, ``per_image.csv``, ``curves.csv``, ``table.{md,tex,csv}``, then ``metrics.json``.

    ``metrics.json`` is written last, so its presence marks a finished run.
    """
    atomic_write_text(os.path.join(run_dir, "config.yaml"), config_yaml)
    atomic_write_text(os.path.join(run_dir, "per_image.csv"), _csv(images))
    atomic_write_text(os.path.join(run_dir, "curves.csv"), _csv(curves))
    for fmt, text in tables.items():
        atomic_write_text(os.path.join(run_dir, f"table.{fmt}"), text)
    atomic_write_text(os.path.join(run_dir, "metrics.json"), json.dumps(summary, indent=2, sort_keys=False) + "\n")
