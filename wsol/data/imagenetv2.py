"""ImageNetV2 (threshold-0.7) as wsolevaluation's ILSVRC ``val`` split (``train-fullsup``).

wsolevaluation annotated ImageNetV2's threshold-0.7 images with boxes under ids ``val2/<class>/<k>.jpeg``
(class-index folders 0–999, ``k`` 0–9: the release's names in 2020). The release later renamed its files
to content hashes (``<class>/<40 hex>.jpeg``; clovaai/wsolevaluation issue 42), so the published folder
no longer matches the metadata. :func:`match_imagenetv2` maps a published folder onto the metadata, per
class folder:

1. **by name**: ``<class>/<k>.jpeg`` exists and has the size ``image_sizes.txt`` gives;
2. **by size**: among the files not matched by name, the one file of the image's size in its folder;
3. **by content**, with a copy under the old names (``reference``): the file whose 32×32 grayscale
   thumbnail is nearest the old file's (RMS below ``tolerance`` grey levels), closest pairs first.

Images left without a file (missing, or several candidates and no reference) and files left over are
reported, each by name. :func:`write_imagenetv2` lays the matched files out under the metadata's ids
(``val2/<class>/<k>.jpeg``, symbolic links or copies) and writes the reference's metadata lines of the
matched images unchanged, so ``dataset=wsoleval`` (and the reference's own code) read them as they are.
"""

from __future__ import annotations

import os
import re
import shutil
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from ..errors import WsolError
from ..io import atomic_write_text

__all__ = ["Match", "match_imagenetv2", "read_metadata_lines", "write_imagenetv2", "METADATA_FILES"]

METADATA_FILES = ("image_ids", "class_labels", "image_sizes", "localization")
_ID = re.compile(r"^val2/(\d+)/([^/]+)$")
_IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


@dataclass
class Match:
    """The outcome: ``files[id] = (path, how)`` for matched ids; problems one line each."""

    files: dict[str, tuple[str, str]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    ambiguous: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    size_mismatch: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        return [*self.missing, *self.ambiguous, *self.size_mismatch, *self.extra]

    def counts(self) -> dict[str, int]:
        how = defaultdict(int)
        for _, kind in self.files.values():
            how[kind] += 1
        return {**{f"matched by {k}": v for k, v in sorted(how.items())}, "missing": len(self.missing),
                "ambiguous": len(self.ambiguous), "extra files": len(self.extra)}


def read_metadata_lines(folder: str) -> tuple[list[str], dict[str, dict[str, list[str]]]]:
    """The ids in order and, per metadata file, each id's lines as written (``localization`` has one per box)."""
    lines: dict[str, dict[str, list[str]]] = {}
    for name in METADATA_FILES:
        path = os.path.join(folder, f"{name}.txt")
        if not os.path.isfile(path):
            raise WsolError(f"no {name}.txt in {folder} (the reference's metadata/ILSVRC/val)")
        grouped: dict[str, list[str]] = defaultdict(list)
        with open(path) as f:
            for line in f.read().splitlines():
                if line.strip():
                    grouped[line.split(",")[0]].append(line)
        lines[name] = grouped
    ids = list(lines["image_ids"])
    bad = [i for i in ids if not _ID.match(i)]
    if bad:
        raise WsolError(f"{folder}: ids must read val2/<class>/<file> as the reference's ILSVRC val does, got {bad[0]}")
    return ids, lines


def _size(line: str) -> tuple[int, int]:
    _, w, h = line.split(",")
    return int(w), int(h)


def _thumbnail(path: str) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("L").resize((32, 32), Image.BILINEAR), dtype=np.float64)


def _image_size(path: str) -> tuple[int, int]:
    with Image.open(path) as image:  # the header only
        return image.size


