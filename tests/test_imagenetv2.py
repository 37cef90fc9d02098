"""ImageNetV2 as wsolevaluation's ILSVRC val: the published layout (class-index folders, files renamed to
content hashes) mapped back onto the reference's real metadata lines, with planted renames, a missing and an
extra file, and same-size images told apart by content."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO
from PIL import Image

from wsol.data import build_dataset
from wsol.data.imagenetv2 import match_imagenetv2, read_metadata_lines, write_imagenetv2

CLASSES = ("0", "1", "2")


def _subset(wsoleval_data: str, folder) -> str:
    """The reference's ILSVRC val metadata lines of classes 0-2 (30 images), as written upstream."""
    source = os.path.join(wsoleval_data, "metadata", "ILSVRC", "val")
    os.makedirs(folder, exist_ok=True)
    for name in ("image_ids", "class_labels", "image_sizes", "localization"):
        with open(os.path.join(source, f"{name}.txt")) as f:
            lines = [line for line in f.read().splitlines() if line.split("/")[1] in CLASSES]
        (folder / f"{name}.txt").write_text("".join(line + "\n" for line in lines))
    return str(folder)


def _old_release(metadata: str, folder) -> None:
    """Images under the old names ``<class>/<k>.jpeg``, of the metadata's sizes, each distinct."""
    ids, lines = read_metadata_lines(metadata)
    for n, image_id in enumerate(ids):
        w, h = (int(v) for v in lines["image_sizes"][image_id][0].split(",")[1:])
        rng = np.random.default_rng(n)
        base = rng.integers(0, 256, (4, 4, 3)).astype(np.uint8)  # a coarse pattern: survives JPEG and thumbnails
        image = Image.fromarray(base).resize((w, h), Image.NEAREST)
        path = folder / image_id.split("/", 1)[1]
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, quality=95)


def _published(old, folder) -> None:
    """The current release: every file renamed to the SHA-1 of its bytes."""
    for cls in CLASSES:
        (folder / cls).mkdir(parents=True)
        for name in os.listdir(old / cls):
            data = (old / cls / name).read_bytes()
            (folder / cls / f"{hashlib.sha1(data).hexdigest()}.jpeg").write_bytes(data)


@pytest.fixture
def release(tmp_path, wsoleval_data):
    metadata = _subset(wsoleval_data, tmp_path / "metadata")
    _old_release(metadata, tmp_path / "old")
    _published(tmp_path / "old", tmp_path / "published")
    return metadata, tmp_path / "old", tmp_path / "published"


def test_the_old_names_match_by_name_and_reproduce_the_reference_lines(release, tmp_path):
    metadata, old, _ = release
    match = match_imagenetv2(str(old), metadata)
    assert len(match.files) == 30 and not match.problems()
    assert {how for _, how in match.files.values()} == {"name"}
    folder = write_imagenetv2(match, metadata, str(tmp_path / "out"))
    for name in ("image_ids", "class_labels", "image_sizes", "localization"):
        assert (tmp_path / "out" / "metadata" / "ILSVRC" / "val" / f"{name}.txt").read_text() == open(
            os.path.join(metadata, f"{name}.txt")).read()
    with Image.open(tmp_path / "out" / "val2" / "1" / "1.jpeg") as image:
        assert image.size == (464, 500) and os.path.islink(tmp_path / "out" / "val2" / "1" / "1.jpeg")
    assert folder.endswith(os.path.join("metadata", "ILSVRC", "val"))
    dataset = build_dataset("wsoleval", root=str(tmp_path / "out"), metadata_root=str(tmp_path / "out" / "metadata" /
                                                                                     "ILSVRC"), split="val")
    assert len(dataset) == 30 and not dataset.skipped and dataset[0]["image"].shape[-2:] == (224, 224)


def test_renamed_files_match_by_size_and_by_content(release, tmp_path):
    metadata, old, published = release
    alone = match_imagenetv2(str(published), metadata)
    assert {how for _, how in alone.files.values()} == {"size"}  # sizes unique within their folder
    assert len(alone.ambiguous) == 30 - len(alone.files) > 0  # 500×375 images: several per folder
    assert all(p.startswith("ambiguous: val2/") and "pass --reference" in p for p in alone.ambiguous)
    match = match_imagenetv2(str(published), metadata, reference=str(old))
    assert len(match.files) == 30 and not match.problems()
    for image_id, (path, how) in match.files.items():  # every file is the one the old name held
        assert open(path, "rb").read() == (old / image_id.split("/", 1)[1]).read_bytes(), (image_id, how)
    write_imagenetv2(match, metadata, str(tmp_path / "out"), copy=True)
    lines = (tmp_path / "out" / "metadata" / "ILSVRC" / "val" / "localization.txt").read_text()
    assert lines == open(os.path.join(metadata, "localization.txt")).read()
    assert not os.path.islink(tmp_path / "out" / "val2" / "0" / "0.jpeg")


def test_a_planted_rename_a_missing_and_an_extra_file_are_reported(release, tmp_path):
    metadata, old, _ = release
    os.rename(old / "1" / "1.jpeg", old / "1" / "renamed.jpeg")  # the only 464×500 image of class 1
    os.remove(old / "2" / "7.jpeg")  # the only 333×500 image of class 2
    shutil.copy(old / "0" / "5.jpeg", old / "2" / "stray.jpeg")  # 500×500: no such image in class 2
    match = match_imagenetv2(str(old), metadata)
    assert match.files["val2/1/1.jpeg"] == (str(old / "1" / "renamed.jpeg"), "size")
    assert match.missing == ["missing: val2/2/7.jpeg (333×500): no file of its size in 2/"]
    assert match.extra == ["extra file: 2/stray.jpeg (no id of the metadata)"]
    write_imagenetv2(match, metadata, str(tmp_path / "out"))
    ids = (tmp_path / "out" / "metadata" / "ILSVRC" / "val" / "image_ids.txt").read_text().split()
    assert len(ids) == 29 and "val2/2/7.jpeg" not in ids
    result = subprocess.run([sys.executable, "scripts/prepare_ilsvrc.py", "--imagenetv2", str(old), "--metadata",
                             metadata, "--out", str(tmp_path / "cli")], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 1, result.stderr
    assert "missing: val2/2/7.jpeg" in result.stdout and "extra file: 2/stray.jpeg" in result.stdout
    assert "matched by size: 1" in result.stdout and "images placed: 29" in result.stdout
    assert f"dataset.root={tmp_path / 'cli'}" in result.stdout
