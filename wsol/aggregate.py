"""``python -m wsol.aggregate <dir>``: a paper table from every finished run under a folder (a multirun).

Rows are runs (seeds averaged: mean ± std), columns their metrics; ``--rows``/``--cols`` pivot it
(e.g. methods as rows, models × datasets × metrics as columns). Failed and unfinished jobs are
listed under the table, never fatal.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

from .errors import WsolError
from .io import atomic_write_text
from .report.tables import (
    ID_COLUMNS,
    METRIC_COLUMNS,
    VARYING_COLUMNS,
    format_table,
    metrics_frame,
    pivot,
    summarize_seeds,
)
from .report.writer import collect_runs

__all__ = ["aggregate", "main"]


def _natural(text: str) -> list:
    """Sort key that orders numbers by value: ``features.4`` before ``features.16``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _header(name: str) -> str:
    """A layout name (``method``, ``model``, ``localize.threshold``…) → the frame's column header."""
    return {**ID_COLUMNS, **VARYING_COLUMNS}.get(name, name)


def aggregate(
    root: str,
    out_dir: str | None = None,
    rows: list[str] | None = None,
    cols: list[str] | None = None,
    metrics: list[str] | None = None,
) -> str:
    """Write ``table.{md,tex,csv}`` of all runs under ``root`` into ``out_dir`` (default: root); return the md."""
    runs, failed = collect_runs(root)
    if not runs:
        raise WsolError(f"no finished runs (metrics.json) under {root}")
    order = ("dataset", "model", "layer", "method", "protocol", "backend")
    runs.sort(key=lambda r: tuple(_natural(str(r.get(k) or "")) for k in order))
    column_sets = {tuple(r.get("columns") or ()) for r in runs}
    columns = metrics or (list(column_sets.pop()) if len(column_sets) == 1 else None)
    frame, std = summarize_seeds(metrics_frame(runs, columns))
    if cols:
        metric_headers = [METRIC_COLUMNS[m] for m in metrics] if metrics else None
        frame = pivot(frame, [_header(r) for r in rows or ["method"]], [_header(c) for c in cols], metric_headers)
        std = None
    out_dir = out_dir or root
    protocols = sorted({str(r.get("protocol")) for r in runs})
    caption = f"{runs[0].get('dataset')}, {runs[0].get('images')} images, protocol {', '.join(protocols)}"
    texts = {
        fmt: format_table(frame, fmt, caption=caption if fmt != "csv" else "", std=std)
        for fmt in ("md", "tex", "html", "csv")
    }
    if failed:
        texts["md"] += "\nFailed or unfinished runs:\n" + "".join(f"- {d}: {r}\n" for d, r in failed)
    for fmt, text in texts.items():
        atomic_write_text(os.path.join(out_dir, f"table.{fmt}"), text)
    return texts["md"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m wsol.aggregate", description=__doc__)
    parser.add_argument("root", help="a multirun folder (or any folder holding run folders)")
    parser.add_argument("--out", default=None, help="where to write table.{md,tex,csv} (default: root)")
    parser.add_argument("--rows", default="method", help="comma-separated row keys when pivoting (default: method)")
    parser.add_argument("--cols", default=None, help="comma-separated column keys, e.g. model,dataset (pivot)")
    keys = ", ".join(METRIC_COLUMNS)
    parser.add_argument("--metrics", default=None, help=f"comma-separated metrics.json keys: {keys}")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.root):
        sys.exit(f"error: not a folder: {args.root}")

    def split(text: str | None) -> list[str] | None:
        return [t for t in text.split(",") if t] if text else None

    try:
        print(aggregate(args.root, args.out, split(args.rows), split(args.cols), split(args.metrics)))
    except (ValueError, WsolError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
