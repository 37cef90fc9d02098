"""``python -m wsol.select VAL_SWEEP TEST_SWEEP``: choose each setting on val, report it once on test.

Choe et al. (CVPR 2020) show that WSOL numbers are comparable only when every hyperparameter is chosen on
a held-out, fully annotated split and the chosen setting is reported once on test. Per row group (default:
dataset × method × model) this picks, among the val runs, the setting with the best val score
(``--metric``, default ``maxboxacc_v2``; lower is better for the errors), and writes a paper table of the
chosen settings' test numbers, with the chosen hyperparameters as columns and the val score beside.

A setting is a run's command-line overrides (the values of a sweep) less the split: ``dataset.split`` and,
when val and test are two sweeps, the folders that differ between them (``dataset.metadata_root``,
``dataset.root``, ``dataset.mask_root``, ``dataset.ann_root``; more with ``--ignore``). One sweep holding
both splits (``dataset.split=val,test``, e.g. ``+experiment=val_test``) is split by its runs' configs.
Ties in the val score go to the setting first in the order of its hyperparameter values (numbers by
value, names in natural order: the smaller threshold, the earlier layer), so a choice never depends on
test numbers or on folder order.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import yaml

from .aggregate import natural_key
from .errors import WsolError
from .io import atomic_write_text
from .report.compare import paper_tables
from .report.tables import LOWER_IS_BETTER, METRIC_COLUMNS, SHOWN_OVERRIDES, run_overrides
from .report.writer import collect_runs

__all__ = ["choose", "select", "main"]

SPLIT_KEYS = ("dataset.split",)
FOLDER_KEYS = ("dataset.metadata_root", "dataset.root", "dataset.mask_root", "dataset.ann_root")
GROUP = ("dataset", "method", "model")


def _split_of(run: dict) -> str | None:
    path = os.path.join(run["folder"], "config.yaml")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return ((yaml.safe_load(f) or {}).get("dataset") or {}).get("split")


def _identity(run: dict, ignore: set[str], group: tuple[str, ...]) -> tuple[tuple, tuple]:
    """``(group key, setting)``: the group's values (a summary field or an override), then the remaining
    overrides as sorted ``(key, value)`` pairs; dataset options are never hyperparameters (they join the group)."""
    overrides = {k: v for k, v in run_overrides(run).items() if k not in ignore}
    data = tuple(sorted((k, v) for k, v in overrides.items() if k.startswith("dataset.")))
    key = tuple(str(run.get(g) if run.get(g) is not None else overrides.get(g, "")) for g in group) + data
    setting = tuple(sorted((k, v) for k, v in overrides.items() if k not in group and not k.startswith("dataset")))
    return key, setting


def _value_key(value: str) -> tuple:
    """Numbers by value (``0.125 < 0.25``), other values in natural order (``layer3 < layer4``), numbers first."""
    try:
        return 0, float(value), []
    except ValueError:
        return 1, 0.0, natural_key(value)


def _describe(key: tuple, group: tuple[str, ...]) -> str:
    named = [f"{g}={v}" for g, v in zip(group, key, strict=False)]
    return " ".join(named + [f"{k}={v}" for k, v in key[len(group):]])


def choose(val_runs: list[dict], metric: str, ignore: set[str], group: tuple[str, ...] = GROUP) -> dict:
    """``{group key: (setting, val run)}``: per group, the val run with the best ``metric``; ties to the setting
    first in the order of its values (:func:`_value_key`, keys sorted by name)."""
    sign = -1.0 if METRIC_COLUMNS.get(metric) in LOWER_IS_BETTER else 1.0
    groups: dict[tuple, dict[tuple, dict]] = {}
    for run in val_runs:
        key, setting = _identity(run, ignore, group)
        if setting in groups.setdefault(key, {}):
            raise WsolError(f"two val runs have the same setting ({_describe(key, group)} "
                            f"{' '.join(f'{k}={v}' for k, v in setting) or 'defaults'}): {run['folder']} and "
                            f"{groups[key][setting]['folder']}")
        groups[key][setting] = run
    chosen = {}
    for key, settings in groups.items():
        scored = [(s, r) for s, r in settings.items() if metric in r["metrics"]]
        if not scored:
            raise WsolError(f"no val run of {_describe(key, group)} has {metric}")
        best = max(sign * r["metrics"][metric] for _, r in scored)
        ties = [(s, r) for s, r in scored if sign * r["metrics"][metric] == best]
        chosen[key] = min(ties, key=lambda pair: [_value_key(v) for _, v in pair[0]])
    return chosen


def select(
    val_root: str,
    test_root: str | None = None,
    metric: str = "maxboxacc_v2",
    out_dir: str | None = None,
    ignore: list[str] | None = None,
    group: tuple[str, ...] = GROUP,
    columns: list[str] | None = None,
    ci: str = "pm",
    significance: bool = True,
) -> str:
    """Write ``selected.{md,tex,html,csv}`` and ``selected.json`` into ``out_dir`` (default: the test sweep);
    return the Markdown table."""
    if metric not in METRIC_COLUMNS:
        raise WsolError(f"unknown metric {metric}; valid: {', '.join(METRIC_COLUMNS)}")
    ignored = {*SPLIT_KEYS, *(ignore or [])}
    if test_root is None:  # one sweep over the split
        runs, _ = collect_runs(val_root)
        splits = {id(r): _split_of(r) for r in runs}
        val_runs = [r for r in runs if splits[id(r)] == "val"]
        test_runs = [r for r in runs if splits[id(r)] == "test"]
        where = f"{val_root} (dataset.split=val / test)"
    else:
        ignored |= set(FOLDER_KEYS)
        val_runs, test_runs = collect_runs(val_root)[0], collect_runs(test_root)[0]
        where = f"{val_root} / {test_root}"
    if not val_runs or not test_runs:
        raise WsolError(f"need finished val and test runs; found {len(val_runs)} val and {len(test_runs)} test in "
                        f"{where}")
    chosen = choose(val_runs, metric, ignored, group)
    tests = {_identity(r, ignored, group): r for r in test_runs}
    missing = [f"{_describe(key, group)} {' '.join(f'{k}={v}' for k, v in setting)}".strip()
               for key, (setting, _) in chosen.items() if (key, setting) not in tests]
    if missing:
        raise WsolError(f"{len(missing)} chosen setting(s) have no test run: {'; '.join(missing)}")
    order = sorted(chosen, key=lambda key: [natural_key(str(v)) for v in key])
    hyper = sorted({k for key in order for k, _ in chosen[key][0] if k not in SHOWN_OVERRIDES}, key=natural_key)
    rows, extra, choices = [], {k: [] for k in hyper}, []
    val_header = f"Val {METRIC_COLUMNS[metric]}"
    extra[val_header] = []
    for key in order:
        setting, val_run = chosen[key]
        test_run = tests[(key, setting)]
        rows.append({**test_run, "overrides": []})
        values = dict(setting)
        for k in hyper:
            extra[k].append(values.get(k, ""))
        extra[val_header].append(f"{val_run['metrics'][metric]:.2f}")
        choices.append({"group": dict(zip(group, key, strict=False)), "setting": values, "metric": metric,
                        "val_score": val_run["metrics"][metric], "val_run": val_run["folder"],
                        "test_run": test_run["folder"]})
    caption = (f"{rows[0].get('dataset')} test, {rows[0].get('images')} images; each row's setting chosen on val "
               f"by {METRIC_COLUMNS[metric]} (of {len(val_runs)} val runs)")
    texts = paper_tables(rows, columns, caption, ci_style=ci, significance=significance, extra=extra)
    out_dir = out_dir or test_root or val_root
    for fmt, text in texts.items():
        atomic_write_text(os.path.join(out_dir, f"selected.{fmt}"), text)
    atomic_write_text(os.path.join(out_dir, "selected.json"), json.dumps(choices, indent=2) + "\n")
    return texts["md"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m wsol.select", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("val", help="the val sweep (or one sweep over dataset.split=val,test)")
    parser.add_argument("test", nargs="?", default=None, help="the test sweep")
    parser.add_argument("--metric", default="maxboxacc_v2", help="the val score to maximise (a metrics.json key)")
    parser.add_argument("--group", default=",".join(GROUP), help="comma-separated row keys (default: %(default)s)")
    parser.add_argument("--ignore", default="", help="comma-separated override keys that differ between the splits")
    parser.add_argument("--metrics", default=None, help="comma-separated metrics.json keys of the table")
    parser.add_argument("--out", default=None, help="where to write selected.* (default: the test sweep)")
    parser.add_argument("--ci", default="pm", choices=("pm", "interval", "none"))
    parser.add_argument("--no-significance", dest="significance", action="store_false")
    args = parser.parse_args(argv)
    for folder in filter(None, (args.val, args.test)):
        if not os.path.isdir(folder):
            sys.exit(f"error: not a folder: {folder}")
    try:
        print(select(args.val, args.test, args.metric, args.out, [k for k in args.ignore.split(",") if k],
                     tuple(k for k in args.group.split(",") if k),
                     [k for k in args.metrics.split(",") if k] if args.metrics else None, args.ci, args.significance))
    except (ValueError, WsolError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
