"""Figures and HTML reports of a run folder and of a sweep folder (``report=true``).

A run's report: its table, the BoxAcc-vs-threshold curves, overlays of a fixed sample of images
(evenly spaced over the evaluated set, the same in every run of a sweep) and of its best and worst
localized images (IoU of the largest box at the chosen threshold). A sweep's report: its table,
every run's curves in one figure per IoU δ, and a runs × images grid of the sample's overlays
(methods × images, layers × images, … whatever the sweep varies), with links to each run's report.
"""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import torch
from PIL import Image

from ..data import build_dataset, collate
from ..errors import WsolError
from ..io import atomic_write_bytes, atomic_write_text
from ..maps import eval_maps
from ..scoring import FileScorer, MapCache
from .figures import curves_figure, image_grid, loc_errors_figure, overlay, png_bytes, safe_name
from .html import figure, page, section
from .writer import collect_runs

__all__ = ["select_images", "write_run_report", "write_sweep_report", "run_labels"]

FIGURES = "figures"
SHOWN = "shown.json"  # per run: the overlays shown, {"sample" | "best" | "worst": [[id, file], ...]}


def _read_csv(path: str) -> list[dict]:
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def select_images(rows: list[dict], num_images: int, extremes: int) -> dict[str, list[str]]:
    """Ids of the ``sample`` (evenly spaced over ``rows``), and the ``best`` / ``worst`` by ``iou_largest``."""
    ids = [r["id"] for r in rows]
    picks = np.unique(np.linspace(0, len(ids) - 1, min(num_images, len(ids))).round().astype(int)) if ids else []
    chosen = {"sample": [ids[i] for i in picks]}
    scored = [
        (float(r["iou_largest"]), k, r["id"]) for k, r in enumerate(rows) if r.get("iou_largest") not in (None, "")
    ]
    if scored and extremes > 0:
        chosen["best"] = [i for _, _, i in sorted(scored, key=lambda t: (-t[0], t[1]))[:extremes]]
        chosen["worst"] = [i for _, _, i in sorted(scored)[:extremes]]
    return chosen


def _caption(row: dict) -> str:
    iou = row.get("iou_largest")
    return f"{row['id']} · IoU {100 * float(iou):.1f}" if iou not in (None, "") else row["id"]


