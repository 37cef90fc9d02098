"""Paper-style tables (Markdown, LaTeX booktabs, CSV) from runs' metrics."""

from __future__ import annotations

import io
import math

import pandas as pd

__all__ = ["METRIC_COLUMNS", "DEFAULT_COLUMNS", "metrics_frame", "format_table"]

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
    "pxap": "PxAP",
    "pointing_game": "PG",
    "energy_pointing_game": "EPG",
}
# the columns shown when a protocol names none: everything but the loc errors (1 - loc)
DEFAULT_COLUMNS = [k for k in METRIC_COLUMNS if not k.endswith("_err")]
ID_COLUMNS = {"method": "Method", "model": "Model", "layer": "Layer", "dataset": "Dataset"}
# shown only when the runs of a table differ in them
VARYING_COLUMNS = {"protocol": "Protocol", "backend": "Backend"}


def metrics_frame(runs: list[dict], columns: list[str] | None = None) -> pd.DataFrame:
    """One row per run from dicts with keys ``method, model, layer, dataset, metrics``.

    ``columns`` are metrics.json keys (default :data:`DEFAULT_COLUMNS`); metrics no run has are dropped.
    """
    columns = list(columns or DEFAULT_COLUMNS)
    unknown = [c for c in columns if c not in METRIC_COLUMNS]
    if unknown:
        raise ValueError(f"unknown table columns {unknown}; valid: {', '.join(METRIC_COLUMNS)}")
    ids = dict(ID_COLUMNS)
    ids.update({k: v for k, v in VARYING_COLUMNS.items() if len({str(r.get(k)) for r in runs}) > 1})
    rows = []
    for run in runs:
        row = {header: run.get(key) or "" for key, header in ids.items()}
        row.update({METRIC_COLUMNS[key]: run["metrics"].get(key, math.nan) for key in columns})
        rows.append(row)
    frame = pd.DataFrame(rows)
    return frame.dropna(axis=1, how="all")


def _cell(value: object, digits: int) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def format_table(frame: pd.DataFrame, fmt: str, digits: int = 2, caption: str = "") -> str:
    """Render ``frame`` as ``md``, ``tex`` (booktabs) or ``csv``; numbers with ``digits`` decimals."""
    if fmt == "csv":
        buffer = io.StringIO()
        frame.to_csv(buffer, index=False, float_format=f"%.{digits + 2}f")
        return buffer.getvalue()
    cells = [[_cell(v, digits) for v in row] for row in frame.itertuples(index=False)]
    headers = list(frame.columns)
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) for c in headers]
    if fmt == "md":
        align = ["---:" if n else ":---" for n in numeric]
        lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
        lines += ["| " + " | ".join(r) + " |" for r in cells]
        return ("" if not caption else caption + "\n\n") + "\n".join(lines) + "\n"
    if fmt == "tex":
        def esc(s: str) -> str:
            return s.replace("_", r"\_").replace("%", r"\%").replace("&", r"\&")

        spec = "".join("r" if n else "l" for n in numeric)
        lines = [r"\begin{table}[t]", r"\centering"]
        if caption:
            lines.append(r"\caption{" + esc(caption) + "}")
        lines += [r"\begin{tabular}{" + spec + "}", r"\toprule", " & ".join(map(esc, headers)) + r" \\", r"\midrule"]
        lines += [" & ".join(esc(c) for c in r) + r" \\" for r in cells]
        lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
        return "\n".join(lines) + "\n"
    raise ValueError(f"unknown table format {fmt!r} (md, tex, csv)")
