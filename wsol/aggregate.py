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
from .report.compare import paper_tables
from .report.tables import ID_COLUMNS, METRIC_COLUMNS, VARYING_COLUMNS
from .report.writer import collect_runs

__all__ = ["aggregate", "main"]


def natural_key(text: str) -> list:
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
    ci: str = "pm",
    significance: bool = True,
) -> str:
    """Write ``table.{md,tex,html,csv}`` of all runs under ``root`` into ``out_dir`` (default: root); return the
    md. ``ci``: pm, interval or none; ``significance``: mark rows tied with their column's best."""
    runs, failed = collect_runs(root)
    if not runs:
        raise WsolError(f"no finished runs (metrics.json) under {root}")
    order = ("dataset", "model", "layer", "method", "protocol", "backend")
    runs.sort(key=lambda r: tuple(natural_key(str(r.get(k) or "")) for k in order))
    column_sets = {tuple(r.get("columns") or ()) for r in runs}
    columns = metrics or (list(column_sets.pop()) if len(column_sets) == 1 else None)
    protocols = sorted({str(r.get("protocol")) for r in runs})
    caption = f"{runs[0].get('dataset')}, {runs[0].get('images')} images, protocol {', '.join(protocols)}"
    texts = paper_tables(
        runs, columns, caption, [_header(r) for r in rows or ["method"]], [_header(c) for c in cols or []],
        ci_style=ci, significance=significance,
    )
    if failed:
        texts["md"] += "\nFailed or unfinished runs:\n" + "".join(f"- {d}: {r}\n" for d, r in failed)
    out_dir = out_dir or root
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
    parser.add_argument("--ci", default="pm", choices=("pm", "interval", "none"),
                        help="bootstrap intervals as value ± half-width (pm), value [lo, hi] (interval), or none")
    parser.add_argument("--no-significance", dest="significance", action="store_false",
                        help="do not mark rows not significantly different from their column's best")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.root):
        sys.exit(f"error: not a folder: {args.root}")

    def split(text: str | None) -> list[str] | None:
        return [t for t in text.split(",") if t] if text else None

    try:
        print(aggregate(args.root, args.out, split(args.rows), split(args.cols), split(args.metrics), args.ci,
                        args.significance))
    except (ValueError, WsolError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
