"""Paper-style tables (Markdown, LaTeX booktabs, HTML, CSV) from runs' metrics.

Runs that differ only in their seed are one row: mean ± std (sample std over the seeds). In each
metric column the best value is bold and the second best underlined (lower is better for errors).
A run's bootstrap interval is shown as ``value ± half-width`` or ``value [lo, hi]``, and rows not
significantly different from their column's best carry ``†`` (:mod:`wsol.report.compare` computes both).
"""

from __future__ import annotations

import html
import io
import math

import numpy as np
import pandas as pd

__all__ = ["METRIC_COLUMNS", "DEFAULT_COLUMNS", "run_overrides", "metrics_frame", "summarize_seeds", "pivot",
           "format_table", "TIED_MARK"]

# metrics.json key → column header, in table order
METRIC_COLUMNS = {
    "top1_cls": "Top-1 Cls",
    "top5_cls": "Top-5 Cls",
    "top1_loc": "Top-1 Loc",
    "top5_loc": "Top-5 Loc",
    "gt_known_loc": "GT-known Loc",
    "maxboxacc": "MaxBoxAcc",
    "maxboxacc_v2": "MaxBoxAccV2",
    "maxboxacc_v2_iou30": "IoU30",
    "maxboxacc_v2_iou50": "IoU50",
    "maxboxacc_v2_iou70": "IoU70",
    "top1_loc_err": "Top-1 Loc Err",
    "top5_loc_err": "Top-5 Loc Err",
    "top1_maxboxacc": "Top-1 MaxBoxAcc",
    "top5_maxboxacc": "Top-5 MaxBoxAcc",
    "top1_maxboxacc_v2": "Top-1 MaxBoxAccV2",
    "top5_maxboxacc_v2": "Top-5 MaxBoxAccV2",
    "pxap": "PxAP",
    "piou_max": "pIoU",
    "piou_mean": "mean pIoU",
    "pointing_game": "PG",
    "energy_pointing_game": "EPG",
    "average_drop": "Avg Drop",
    "increase_in_confidence": "Inc Conf",
    "deletion": "Deletion",
    "insertion": "Insertion",
    "road": "ROAD",
    "average_gain": "Avg Gain",
    "complexity": "Complexity",
    "coherency": "Coherency",
    "adcc": "ADCC",
    "arcc": "ARCC",
    # eval.extra=[loc_errors]: the top-1 loc failures' kinds, % of the failures (a description: no best)
    "loc_errors_wrong_class": "Fail: Class",
    "loc_errors_multi_instance": "Fail: Multi",
    "loc_errors_part": "Fail: Part",
    "loc_errors_too_large": "Fail: Large",
    "loc_errors_wrong_location": "Fail: Location",
}
TIED_MARK = "†"  # not significantly different from the column's best (paired bootstrap)
LOWER_IS_BETTER = {METRIC_COLUMNS[k] for k in ("top1_loc_err", "top5_loc_err", "average_drop", "deletion",
                                                "complexity")}
DESCRIPTIVE = {v for k, v in METRIC_COLUMNS.items() if k.startswith("loc_errors_")}  # columns never marked best
# the columns shown when a protocol names none: everything but the loc errors (100 - loc)
DEFAULT_COLUMNS = [k for k in METRIC_COLUMNS if not k.endswith("_err")]
ID_COLUMNS = {"method": "Method", "model": "Model", "layer": "Layer", "dataset": "Dataset"}
# shown only when the runs of a table differ in them
VARYING_COLUMNS = {"protocol": "Protocol", "backend": "Backend"}
# overrides already shown by a column above, or averaged over (seeds)
SHOWN_OVERRIDES = {"method", "model", "model.layer", "model.architecture", "model.large_feature_map", "dataset",
                    "protocol", "localize.backend"}


def run_overrides(run: dict) -> dict[str, str]:
    """A run's command-line ``key=value`` overrides (``+``/``~`` prefixes dropped, Hydra's own keys left out)."""
    pairs = (o.lstrip("+~").split("=", 1) for o in run.get("overrides") or [] if "=" in o)
    return {k: v for k, v in pairs if not k.startswith("hydra")}


def _override_values(run: dict) -> dict[str, str]:
    """The overrides a table may show as columns: not those shown otherwise, not seeds (averaged over)."""
    return {k: v for k, v in run_overrides(run).items() if k not in SHOWN_OVERRIDES and not k.endswith("seed")}


