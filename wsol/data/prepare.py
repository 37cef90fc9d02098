"""From official dataset downloads to wsolevaluation's metadata layout, with a validation report.

Used by ``scripts/prepare_cub.py`` and ``scripts/prepare_ilsvrc.py``: unpack the archives (or take
already unpacked folders), read the annotations with wsol's own loaders, check every record
against its image file (present, readable, size as annotated, boxes inside the image), and write
``<out>/metadata/<DATASET>/<split>/{image_ids,class_labels,image_sizes,localization}.txt`` for
``dataset=wsoleval``. Problems are listed, not fatal: the metadata keeps only the valid records.
"""

from __future__ import annotations

import os
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import WsolError
from ..io import atomic_write_text
from .base import Record, _check_boxes

__all__ = ["Report", "check_records", "find_file", "run_preparation", "unpack", "write_wsoleval_metadata"]


@dataclass
class Report:
    """What a preparation found: counts, and one line per problem (``kind: detail``)."""

    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def expect(self, what: str, found: int, expected: int | None) -> None:
        self.counts[what] = found
        if expected is not None and found != expected:
            self.problems.append(f"count: {found} {what}, the official release has {expected}")

    def text(self, limit: int = 20) -> str:
        lines = [f"{k}: {v:,}" for k, v in self.counts.items()]
        lines.append(f"problems: {len(self.problems)}")
        lines += [f"  - {p}" for p in self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"  … and {len(self.problems) - limit} more")
        return "\n".join(lines)


def unpack(source: str, dest: str) -> str:
    """``source`` itself if it is a folder, else the tar archive unpacked into ``dest`` (returned)."""
    if os.path.isdir(source):
        return source
    if not os.path.isfile(source) or not tarfile.is_tarfile(source):
        raise WsolError(f"{source} is neither a folder nor a tar archive")
    os.makedirs(dest, exist_ok=True)
    with tarfile.open(source) as archive:
        archive.extractall(dest, filter="data")
    return dest


def find_file(root: str, name: str) -> str:
    """The folder under ``root`` (depth-first, sorted) that holds a file called ``name``."""
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        if name in files:
            return folder
    raise WsolError(f"no {name} under {root}")


def check_records(records: list[Record], image_root: str, report: Report) -> list[Record]:
    """The records whose image opens, whose size matches the annotation and whose boxes lie inside it.

    Records without a size get the image's; every other record is reported as a problem.
    """
    valid = []
    for record in records:
        path = os.path.join(image_root, record.image_id)
        try:
            with Image.open(path) as image:
                size = image.size
        except FileNotFoundError:
            report.problems.append(f"missing image: {record.image_id}")
            continue
        except (OSError, UnidentifiedImageError):
            report.problems.append(f"unreadable image: {record.image_id}")
            continue
        if record.size is not None and tuple(record.size) != size:
            report.problems.append(f"size mismatch: {record.image_id} annotated {record.size}, file {size}")
            continue
        boxes = record.boxes
        if len(boxes) == 0:
            report.problems.append(f"no box: {record.image_id}")
            continue
        # the loader's own check (it would skip, or clip, such boxes), and empty boxes on top
        clipped, reason, _ = _check_boxes(boxes, size)
        bad = (clipped != boxes).any(1) | (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
        if reason or bad.any():
            shown = ",".join(f"{v:g}" for v in boxes[np.argmax(bad) if bad.any() else 0])
            report.problems.append(f"box outside the {size[0]}x{size[1]} image or empty: {record.image_id} ({shown})")
            continue
        valid.append(Record(record.image_id, record.label, boxes, size))
    return valid


def write_wsoleval_metadata(records: list[Record], folder: str, prefix: str = "") -> None:
    """Write wsolevaluation's four metadata files for ``records`` (ids prefixed with ``prefix``)."""
    ids = [prefix + r.image_id for r in records]
    atomic_write_text(os.path.join(folder, "image_ids.txt"), "".join(f"{i}\n" for i in ids))
    atomic_write_text(
        os.path.join(folder, "class_labels.txt"), "".join(f"{i},{r.label}\n" for i, r in zip(ids, records, strict=True))
    )
    atomic_write_text(
        os.path.join(folder, "image_sizes.txt"),
        "".join(f"{i},{r.size[0]},{r.size[1]}\n" for i, r in zip(ids, records, strict=True)),
    )
    lines = [f"{i},{','.join(f'{v:g}' for v in box)}\n" for i, r in zip(ids, records, strict=True) for box in r.boxes]
    atomic_write_text(os.path.join(folder, "localization.txt"), "".join(lines))


def run_preparation(prepare: Callable[[], tuple[Report, str, str]], model_args: str) -> int:
    """CLI body of the prep scripts: ``prepare() → (report, image root, metadata folder)``; print the report
    and the command that evaluates the result. Exit status 2 on an error, 1 if problems were found, else 0."""
    try:
        report, image_root, metadata = prepare()
    except WsolError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report.text())
    print(f"\nmetadata: {metadata}\nevaluate with:")
    print(
        f"  python -m wsol.run dataset=wsoleval dataset.root={image_root} dataset.metadata_root={metadata} {model_args}"
    )
    return 1 if report.problems else 0