def _samples(config: dict, summary: dict, ids: list[str], run_dir: str) -> dict[str, tuple]:
    """For figures: ``id → (image uint8 [S, S, 3], map [S, S] in [0, 1], GT boxes [K, 4])`` at eval size, the maps
    read from where the run kept them (its map cache, its ``maps/`` folder, or the files it evaluated)."""
    dataset_args = {k: v for k, v in config["dataset"].items() if k != "name"}
    # every record with its label: the ids asked for are ones the run evaluated
    dataset = build_dataset(config["dataset"]["name"], num_classes=None, **dataset_args)
    dataset.keep_first(config.get("limit"))
    position = {r.image_id: i for i, r in enumerate(dataset.records)}
    positions = [position[i] for i in dict.fromkeys(ids) if i in position]
    batch = collate([dataset[p] for p in positions])
    maps: dict[str, torch.Tensor] = {}
    if config["method"]["name"] == "from_files":
        scorer = FileScorer(config["method"]["maps_dir"], torch.device("cpu"))
        scores = scorer(0, batch)
        maps.update(zip([i for i, r in zip(batch.ids, scores.reasons, strict=True) if r is None], scores.maps,
                        strict=True))
    else:
        folder = summary.get("maps") and os.path.join(run_dir, summary["maps"])  # relative: inside the run folder
        if not folder or not os.path.isdir(folder):
            raise WsolError(
                "this run kept no score maps (cache_dir=null and report=false): run it again with report=true"
            )
        cache = MapCache(os.path.dirname(folder), os.path.basename(folder))
        for index in sorted({p // int(config["batch_size"]) for p in positions}):
            entry = cache.get(index)
            if entry is not None:
                maps.update(zip(entry.ids, entry.maps, strict=True))
    localize = config["localize"]
    out = {}
    for j, image_id in enumerate(batch.ids):
        if image_id in maps:
            eval_map = eval_maps(maps[image_id][None].float(), dataset.image_size, localize["resize"],
                                 localize["normalize"])[0][0]
            boxes = batch.boxes[j][batch.box_valid[j]].numpy()
            out[image_id] = (batch.images[j].permute(1, 2, 0).numpy(), eval_map.numpy(), boxes)
    return out


def write_run_report(run_dir: str, config: dict) -> str:
    """Write ``figures/`` and ``report.html`` into a finished run folder; return the report's path."""
    with open(os.path.join(run_dir, "metrics.json")) as f:
        summary = json.load(f)
    rows = _read_csv(os.path.join(run_dir, "per_image.csv"))
    curves = _read_csv(os.path.join(run_dir, "curves.csv"))
    options = config.get("figures") or {}
    chosen = select_images(rows, int(options.get("num_images", 8)), int(options.get("extremes", 4)))
    wanted = [i for ids in chosen.values() for i in ids]
    samples = _samples(config, summary, wanted, run_dir) if wanted else {}
    by_id = {r["id"]: r for r in rows}
    figures_dir = os.path.join(run_dir, FIGURES)
    written: dict[str, str] = {}
    for image_id, (image, score_map, gt_boxes) in samples.items():
        box = by_id[image_id].get("box")
        pred = [[float(v) for v in box.split()]] if box else []
        picture = overlay(
            image, score_map, gt_boxes, pred, options.get("colormap", "jet"), float(options.get("alpha", 0.5))
        )
        name = f"{FIGURES}/overlays/{safe_name(os.path.splitext(image_id)[0])}.png"
        atomic_write_bytes(os.path.join(run_dir, name), png_bytes(picture))
        written[image_id] = name
    shown = {key: [(i, written[i]) for i in ids if i in written] for key, ids in chosen.items()}
    atomic_write_text(os.path.join(figures_dir, SHOWN), json.dumps(shown, indent=1) + "\n")
    label = run_labels([summary])[0]
    body = section("Table", _read(os.path.join(run_dir, "table.html")))
    if curves:
        best = summary["metrics"].get("loc_threshold")
        png = curves_figure(
            {label: curves},
            config["eval"].get("iou_thresholds", (30, 50, 70)),
            {label: best} if best is not None else None,
        )
        atomic_write_bytes(os.path.join(figures_dir, "curves.png"), png)
        body += section(
            "BoxAcc vs. threshold (GT-known, largest box; dotted: the chosen threshold)",
            figure(f"{FIGURES}/curves.png"),
        )
    body += _loc_errors_section({label: summary}, figures_dir)
    legend = (
        '<p class="legend">map in the colormap over the image; <span style="color:#d22">GT boxes</span>'
        '<span style="color:#2a2">predicted box</span> at the chosen threshold</p>'
    )
    titles = {"sample": "Sample images", "best": "Best localized", "worst": "Worst localized"}
    for key, ids in chosen.items():
        gallery = "".join(figure(written[i], _caption(by_id[i]), 224) for i in ids if i in written)
        body += section(titles[key], (legend if key == "sample" else "") + f'<div class="gallery">{gallery}</div>')
    meta = (
        f"{summary['dataset']} · {summary.get('images')} images · protocol {summary.get('protocol')} · "
        f"target {summary.get('target')} · {summary.get('images_per_second')} img/s on {summary.get('device')}"
    )
    path = os.path.join(run_dir, "report.html")
    atomic_write_text(path, page(f"wsol: {label}", meta, body))
    return path


def _loc_errors_section(summaries: dict[str, dict], figures_dir: str) -> str:
    """The stacked bar of the runs' top-1 failure kinds (``eval.extra=[loc_errors]``), or ``""`` when none has them."""
    prefix = "loc_errors_"
    shares = {label: {k[len(prefix):]: v for k, v in s["metrics"].items() if k.startswith(prefix)}
              for label, s in summaries.items()}
    shares = {label: v for label, v in shares.items() if v}
    if not shares:
        return ""
    atomic_write_bytes(os.path.join(figures_dir, "loc_errors.png"), loc_errors_figure(shares))
    return section("Top-1 loc failures by kind (TS-CAM's decomposition)", figure(f"{FIGURES}/loc_errors.png"))


def _tile(folder: str, file: str | None) -> np.ndarray | None:
    """A run's overlay PNG as ``uint8 [H, W, 3]`` (``None`` when the run did not show that image)."""
    if file is None:
        return None
    with Image.open(os.path.join(folder, file)) as image:
        return np.asarray(image.convert("RGB"))


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


_IDENTITY = ("method", "model", "layer", "dataset")
# overrides that set an identity field (a wsoleval model's label names its architecture and feature-map size)
_SAME_AS_IDENTITY = {"method", "model", "model.layer", "model.architecture", "model.large_feature_map", "dataset"}


def run_labels(summaries: list[dict]) -> list[str]:
    """Each run's label: the values of what varies across ``summaries`` (``features.15`` in a layer sweep,
    ``gradcam · features.15`` when methods vary too); a lone run is ``method · model · layer``."""

    def facts(summary: dict) -> dict[str, str]:
        out = {k: str(summary.get(k)) for k in _IDENTITY if summary.get(k)}
        pairs = (o.lstrip("+~").split("=", 1) for o in summary.get("overrides") or [] if "=" in o)
        out.update((k, v) for k, v in pairs if k not in _SAME_AS_IDENTITY)
        return out

    all_facts = [facts(s) for s in summaries]
    keys = list(dict.fromkeys(k for f in all_facts for k in f))
    varying = [k for k in keys if len({f.get(k) for f in all_facts}) > 1] if len(summaries) > 1 else []
    shown = varying or [k for k in ("method", "model", "layer") if k in keys]
    return [" · ".join(f[k] for k in shown if k in f) for f in all_facts]


def write_sweep_report(sweep_dir: str) -> str:
    """Write ``figures/`` and ``report.html`` for a sweep folder whose runs have their own reports."""

    summaries, failed = collect_runs(sweep_dir)
    runs = [(summary["folder"], summary) for summary in summaries]
    if not runs:
        raise WsolError(f"no finished runs under {sweep_dir}")
    varying = [k for k in _IDENTITY if len({str(s.get(k)) for _, s in runs}) > 1]
    keys = tuple(varying or ["run"])
    labels = run_labels([s for _, s in runs])
    figures_dir = os.path.join(sweep_dir, FIGURES)
    body = section(
        "Table",
        _read(os.path.join(sweep_dir, "table.html")) if os.path.isfile(os.path.join(sweep_dir, "table.html")) else "",
    )
    curves = {
        label: _read_csv(os.path.join(folder, "curves.csv")) for label, (folder, _) in zip(labels, runs, strict=True)
    }
    curves = {k: v for k, v in curves.items() if v}
    if curves:
        best = {label: s["metrics"].get("loc_threshold") for label, (_, s) in zip(labels, runs, strict=True)}
        deltas = sorted({int(float(r["iou"])) for rows in curves.values() for r in rows})
        atomic_write_bytes(os.path.join(figures_dir, "curves.png"), curves_figure(curves, deltas, best))
        body += section("BoxAcc vs. threshold, every run", figure(f"{FIGURES}/curves.png"))
    body += _loc_errors_section({label: s for label, (_, s) in zip(labels, runs, strict=True)}, figures_dir)
    shown = []
    for folder, _ in runs:
        path = os.path.join(folder, FIGURES, SHOWN)
        shown.append(json.loads(_read(path)) if os.path.isfile(path) else {})
    samples = [dict(s.get("sample", [])) for s in shown]
    ids = list(dict.fromkeys(i for s in samples for i in s))
    if ids:
        cells = [[_tile(folder, s.get(i)) for i in ids] for (folder, _), s in zip(runs, samples, strict=True)]
        atomic_write_bytes(
            os.path.join(figures_dir, "grid.png"),
            png_bytes(image_grid(cells, labels, [os.path.basename(i) for i in ids])),
        )
        title = " × ".join([*(k + "s" for k in keys), "images"])
        body += section(f"Grid: {title}", figure(f"{FIGURES}/grid.png"))
    for key, title in (("best", "Best localized images of each run"), ("worst", "Worst localized images of each run")):
        ranked = [s.get(key, []) for s in shown]
        width = max(map(len, ranked), default=0)
        if width:
            cells = [
                [_tile(folder, file) for _, file in files] for (folder, _), files in zip(runs, ranked, strict=True)
            ]
            grid = image_grid(cells, labels, [f"{key} {k + 1}" for k in range(width)])
            atomic_write_bytes(os.path.join(figures_dir, f"{key}.png"), png_bytes(grid))
            body += section(title, figure(f"{FIGURES}/{key}.png"))
    links = "".join(
        f'<li><a href="{os.path.relpath(os.path.join(folder, "report.html"), sweep_dir)}">{label}</a></li>'
        for label, (folder, _) in zip(labels, runs, strict=True)
        if os.path.isfile(os.path.join(folder, "report.html"))
    )
    if links:
        body += section("Runs", f"<ul>{links}</ul>")
    if failed:
        body += section(
            "Failed or unfinished runs", "<ul>" + "".join(f"<li>{d}: {r}</li>" for d, r in failed) + "</ul>"
        )
    first = runs[0][1]
    meta = f"{first['dataset']} · {first.get('images')} images · {len(runs)} runs · protocol {first.get('protocol')}"
    path = os.path.join(sweep_dir, "report.html")
    atomic_write_text(path, page(f"wsol sweep: {os.path.basename(os.path.abspath(sweep_dir))}", meta, body))
    return path