def metrics_frame(runs: list[dict], columns: list[str] | None = None, value=None) -> pd.DataFrame:
    """One row per run from dicts with keys ``method, model, layer, dataset, metrics`` (and ``overrides``).

    ``columns`` are metrics.json keys (default :data:`DEFAULT_COLUMNS`); metrics no run has are dropped.
    Protocol, backend and any other override (``localize.threshold``…) become columns when runs differ
    in them; seeds never do. ``value(run, key)`` reads a cell (default: ``run["metrics"][key]``, NaN if absent).
    """
    value = value or (lambda run, key: run["metrics"].get(key, math.nan))
    columns = list(columns or DEFAULT_COLUMNS)
    unknown = [c for c in columns if c not in METRIC_COLUMNS]
    if unknown:
        raise ValueError(f"unknown table columns {unknown}; valid: {', '.join(METRIC_COLUMNS)}")
    ids = dict(ID_COLUMNS)
    ids.update({k: v for k, v in VARYING_COLUMNS.items() if len({str(r.get(k)) for r in runs}) > 1})
    overrides = [_override_values(r) for r in runs]
    keys = sorted({k for o in overrides for k in o})
    varying = [k for k in keys if len({o.get(k) for o in overrides}) > 1]
    rows = []
    for run, extra in zip(runs, overrides, strict=True):
        row = {header: run.get(key) or "" for key, header in ids.items()}
        row.update({k: extra.get(k, "") for k in varying})
        row.update({METRIC_COLUMNS[key]: value(run, key) for key in columns})
        rows.append(row)
    frame = pd.DataFrame(rows)
    return frame.dropna(axis=1, how="all")


def _id_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]


