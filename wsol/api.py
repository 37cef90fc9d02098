"""``wsol.evaluate(model, data, …)``: one evaluation of a model in memory, from Python (a training loop, a notebook).

It runs the CLI's own stages on the batches: a CAM method (:func:`wsol.cams.build`) scores each batch as
:class:`~wsol.scoring.ModelScorer` does, and :class:`~wsol.metrics.metric.WSOLMetrics` turns the maps into the
protocol's metrics as :mod:`wsol.pipeline` does, so the numbers are those of ``python -m wsol.run`` on the same
images, model and settings. Nothing is written and nothing process-wide is changed; the model is not changed
(its batch norms are folded in a copy) and its train / eval modes are restored after.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from .cams import build, method_layers
from .cams.core import eval_mode
from .data.base import Batch, WsolDataset
from .errors import WsolError
from .localize.sweep import load_kernel
from .metrics.metric import WSOLMetrics, as_box_batch
from .metrics.results import EvalResult
from .models import IMAGENET_MEAN, IMAGENET_STD, default_layer
from .models.fold import fold_batchnorms, fold_example
from .pipeline import InOrder
from .scoring import ModelScorer, auto_on_cpu
from .stages import batch_positions, box_threads, load_batches, resolve_workers

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "Result", "evaluate", "as_batch"]


@dataclass
class Result:
    """An evaluation's numbers: ``metrics`` (the CLI's ``metrics.json`` names, in percent), ``per_image`` (one row
    per image: id, label, prediction, each image's best IoU…), ``info`` (counts, skips, layer, device)."""

    metrics: dict[str, float]
    per_image: object  # pandas.DataFrame
    info: dict[str, object] = field(default_factory=dict)
    label: dict[str, str] = field(default_factory=dict)  # method, model, layer, dataset, protocol (table rows)

    @classmethod
    def of(cls, result: EvalResult, label: dict[str, str]) -> Result:
        import pandas as pd

        return cls(result.metrics, pd.DataFrame(result.images), result.info, label)

    def table(self, fmt: str = "md", columns: Sequence[str] | None = None) -> str:
        """The paper-style table of this run (``md``, ``latex``, ``html`` or ``csv``), as ``wsol run`` prints it;
        ``columns``: metrics.json keys (default: the protocol's)."""
        from .config import compose_config
        from .report.compare import paper_tables

        if columns is None:
            preset = compose_config([f"protocol={self.label.get('protocol') or 'wsoleval_v2'}"]).table.columns
            columns = list(preset) if preset else None
        run = {**self.label, "metrics": self.metrics, "overrides": []}
        label = self.label
        caption = f"{label.get('dataset')}, {self.info.get('images')} images, protocol {label.get('protocol')}"
        tables = paper_tables([run], columns, caption, ci_style="none")
        if fmt not in tables:
            raise WsolError(f"table format must be one of {', '.join(tables)}, got {fmt!r}")
        return tables[fmt]


def as_batch(item, ids: Sequence[str]) -> Batch:
    """A batch of a user's DataLoader, ``(images, labels, boxes[, masks])``, as the loop's :class:`Batch`:
    images ``[B, 3, S, S]`` (uint8 pixels, or floats already normalised for the model), labels ``[B]``, boxes per
    image ``[K, 4]`` as whole pixels at ``S`` (a list, or ``[B, 4]`` / ``[B, K, 4]``), masks ``[B, S, S]``."""
    if isinstance(item, Batch):
        return item
    if not isinstance(item, (tuple, list)) or len(item) not in (3, 4):
        raise WsolError("each batch of data must be (images, labels, boxes) or (images, labels, boxes, masks)")
    images, labels, boxes = item[:3]
    masks = item[3] if len(item) == 4 else None
    images = torch.as_tensor(images)
    if images.ndim != 4 or images.shape[1] != 3:
        raise WsolError(f"images must be [B, 3, H, W], got shape {tuple(images.shape)}")
    count, size = len(images), images.shape[-1]
    box_tensor, valid = as_box_batch(boxes, count)
    if masks is not None:
        masks = torch.as_tensor(masks).cpu().to(torch.uint8)
    return Batch(images=images, labels=torch.as_tensor(labels).cpu().long(), boxes=box_tensor, box_valid=valid,
                 masks=masks, ids=list(ids), sizes=torch.full((count, 2), size, dtype=torch.int64))


def _batches(data, batch_size: int, workers: int, device: torch.device) -> tuple[Iterable[Batch], dict]:
    """The batches of ``data`` and what it is: a wsol dataset (loaded as the CLI loads it, its workers started now
    so that they decode while the model is prepared) or an iterable."""
    if isinstance(data, WsolDataset):
        batches = batch_positions(len(data), batch_size)
        skips = {"dataset_skipped": dict(data.skipped), "dataset_skipped_ids": data.skipped_ids,
                 "boxes_clipped": data.boxes_clipped}
        facts = {"image_size": data.image_size, "has_boxes": data.has_boxes, "name": data.name, "skips": skips}
        return load_batches(data, batches, workers, device, batch_size), facts

    def numbered():
        seen = 0
        for item in data:
            count = len(item.ids) if isinstance(item, Batch) else len(item[0])
            yield as_batch(item, [str(seen + i) for i in range(count)])
            seen += count

    return numbered(), {"image_size": None, "has_boxes": True, "name": "data", "skips": {}}


def _fast_copy(model: nn.Module, layer, fold: bool, channels_last: bool, size: int, method: str,
               options: dict) -> tuple[nn.Module, list[str]]:
    """The network the maps are computed on and the layers ``method`` hooks: ``model`` itself, or with ``fold``
    or ``channels_last`` an eval-mode copy with its batch norms folded (as the CLI folds them, with the same
    example) and its weights channels-last."""
    layers = method_layers(method, model, layer or default_layer(model, size), size, **options)
    if not (fold or channels_last):
        return model, layers
    try:
        net = copy.deepcopy(model).eval()
    except Exception as e:  # noqa: BLE001 - a module that cannot be copied: say how to go on
        raise WsolError(f"cannot copy the model to fold its batch norms ({type(e).__name__}: {e}); pass "
                        "fold_batchnorm=False, channels_last=False to use it as it is") from None
    if fold:
        fold_batchnorms(net, fold_example(size, _device_of(net)), keep=tuple(layers))
    if channels_last:
        net.to(memory_format=torch.channels_last)
    return net, layers


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters(), torch.zeros(())).device


