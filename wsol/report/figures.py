"""Figures: CAM overlays with boxes, labelled image grids, BoxAcc-vs-threshold curves, the top-1 failures' kinds.

Overlays and grids are composed with NumPy and Pillow, so their pixel size is exact
(``grid_size``); curves are drawn with Matplotlib's Agg backend (headless).
"""

from __future__ import annotations

import io
import re

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..errors import WsolError
from ..extras import require

__all__ = [
    "GT_COLOR",
    "PRED_COLOR",
    "colorize",
    "curves_figure",
    "draw_boxes",
    "grid_size",
    "image_grid",
    "loc_errors_figure",
    "overlay",
    "png_bytes",
    "safe_name",
]

GT_COLOR = (255, 40, 40)  # red: ground truth
PRED_COLOR = (40, 255, 40)  # green: the predicted box at the chosen threshold
CELL_PAD = 4


def colorize(score_map: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """A ``[H, W]`` map in ``[0, 1]`` → ``uint8 [H, W, 3]`` through a Matplotlib colormap."""
    matplotlib = require("matplotlib", "report", "figures")
    try:
        cmap = matplotlib.colormaps[colormap]
    except KeyError:
        raise WsolError(f"unknown colormap {colormap!r} (figures.colormap: jet, viridis, turbo, inferno, …)") from None
    lut = (cmap(np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)
    return lut[(np.clip(score_map, 0, 1) * 255).astype(np.uint8)]


def draw_boxes(image: np.ndarray, boxes, color: tuple[int, int, int], width: int = 2) -> np.ndarray:
    """Outline each ``(x0, y0, x1, y1)`` box (inclusive pixel corners) on a copy of ``uint8 [H, W, 3]``."""
    pil = Image.fromarray(image)
    draw = ImageDraw.Draw(pil)
    for x0, y0, x1, y1 in np.asarray(boxes, dtype=float).reshape(-1, 4):
        draw.rectangle([x0, y0, x1, y1], outline=color, width=width)
    return np.asarray(pil)


def overlay(
    image: np.ndarray,
    score_map: np.ndarray,
    gt_boxes=(),
    pred_boxes=(),
    colormap: str = "jet",
    alpha: float = 0.5,
) -> np.ndarray:
    """``alpha · colormap(map) + (1 − alpha) · image``, GT boxes in red and predicted boxes in green."""
    if image.shape[:2] != score_map.shape:
        raise WsolError(f"overlay: image {image.shape[:2]} and map {score_map.shape} differ in size")
    blended = alpha * colorize(score_map, colormap).astype(np.float32) + (1 - alpha) * image.astype(np.float32)
    out = blended.round().clip(0, 255).astype(np.uint8)
    return draw_boxes(draw_boxes(out, gt_boxes, GT_COLOR), pred_boxes, PRED_COLOR)


def grid_size(rows: int, cols: int, cell: int, label_width: int, header: int) -> tuple[int, int]:
    """``(width, height)`` in pixels of an :func:`image_grid`."""
    return label_width + cols * (cell + CELL_PAD) + CELL_PAD, header + rows * (cell + CELL_PAD) + CELL_PAD


def image_grid(
    cells: list[list[np.ndarray | None]],
    row_labels: list[str],
    col_labels: list[str],
    cell: int = 160,
    label_width: int = 150,
    header: int = 22,
    max_width: int = 1400,
) -> np.ndarray:
    """Tile ``cells[r][c]`` (``uint8 [H, W, 3]``, resized to ``cell``, smaller where the grid would be wider than
    ``max_width`` pixels; ``None`` left blank) with labels."""
    rows, cols = len(cells), max((len(r) for r in cells), default=0)
    cell = max(32, min(cell, (max_width - label_width - CELL_PAD) // max(cols, 1) - CELL_PAD))
    width, height = grid_size(rows, cols, cell, label_width, header)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    try:
        font = ImageFont.load_default(size=13)  # Pillow ≥ 10.1 with FreeType
    except (TypeError, ImportError):
        font = ImageFont.load_default()
    for c, text in enumerate(col_labels[:cols]):
        draw.text((label_width + CELL_PAD + c * (cell + CELL_PAD), 4), _fit(text, cell, draw, font), fill=0, font=font)
    for r, row in enumerate(cells):
        top = header + CELL_PAD + r * (cell + CELL_PAD)
        if r < len(row_labels):
            draw.text((4, top + cell // 2 - 6), _fit(row_labels[r], label_width - 8, draw, font), fill=0, font=font)
        for c, image in enumerate(row):
            if image is not None:
                tile = Image.fromarray(image).resize((cell, cell), Image.BILINEAR)
                canvas.paste(tile, (label_width + CELL_PAD + c * (cell + CELL_PAD), top))
    return np.asarray(canvas)


def _fit(text: str, width: int, draw: ImageDraw.ImageDraw, font) -> str:
    """``text`` shortened from the left with ``…`` until it fits in ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength("…" + text, font=font) > width:
        text = text[1:]
    return "…" + text


def curves_figure(curves: dict[str, list[dict]], deltas, best: dict[str, float] | None = None) -> bytes:
    """PNG of BoxAcc (GT-known, largest box) vs. threshold: one panel per IoU δ, one line per label.

    ``curves`` maps a label (a run, a method) to ``curves.csv`` rows (``threshold, mode, iou, box_acc``);
    ``best`` marks each label's chosen threshold with a dotted line.
    """
    matplotlib = require("matplotlib", "report", "figures")
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    deltas = list(deltas)
    fig, axes = plt.subplots(1, len(deltas), figsize=(4.2 * len(deltas), 3.4), dpi=100, squeeze=False)
    for ax, delta in zip(axes[0], deltas, strict=True):
        for label, rows in curves.items():
            points = sorted(
                (float(r["threshold"]), float(r["box_acc"]))
                for r in rows
                if r["mode"] == "largest" and int(float(r["iou"])) == int(delta)
            )
            if not points:
                continue
            x, y = zip(*points, strict=True)
            (line,) = ax.plot(x, y, label=label, linewidth=1.4)
            if best and label in best:
                ax.axvline(best[label], color=line.get_color(), linestyle=":", linewidth=1)
        ax.set_title(f"IoU ≥ {int(delta)} %")
        ax.set_xlabel("threshold (fraction of the map's max)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("BoxAcc (%)")
    axes[0][-1].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def loc_errors_figure(shares: dict[str, dict[str, float]]) -> bytes:
    """PNG of one stacked horizontal bar per label: its top-1 loc failures split by kind (``eval.extra=[loc_errors]``;
    ``shares`` maps a label to ``{kind: % of the failures}`` in :data:`wsol.metrics.extra.LOC_ERRORS` order)."""
    matplotlib = require("matplotlib", "report", "figures")
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    labels = list(shares)
    kinds = list(next(iter(shares.values())))
    fig, ax = plt.subplots(figsize=(8.4, 0.9 + 0.42 * len(labels)), dpi=100)
    left = np.zeros(len(labels))
    for kind in kinds:
        width = np.array([shares[label].get(kind, 0.0) for label in labels])
        ax.barh(labels, width, left=left, label=kind.replace("_", " "), height=0.6)
        left += width
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of the top-1 loc failures (%)")
    ax.invert_yaxis()
    ax.legend(fontsize=7, ncol=len(kinds), loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def png_bytes(image: np.ndarray) -> bytes:
    """``uint8 [H, W, 3]`` → PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def safe_name(image_id: str) -> str:
    """A file name for an image id (``a/b.jpg`` → ``a_b.jpg``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", image_id).strip("_") or "image"
