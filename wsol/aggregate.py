"""``python -m wsol.aggregate <dir>``: one table from every finished run under a folder (a multirun)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from .report import atomic_write_text, format_table, metrics_frame

__all__ = ["collect_runs", "aggregate", "main"]


def collect_runs(root: str) -> tuple[list[dict], list[tuple[str, str]]]:
    """Summaries of finished runs (``metrics.json``) and ``(folder, reason)`` of failed or unfinished ones."""
    done, failed = [], []
    for folder, dirs, files in sorted(os.walk(root)):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if "metrics.json" in files:
            with open(os.path.join(folder, "metrics.json")) as f:
                done.append(json.load(f))
        elif "error.txt" in files:
            with open(os.path.join(folder, "error.txt")) as f:
                failed.append((os.path.relpath(folder, root), f.read().strip()))
        elif os.path.isdir(os.path.join(folder, ".hydra")):
            failed.append((os.path.relpath(folder, root), "unfinished (no metrics.json)"))
    return done, failed


def aggregate(root: str, out_dir: str | None = None) -> str:
    """Write ``table.{md,tex,csv}`` of all runs under ``root`` into ``out_dir`` (default: root); return the md."""
    runs, failed = collect_runs(root)
    if not runs:
        raise SystemExit(f"error: no finished runs (metrics.json) under {root}")
    order = ("dataset", "model", "layer", "method", "protocol", "backend")
    runs.sort(key=lambda r: tuple(str(r.get(k) or "") for k in order))
    column_sets = {tuple(r.get("columns") or ()) for r in runs}
    frame = metrics_frame(runs, list(column_sets.pop()) if len(column_sets) == 1 else None)
    out_dir = out_dir or root
    protocols = sorted({str(r.get("protocol")) for r in runs})
    caption = f"{runs[0].get('dataset')}, {runs[0].get('images')} images, protocol {', '.join(protocols)}"
    texts = {fmt: format_table(frame, fmt, caption=caption if fmt != "csv" else "") for fmt in ("md", "tex", "csv")}
    if failed:
        texts["md"] += "\nFailed or unfinished runs:\n" + "".join(f"- {d}: {r}\n" for d, r in failed)
    for fmt, text in texts.items():
        atomic_write_text(os.path.join(out_dir, f"table.{fmt}"), text)
    return texts["md"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m wsol.aggregate", description=__doc__)
    parser.add_argument("root", help="a multirun folder (or any folder holding run folders)")
    parser.add_argument("--out", default=None, help="where to write table.{md,tex,csv} (default: root)")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.root):
        sys.exit(f"error: not a folder: {args.root}")
    print(aggregate(args.root, args.out))


if __name__ == "__main__":
    main()