def evaluate(model: nn.Module, data, method: str = "gradcampp", layer: str | Sequence[str] | None = None,
             protocol: str = "wsoleval_v2", *, mean: Sequence[float] = IMAGENET_MEAN,
             std: Sequence[float] = IMAGENET_STD, target: str = "gt", batch_size: int = 32,
             num_workers: int | str = "auto", precision: str = "fp32", fold_batchnorm: bool = True,
             channels_last: bool | str = "auto", overlap: bool = True, overrides: Sequence[str] = (),
             **options) -> Result:
    """Evaluate CAM ``method`` on ``model`` at ``layer`` over ``data`` with the metrics of ``protocol``.

    Args:
        model: any classifier ``nn.Module`` returning logits, on the device to run on (it stays there).
        data: a wsol dataset (:mod:`wsol.datasets`), or any iterable (a DataLoader) of
            ``(images, labels, boxes[, masks])`` batches (:func:`as_batch`).
        layer: the target layer's dotted name, a list of names, or ``None`` (:func:`wsol.cams.build`).
        mean, std: the model's input normalisation, applied to uint8 images (float images are taken as normalised).
        target: ``gt`` (maps of the GT class, WSOL's convention) or ``top1``.
        batch_size, num_workers: how a wsol dataset is loaded (``auto``: the cores less one, as the CLI).
        precision: ``fp32`` or ``bf16`` (autocast). overlap: localize on a CPU thread while the next batch is scored.
        fold_batchnorm, channels_last: the CLI's ``speed.fold_batchnorm`` and ``speed.channels_last`` (``auto``: on
            a CPU), applied to a copy of the model made for the call: ``model`` itself is never changed.
        overrides: protocol settings in the CLI's form (``localize.interval=0.01``).
        options: the method's own (``wsol.cams.method_options(method)``).
    """
    device = _device_of(model)
    channels_last = auto_on_cpu(channels_last, device)
    batches, facts = _batches(data, batch_size, resolve_workers(num_workers), device)
    with eval_mode(model):  # each module's own mode back after
        net, layers = _fast_copy(model, layer, fold_batchnorm, channels_last, getattr(data, "image_size", 224),
                                 method, options)
        cam = build(method, net, layers, **options)
        scorer = ModelScorer(cam, mean, std, device, target=target, precision=precision, channels_last=channels_last)
        metrics = WSOLMetrics(protocol, image_size=facts["image_size"], overrides=overrides,
                              box_threads=box_threads(None, overlap, device.type))
        metrics.info.update(target=target, layer=cam.layer_label, device=str(device), **facts["skips"])
        # as the CLI's loop: batch i's maps, boxes and metrics on a CPU thread while batch i + 1 is scored
        stage = InOrder(lambda i, b, s: metrics.process(i, b, s, facts["has_boxes"]), metrics.append, overlap)
        if overlap and facts["has_boxes"] and metrics.spec.engine == "fast":
            stage.prepare(load_kernel)  # numba and its cached code load while the first batch is scored
        start = time.perf_counter()
        try:
            for index, batch in enumerate(batches):
                if len(batch):
                    metrics.image_size = metrics.image_size or int(batch.images.shape[-1])  # boxes live at it
                    stage.submit(index, batch, scorer.score(batch))
            stage.finish()
        finally:
            stage.shutdown()
        result = metrics.result(seconds=time.perf_counter() - start)  # scoring + metrics, as the CLI's seconds
    label = {"method": method, "model": type(model).__name__, "layer": result.info["layer"],
             "dataset": facts["name"], "protocol": protocol}
    return Result.of(result, label)

