"""Stage 2, scoring: a batch of images → low-resolution maps, the classifier's top-5 and the targets.

Either a CAM method on a model (:class:`ModelScorer`, through the map cache when one is given) or maps
made elsewhere, read from files (:class:`FileScorer`). The map cache (:class:`MapCache`) keeps each
batch's maps at feature resolution with its predictions, so runs that differ only downstream of this
stage (thresholds, region rule, protocol) do not run the network again, and reports draw the maps
they show from it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from .cams import CamMethod
from .cams.from_files import load_maps
from .data.base import Batch
from .errors import WsolError
from .io import read_arrays, write_arrays
from .ops import InputNormalization

__all__ = ["PRECISIONS", "Scores", "MapCache", "ModelScorer", "FileScorer", "ClassifierClasses", "FileClasses",
           "read_predictions", "with_classes", "resolve_device", "auto_on_cpu"]

PRECISIONS = ("fp32", "bf16")


@dataclass
class Scores:
    """One batch's maps at feature (or file) resolution, with the classifier's top-5 and targets, if any.

    ``reasons[i]`` is ``None`` for a scored image, else why it was skipped (maps from files only).
    """

    ids: list[str]
    maps: torch.Tensor | list[torch.Tensor]  # [B, h, w], or per-image [h, w] maps of mixed sizes
    top5: torch.Tensor | None = None  # int64 [B, k]
    targets: torch.Tensor | None = None  # int64 [B]
    reasons: list[str | None] | None = None
    faith: dict[str, torch.Tensor] | None = None  # per-image faithfulness values (wsol.faithfulness)


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise WsolError(f"device={name} but no CUDA GPU is available (use device=cpu or device=auto)")
    return torch.device(name)


def auto_on_cpu(setting: object, device: torch.device) -> bool:
    """A speed setting that is true, false or ``auto``: on a CPU device only. ``speed.channels_last`` (oneDNN's
    convolutions and pooling run faster so on a CPU; NCHW elsewhere until measured) and
    ``speed.keep_freed_memory`` (a GPU run's host allocations are small batches of pixels, which glibc already
    reuses); docs/speed.md."""
    return device.type == "cpu" if setting == "auto" else bool(setting)


class MapCache:
    """Score maps at feature resolution with the top-5 predictions and targets, one ``.npz`` per batch (read
    without unpickling anything), under ``root/key``."""

    def __init__(self, root: str, key: str) -> None:
        self.folder = os.path.join(os.path.expanduser(root), key)

    def _path(self, index: int) -> str:
        return os.path.join(self.folder, f"batch_{index:06d}.npz")

    def get(self, index: int) -> Scores | None:
        path = self._path(index)
        if not os.path.isfile(path):
            return None
        arrays = read_arrays(path)
        return Scores(
            ids=[str(i) for i in arrays["ids"]], maps=torch.from_numpy(arrays["maps"]),
            top5=torch.from_numpy(arrays["top5"]), targets=torch.from_numpy(arrays["targets"]),
        )

    def put(self, index: int, scores: Scores) -> None:
        write_arrays(
            self._path(index), ids=np.array(scores.ids, dtype=str), maps=scores.maps.detach().float().cpu().numpy(),
            top5=scores.top5.cpu().numpy(), targets=scores.targets.cpu().numpy(),
        )


class ModelScorer:
    """Normalise a batch on the device and run a CAM method on it (through the map cache, if given).

    Args:
        method: the CAM method, on a model already on ``device``.
        mean, std: the model's input normalisation.
        target: ``gt`` (maps of the GT class) or ``top1`` (of the prediction).
        precision: ``fp32`` or ``bf16`` (autocast); channels_last: inputs in channels-last memory format.
    """

    def __init__(self, method: CamMethod, mean, std, device: torch.device, *, target: str = "gt",
                 precision: str = "fp32", channels_last: bool = False, cache: MapCache | None = None) -> None:
        self.method, self.device, self.target, self.cache = method, device, target, cache
        self.precision, self.channels_last = precision, channels_last
        self.normalize = InputNormalization(mean, std, device)
        if hasattr(method, "use_normalization"):  # a method that reads the pixels (sobel) undoes the same one
            method.use_normalization(mean, std)

    def score(self, batch: Batch) -> Scores:
        """Maps, top-5 classes and targets of a batch, computed (no cache). Float images (a user's DataLoader's,
        :func:`wsol.api.evaluate`) are taken as normalised already."""
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        if batch.images.is_floating_point():
            images = batch.images.to(self.device).contiguous(memory_format=layout)
        else:
            images = self.normalize(batch.images, layout)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            out = self.method(images, batch.labels.to(self.device), target=self.target)
        top5 = out.logits.float().topk(min(5, out.logits.shape[1]), dim=1).indices
        return Scores(list(batch.ids), out.maps.float(), top5, out.targets)

    def explain(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The method's maps ``[B, h, w]`` of model inputs for classes ``targets`` (faithfulness' coherency)."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            return self.method(inputs, targets, target="gt").maps.float()

    def __call__(self, index: int, batch: Batch) -> Scores:
        """Batch ``index``'s scores: the cache's entry when it holds exactly these images, else computed."""
        cached = self.cache.get(index) if self.cache else None
        if cached is not None and cached.ids == batch.ids:
            return Scores(cached.ids, cached.maps.to(self.device), cached.top5.to(self.device),
                          cached.targets.to(self.device))
        scores = self.score(batch)
        if self.cache:
            self.cache.put(index, scores)
        return scores


class FileScorer:
    """Maps produced elsewhere, read from ``maps_dir`` (see :mod:`wsol.cams.from_files`)."""

    def __init__(self, maps_dir: str | None, device: torch.device) -> None:
        if not maps_dir or not os.path.isdir(maps_dir):
            raise WsolError(f"method.maps_dir does not exist: {maps_dir}")
        self.maps_dir, self.device = maps_dir, device

    def __call__(self, index: int, batch: Batch) -> Scores:
        maps, reasons = load_maps(self.maps_dir, batch.ids)
        return Scores(list(batch.ids), [m.to(self.device) for m in maps if m is not None], reasons=reasons)


def read_predictions(path: str) -> dict[str, list[int]]:
    """Image id → predicted classes, best first, from a CSV file (``image_id,c1[,c2,…]`` per line; a first line
    whose second field is not a number is a header) or a JSON object ``{image_id: [c1, …]}``."""
    if not os.path.isfile(path):
        raise WsolError(f"eval.predictions: no such file {path}")
    with open(path) as f:
        text = f.read()
    if path.endswith(".json"):
        import json

        try:
            table = json.loads(text)
        except json.JSONDecodeError as e:
            raise WsolError(f"eval.predictions: {path} is not valid JSON ({e.msg}, line {e.lineno})") from None
        if not isinstance(table, dict):
            raise WsolError(f"eval.predictions: {path} must hold an object {{image_id: [classes]}}")
        rows = [(str(k), v if isinstance(v, list) else [v]) for k, v in table.items()]
    else:
        import csv

        lines = [row for row in csv.reader(text.splitlines()) if row]
        if lines and len(lines[0]) > 1 and not lines[0][1].strip().lstrip("-").isdigit():
            lines = lines[1:]  # a header
        rows = [(row[0].strip(), [c.strip() for c in row[1:] if c.strip()]) for row in lines]
    out = {}
    for image_id, classes in rows:
        try:
            out[image_id] = [int(c) for c in classes][:5]
        except (TypeError, ValueError):
            raise WsolError(f"eval.predictions: the classes of {image_id} are not integers: {classes}") from None
        if not out[image_id]:
            raise WsolError(f"eval.predictions: {image_id} has no class")
    return out


class FileClasses:
    """Top-5 classes per image from a predictions file (:func:`read_predictions`); fewer than 5 are padded
    with -1, which matches no label."""

    def __init__(self, table: dict[str, list[int]], device: torch.device) -> None:
        self.table, self.device = table, device

    def missing(self, ids: list[str]) -> list[str]:
        return [i for i in ids if i not in self.table]

    def __call__(self, batch: Batch) -> torch.Tensor:
        rows = [self.table[i] + [-1] * (5 - len(self.table[i])) for i in batch.ids]
        return torch.tensor(rows, dtype=torch.int64, device=self.device).reshape(len(rows), 5)


class ClassifierClasses:
    """Top-5 classes of another classifier on the same batch (its own input normalisation), for top-1 / top-5
    loc of maps made by a model or a localizer that does not classify."""

    def __init__(self, module: torch.nn.Module, mean, std, device: torch.device) -> None:
        self.module, self.normalize = module.to(device).eval(), InputNormalization(mean, std, device)

    @torch.no_grad()
    def __call__(self, batch: Batch) -> torch.Tensor:
        logits = self.module(self.normalize(batch.images)).float()
        return logits.topk(min(5, logits.shape[1]), dim=1).indices


def with_classes(scores: Scores, batch: Batch, classes) -> Scores:
    """``scores`` with the top-5 of ``classes`` for its scored images; targets: the maps' own, else the labels."""
    top5 = classes(batch)
    keep = torch.tensor([r is None for r in (scores.reasons or [None] * len(batch))], device=top5.device)
    targets = scores.targets if scores.targets is not None else batch.labels.to(top5.device)[keep]
    return Scores(scores.ids, scores.maps, top5[keep], targets, scores.reasons, scores.faith)
