"""Shared fixtures: tiny images on disk and toy networks with a known structure."""

from __future__ import annotations

import os
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WSOLEVAL_ARCHIVE = os.path.join(REPO, "tests", "data", "wsolevaluation", "metadata.tar.xz")


@pytest.fixture(scope="session")
def wsoleval_data(tmp_path_factory) -> str:
    """clovaai/wsolevaluation's real split metadata and test masks (MIT; ``tests/data/wsolevaluation/``),
    unpacked once per session: ``<folder>/metadata/<DATASET>/<split>/`` and ``<folder>/test_data/test_masks/``."""
    folder = tmp_path_factory.mktemp("wsolevaluation")
    with tarfile.open(WSOLEVAL_ARCHIVE) as archive:
        archive.extractall(folder, filter="data")
    return str(folder)


def write_image(path: str, size=(40, 30), mode: str = "RGB", seed: int = 0) -> str:
    """A random image of ``size`` (w, h) in PIL ``mode``, saved at ``path`` (format from the suffix)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "CMYK": 4, "L": 1}[mode]
    data = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    image = Image.fromarray(data[..., 0] if channels == 1 else data, mode=mode if mode != "CMYK" else None)
    if mode == "CMYK":
        image = Image.fromarray(data[..., :3]).convert("CMYK")
    image.save(path)
    return path


def mask_only_split(tmp_path, wsoleval_data: str) -> tuple[list[str], list[str]]:
    """A wsolevaluation split with masks and no boxes, from wsolevaluation's real OpenImages mask PNGs
    (the ``wsoleval_data`` fixture's folder): ``(dataset overrides, image ids)``."""
    mask_root = os.path.join(wsoleval_data, "test_data", "test_masks")
    ids, lines = [], []
    for folder in sorted(os.listdir(os.path.join(mask_root, "val"))):
        names = sorted(os.listdir(os.path.join(mask_root, "val", folder)))
        for stem in sorted({n.split("_")[0] for n in names}):
            masks = [n for n in names if n.startswith(stem) and "_ignore" not in n]
            image_id = f"val/{folder}/{stem}.jpg"
            write_image(str(tmp_path / "images" / image_id), (80, 60), seed=len(ids))
            ids.append(image_id)
            ignore = f"val/{folder}/{stem}_ignore.png" if f"{stem}_ignore.png" in names else ""
            lines += [f"{image_id},val/{folder}/{m},{ignore if j == 0 else ''}" for j, m in enumerate(masks)]
    meta = tmp_path / "meta"
    meta.mkdir()
    (meta / "image_ids.txt").write_text("".join(f"{i}\n" for i in ids))
    (meta / "class_labels.txt").write_text("".join(f"{i},0\n" for i in ids))
    (meta / "localization.txt").write_text("\n".join(lines) + "\n")
    overrides = [
        "dataset=wsoleval",
        f"dataset.root={tmp_path / 'images'}",
        f"dataset.metadata_root={meta}",
        f"dataset.mask_root={mask_root}",
    ]
    return overrides, ids


class ToyCamNet(nn.Module):
    """conv → ReLU → GAP → FC: the architecture CAM needs; ``features`` is the hooked layer."""

    def __init__(self, channels: int = 4, classes: int = 3, inplace: bool = False, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, channels, 3, padding=1)
        self.features = nn.ReLU(inplace=inplace)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(self.conv(x))), 1))


class MeanHead(nn.Module):
    """logits = W · mean_hw(x), hooked at ``features`` = the input: A = X, S_c = Σ_k W_ck mean(X_k), g = W[c] / hw."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.features = nn.Identity()
        self.fc = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        self.fc.weight.data.copy_(weight)

    def forward(self, x):
        return self.fc(self.features(x).mean(dim=(2, 3)))


class SquareHead(nn.Module):
    """S_c = Σ_k v_ck Σ_ij A_kij² with A = the input: the gradient g = 2 v_ck A_kij varies over pixels."""

    def __init__(self, v: torch.Tensor) -> None:
        super().__init__()
        self.features = nn.Identity()
        self.v = v

    def forward(self, x):
        return self.features(x).pow(2).sum(dim=(2, 3)) @ self.v.T


def compose(*overrides: str):
    """The typed config ``python -m wsol.run`` composes for ``overrides`` (no DataLoader workers, no map cache
    unless asked for)."""
    from wsol.config import compose_config

    return compose_config(["num_workers=0", "cache_dir=null", *overrides])


@pytest.fixture
def toy_net() -> ToyCamNet:
    return ToyCamNet()


@pytest.fixture(autouse=True, scope="session")
def _private_map_cache(tmp_path_factory):
    """Keep the tests' map cache (and their subprocesses') out of the user's ~/.cache/wsol."""
    os.environ["WSOL_CACHE"] = str(tmp_path_factory.mktemp("wsol-cache"))
    yield
