"""The run folder: tables, per-image rows, curves, and ``metrics.json`` last (each file atomically)."""

from __future__ import annotations

import csv
import io
import json
import os

from ..io import atomic_write_text, write_arrays

__all__ = ["SAMPLES_FILE", "collect_runs", "write_run"]

SAMPLES_FILE = "bootstrap.npz"  # each metric over the bootstrap resamples


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
              tables: dict[str, str], samples: dict | None = None) -> None:
    """Write ``config.yaml``, ``per_image.csv``, ``curves.csv``, ``table.{md,tex,html,csv}``, ``bootstrap.npz``
    (each metric over the bootstrap resamples, for paired comparisons), then ``metrics.json``.

    ``metrics.json`` is written last, so its presence marks a finished run.
    """
    atomic_write_text(os.path.join(run_dir, "config.yaml"), config_yaml)
    atomic_write_text(os.path.join(run_dir, "per_image.csv"), _csv(images))
    atomic_write_text(os.path.join(run_dir, "curves.csv"), _csv(curves))
    for fmt, text in tables.items():
        atomic_write_text(os.path.join(run_dir, f"table.{fmt}"), text)
    if samples:
        write_arrays(os.path.join(run_dir, SAMPLES_FILE), **samples)
    elif os.path.exists(os.path.join(run_dir, SAMPLES_FILE)):
        os.remove(os.path.join(run_dir, SAMPLES_FILE))  # a stale one from an earlier configuration
    atomic_write_text(os.path.join(run_dir, "metrics.json"), json.dumps(summary, indent=2, sort_keys=False) + "\n")


def collect_runs(root: str) -> tuple[list[dict], list[tuple[str, str]]]:
    """Summaries of finished runs (``metrics.json``, with its ``folder`` added) and ``(folder, reason)`` of
    failed or unfinished ones."""
    done, failed = [], []
    for folder, dirs, files in sorted(os.walk(root)):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "partials" and d != "figures")
        if "metrics.json" in files:
            with open(os.path.join(folder, "metrics.json")) as f:
                done.append({**json.load(f), "folder": folder})
        elif "error.txt" in files:
            with open(os.path.join(folder, "error.txt")) as f:
                failed.append((os.path.relpath(folder, root), f.read().strip()))
        elif os.path.isdir(os.path.join(folder, ".hydra")):
            failed.append((os.path.relpath(folder, root), "unfinished (no metrics.json)"))
    return done, failed