def match_imagenetv2(folder: str, metadata: str, reference: str | None = None, tolerance: float = 8.0) -> Match:
    """Map the files of a published ImageNetV2 folder (``<class>/<file>``) onto the metadata's ids (module
    docstring); ``reference``: a copy under the old names (``<class>/<k>.jpeg``) for content matching."""
    if not os.path.isdir(folder):
        raise WsolError(f"--imagenetv2: not a folder: {folder}")
    ids, lines = read_metadata_lines(metadata)
    by_class: dict[str, list[str]] = defaultdict(list)
    for image_id in ids:
        by_class[_ID.match(image_id).group(1)].append(image_id)
    out = Match()
    for cls in sorted(set(by_class) | set(os.listdir(folder)), key=lambda c: (0, int(c)) if c.isdigit() else (1, c)):
        class_dir = os.path.join(folder, cls)
        files = sorted(f for f in os.listdir(class_dir) if f.lower().endswith(_IMAGE_SUFFIXES)) \
            if os.path.isdir(class_dir) else []
        sizes = {f: _image_size(os.path.join(class_dir, f)) for f in files}
        todo = []
        for image_id in by_class.get(cls, []):
            name, size = _ID.match(image_id).group(2), _size(lines["image_sizes"][image_id][0])
            if name in sizes and sizes[name] == size:
                out.files[image_id] = (os.path.join(class_dir, name), "name")
                del sizes[name]
            else:
                if name in sizes:
                    out.size_mismatch.append(f"size mismatch: {cls}/{name} is {sizes[name][0]}×{sizes[name][1]}, "
                                             f"{image_id} is {size[0]}×{size[1]} (matched by size or content instead)")
                todo.append((image_id, name, size))
        _match_rest(out, todo, sizes, class_dir, cls, reference, tolerance)
        out.extra += [f"extra file: {cls}/{f} (no id of the metadata)" for f in sorted(sizes)]
    return out


def _match_rest(out: Match, todo, sizes: dict[str, tuple[int, int]], class_dir: str, cls: str, reference, tolerance):
    """Match the ids left after names: a unique size, else content against ``reference``; the matched files
    leave ``sizes``."""
    pending = []
    for image_id, name, size in todo:
        candidates = [f for f, s in sizes.items() if s == size]
        if len(candidates) == 1 and sum(1 for _, _, other in todo if other == size) == 1:
            out.files[image_id] = (os.path.join(class_dir, candidates[0]), "size")
            del sizes[candidates[0]]
        else:
            pending.append((image_id, name, size, candidates))
    if reference is not None:
        pairs = []
        for image_id, name, size, _ in pending:
            old = os.path.join(reference, cls, name)
            if not os.path.isfile(old):
                continue
            thumb = _thumbnail(old)
            for f, s in sizes.items():
                if s == size:
                    rms = float(np.sqrt(np.mean((thumb - _thumbnail(os.path.join(class_dir, f))) ** 2)))
                    pairs.append((rms, image_id, f))
        for rms, image_id, f in sorted(pairs):  # closest pairs first, each id and file once
            if rms <= tolerance and image_id not in out.files and f in sizes:
                out.files[image_id] = (os.path.join(class_dir, f), "content")
                del sizes[f]
    for image_id, _, size, candidates in pending:
        if image_id in out.files:
            continue
        if candidates:
            shown = ", ".join(sorted(candidates)[:3])
            out.ambiguous.append(f"ambiguous: {image_id} ({size[0]}×{size[1]}) has {len(candidates)} candidate files "
                                 f"of its size in {cls}/ ({shown}…); pass --reference, a copy under the old names")
        else:
            out.missing.append(f"missing: {image_id} ({size[0]}×{size[1]}): no file of its size in {cls}/")


def write_imagenetv2(match: Match, metadata: str, out: str, copy: bool = False) -> str:
    """Lay the matched files out as ``<out>/val2/<class>/<k>.jpeg`` (links, or copies) and write the reference's
    metadata lines of the matched ids to ``<out>/metadata/ILSVRC/val/``; returns that folder."""
    ids, lines = read_metadata_lines(metadata)
    kept = [i for i in ids if i in match.files]
    for image_id in kept:
        source, target = os.path.abspath(match.files[image_id][0]), os.path.join(out, image_id)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.lexists(target):
            os.remove(target)
        shutil.copyfile(source, target) if copy else os.symlink(source, target)
    folder = os.path.join(out, "metadata", "ILSVRC", "val")
    for name in METADATA_FILES:
        text = "".join(line + "\n" for image_id in kept for line in lines[name].get(image_id, []))
        atomic_write_text(os.path.join(folder, f"{name}.txt"), text)
    mapping = "".join(f"{i},{os.path.abspath(match.files[i][0])},{match.files[i][1]}\n" for i in kept)
    atomic_write_text(os.path.join(out, "imagenetv2_mapping.csv"), "id,file,matched_by\n" + mapping)
    return folder
