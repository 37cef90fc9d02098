"""Intervals and paired comparisons of runs, and the paper tables that show them.

A finished run keeps each metric over its bootstrap resamples in ``bootstrap.npz`` and their 95 %
percentile intervals in ``metrics.json`` (``ci``). Two runs evaluated on the same images with the same
resample count and seed drew the same resamples (``bootstrap.images_key``), so the difference of their
resampled values is a paired bootstrap of the difference: a row is *tied* with its column's best when the
percentile interval of that difference contains 0 (:func:`wsol.metrics.bootstrap.tied_with`).
"""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd

from ..io import read_arrays
from ..metrics.bootstrap import LEVEL, tied_with
from .tables import LOWER_IS_BETTER, METRIC_COLUMNS, TIED_MARK, format_table, metrics_frame, pivot, summarize_seeds
from .writer import SAMPLES_FILE

__all__ = ["interval_frames", "tied_frame", "paper_tables", "legend"]

FORMATS = ("md", "tex", "html", "csv")


def interval_frames(runs: list[dict], columns: list[str], like: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(lo, hi)`` frames shaped like ``like`` (:func:`metrics_frame` of the same runs): each run's interval."""

    def bound(side: int):
        return lambda run, key: ((run.get("ci") or {}).get(key) or (math.nan, math.nan))[side]

    return tuple(metrics_frame(runs, columns, bound(side)).reindex(columns=like.columns) for side in (0, 1))


def _pairing(run: dict) -> tuple | None:
    """What two runs must share for a paired comparison: images, resample count and seed."""
    boot = run.get("bootstrap") or {}
    return (boot["images_key"], boot["resamples"], boot["seed"]) if "images_key" in boot else None


def _samples(run: dict) -> dict[str, np.ndarray]:
    path = os.path.join(run.get("folder") or "", SAMPLES_FILE)
    return read_arrays(path) if run.get("folder") and os.path.isfile(path) else {}


def tied_frame(runs: list[dict], columns: list[str], like: pd.DataFrame, groups: list[str]) -> pd.DataFrame:
    """Per metric column, 1 where a run is not significantly different from the best run of its group (rows
    with equal ``groups`` columns: the dataset, a pivot's column keys), 0 where it is, NaN for the best
    itself and where no paired comparison exists (different images, no resamples)."""
    out = metrics_frame(runs, columns, lambda run, key: math.nan).reindex(columns=like.columns)
    samples = [_samples(run) for run in runs]
    keys = [c for c in groups if c in like.columns]
    indices = like.groupby(keys, sort=False, dropna=False).indices.values() if keys else [np.arange(len(like))]
    for key in columns:
        header = METRIC_COLUMNS[key]
        if header not in like.columns:
            continue
        sign = -1.0 if header in LOWER_IS_BETTER else 1.0
        for rows in indices:
            values = sign * like[header].to_numpy(dtype=float)[rows]
            if not np.isfinite(values).any():
                continue
            best = rows[int(np.nanargmax(values))]
            reference = samples[best].get(key)
            for i in rows:
                other = samples[i].get(key)
                if i == best or reference is None or other is None or like[header].iloc[i] == like[header].iloc[best]:
                    continue
                if _pairing(runs[i]) is None or _pairing(runs[i]) != _pairing(runs[best]):
                    continue
                out.loc[out.index[i], header] = float(tied_with(reference, other))
    return out


def legend(runs: list[dict], ci_style: str, marked: bool) -> str:
    """The caption's sentence on intervals and marks."""
    resamples = sorted({(r.get("bootstrap") or {}).get("resamples") for r in runs if r.get("ci")})
    if not resamples or ci_style == "none":
        return ""
    count = "/".join(str(r) for r in resamples)
    shown = "± half-width of" if ci_style == "pm" else "[lo, hi]:"
    text = f"; {shown} the {LEVEL:g} % percentile bootstrap interval over images ({count} resamples)"
    if marked:
        text += f"; {TIED_MARK} not significantly different from the column's best (paired bootstrap, {LEVEL:g} %)"
    return text


def paper_tables(
    runs: list[dict],
    columns: list[str] | None,
    caption: str,
    rows: list[str] | None = None,
    cols: list[str] | None = None,
    ci_style: str = "pm",
    significance: bool = True,
    extra: dict[str, list[str]] | None = None,
) -> dict[str, str]:
    """``{fmt: text}`` of the runs' table (seeds averaged; pivoted to ``rows`` × ``cols`` headers when ``cols``
    is given), with intervals and significance marks where the runs have them and no seed averaging hides
    which run a row is. ``extra``: text columns (one value per run) placed before the metrics."""
    keys = list(columns or [k for k in METRIC_COLUMNS if not k.endswith("_err")])
    raw = metrics_frame(runs, keys)
    first_metric = next((i for i, c in enumerate(raw.columns) if c in METRIC_COLUMNS.values()), len(raw.columns))
    for offset, (header, values) in enumerate((extra or {}).items()):
        raw.insert(first_metric + offset, header, [str(v) for v in values])
    keys = [k for k in keys if METRIC_COLUMNS[k] in raw.columns]
    frame, std = summarize_seeds(raw)
    ci = tied = None
    if std is None:  # one run per row
        ci = interval_frames(runs, keys, raw) if ci_style != "none" else None
        if significance and len(runs) > 1:
            tied = tied_frame(runs, keys, raw, ["Dataset", *(cols or [])])
    if cols:
        metric_headers = [METRIC_COLUMNS[k] for k in keys]
        frame = pivot(raw if std is None else frame, rows or ["Method"], cols, metric_headers)
        ci = tuple(pivot(f, rows or ["Method"], cols, metric_headers, like=frame) for f in ci) if ci else None
        tied = pivot(tied, rows or ["Method"], cols, metric_headers, like=frame) if tied is not None else None
        std = None
    marked = tied is not None and bool((tied.select_dtypes("number") == 1).any().any())
    caption += legend(runs, ci_style, marked) if ci is not None else ""
    return {
        fmt: format_table(frame, fmt, caption=caption if fmt != "csv" else "", std=std, ci=ci, ci_style=ci_style,
                          tied=tied)
        for fmt in FORMATS
    }