def summarize_seeds(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Collapse rows with equal identity columns: ``(mean frame, std frame or None if no row repeats)``."""
    ids = _id_columns(frame)
    if not ids or not frame.duplicated(subset=ids).any():
        return frame.reset_index(drop=True), None
    grouped = frame.groupby(ids, sort=False, dropna=False)
    mean = grouped.mean(numeric_only=True).reset_index()
    std = grouped.std(numeric_only=True, ddof=1).reset_index()
    counts = grouped.size().reset_index(name="Seeds")
    return mean.assign(Seeds=counts["Seeds"].astype(str)), std


def pivot(
    frame: pd.DataFrame, rows: list[str], cols: list[str], metrics: list[str] | None = None,
    like: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Rows × (column groups × metrics), e.g. rows=[Method], cols=[Model, Dataset]: one cell per metric.

    ``like``: a pivot of the values this frame belongs to (intervals, marks): the result takes its rows and
    columns, cells missing here NaN."""
    metrics = metrics or [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
    table = frame.pivot_table(index=rows, columns=cols, values=metrics, aggfunc="first", sort=False,
                              dropna=like is None)
    groups = list(dict.fromkeys(col[1:] for col in table.columns))  # column groups in order of appearance
    ordered = [(m, *g) for g in groups for m in metrics if (m, *g) in table.columns]
    table = table[ordered]
    table.columns = [" · ".join([*map(str, col[1:]), col[0]]) for col in ordered]
    if like is not None:
        keys = pd.MultiIndex.from_frame(like[rows]) if len(rows) > 1 else pd.Index(like[rows[0]])
        table = table.reindex(index=keys, columns=[c for c in like.columns if c not in rows])
    return table.reset_index()


def _html_cell(text: str, numeric: bool) -> str:
    return f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>"


def _ranks(values: pd.Series, lower_is_better: bool, digits: int) -> dict[int, int]:
    """Row index → 1 (best) or 2 (second best), compared as displayed (``digits``); ties share a rank."""
    finite = values[np.isfinite(values.astype(float))].round(digits)
    distinct = set(finite)
    if len(distinct) < 2:
        return {}  # nothing to tell apart
    order = sorted(distinct, reverse=not lower_is_better)[:2]
    return {i: order.index(v) + 1 for i, v in finite.items() if v in order}


def format_table(
    frame: pd.DataFrame,
    fmt: str,
    digits: int = 2,
    caption: str = "",
    std: pd.DataFrame | None = None,
    highlight: bool = True,
    ci: tuple[pd.DataFrame, pd.DataFrame] | None = None,
    ci_style: str = "pm",
    tied: pd.DataFrame | None = None,
) -> str:
    """Render ``frame`` as ``md``, ``tex`` (booktabs), ``html`` or ``csv``.

    Numbers get ``digits`` decimals, ``± std`` where ``std`` is given; with ``highlight`` and more than
    one row, each metric column's best value is bold and the second underlined. ``ci = (lo, hi)`` frames
    shaped like ``frame`` add each cell's interval as ``± half-width`` (``ci_style="pm"``) or ``[lo, hi]``
    (``"interval"``); ``tied`` (1 where a row is not significantly different from its column's best) adds
    :data:`TIED_MARK`. CSV: plain numbers, with ``<column> std``, ``ci_lo``, ``ci_hi`` and ``tied`` columns.
    """
    headers = list(frame.columns)
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) for c in headers]
    ci = ci if ci_style != "none" else None
    if fmt == "csv":
        out = frame.copy()
        for c, is_num in zip(headers, numeric, strict=True):
            if not is_num:
                continue
            if std is not None and c in std:
                out[f"{c} std"] = std[c].to_numpy()
            if ci is not None and c in ci[0]:
                out[f"{c} ci_lo"], out[f"{c} ci_hi"] = ci[0][c].to_numpy(), ci[1][c].to_numpy()
            if tied is not None and c in tied:
                out[f"{c} tied"] = pd.array(tied[c].to_numpy(), dtype="Int64")  # 1, 0 or empty
        buffer = io.StringIO()
        out.to_csv(buffer, index=False, float_format=f"%.{digits + 2}f")
        return buffer.getvalue()
    marks = {
        "md": ("**{}**", "<u>{}</u>"),
        "tex": (r"\textbf{{{}}}", r"\underline{{{}}}"),
        "html": ("<b>{}</b>", "<u>{}</u>"),
    }
    if fmt not in marks:
        raise ValueError(f"unknown table format {fmt!r} (md, tex, html, csv)")
    bold, under = marks[fmt]
    cells = [[None] * len(headers) for _ in range(len(frame))]
    for j, (c, is_num) in enumerate(zip(headers, numeric, strict=True)):
        highlighted = is_num and highlight and len(frame) > 1 and c not in DESCRIPTIVE
        ranks = _ranks(frame[c], c.endswith(tuple(LOWER_IS_BETTER)), digits) if highlighted else {}
        for i, v in enumerate(frame[c]):
            if not is_num:
                cells[i][j] = html.escape(str(v)) if fmt == "html" else str(v)
                continue
            if v is None or not np.isfinite(v):
                cells[i][j] = "–"
                continue
            text = f"{v:.{digits}f}"
            pm = r" $\pm$ " if fmt == "tex" else " ± "
            if std is not None and c in std and np.isfinite(std[c].iloc[i]):
                text += pm + f"{std[c].iloc[i]:.{digits}f}"
            elif ci is not None and c in ci[0] and np.isfinite(ci[0][c].iloc[i]) and np.isfinite(ci[1][c].iloc[i]):
                lo, hi = ci[0][c].iloc[i], ci[1][c].iloc[i]
                half = f"{(hi - lo) / 2:.{digits}f}"
                text += pm + half if ci_style == "pm" else f" [{lo:.{digits}f}, {hi:.{digits}f}]"
            rank = ranks.get(frame.index[i])
            if tied is not None and c in tied and tied[c].iloc[i] == 1 and rank != 1:  # bold: the best as shown
                text += r"$^\dagger$" if fmt == "tex" else TIED_MARK
            cells[i][j] = bold.format(text) if rank == 1 else under.format(text) if rank == 2 else text
    if fmt == "md":
        align = ["---:" if n else ":---" for n in numeric]
        lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
        lines += ["| " + " | ".join(r) + " |" for r in cells]
        return ("" if not caption else caption + "\n\n") + "\n".join(lines) + "\n"
    if fmt == "html":
        head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
        body = "".join(
            "<tr>" + "".join(_html_cell(c, n) for c, n in zip(r, numeric, strict=True)) + "</tr>\n"
            for r in cells
        )
        title = f"<caption>{html.escape(caption)}</caption>" if caption else ""
        return f'<table class="metrics">{title}<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody></table>\n'

    def esc(s: str) -> str:
        return s.replace("_", r"\_").replace("%", r"\%").replace("&", r"\&").replace("·", r"$\cdot$")

    spec = "".join("r" if n else "l" for n in numeric)
    lines = [r"\begin{table}[t]", r"\centering"]
    if caption:
        lines.append(r"\caption{" + esc(caption) + "}")
    lines += [r"\begin{tabular}{" + spec + "}", r"\toprule", " & ".join(map(esc, headers)) + r" \\", r"\midrule"]
    lines += [" & ".join(c if n else esc(c) for c, n in zip(r, numeric, strict=True)) + r" \\" for r in cells]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"
