"""The embedded offline demo: real photographs of objects on textured backgrounds, exact GT.

Objects are crops of photographs that scikit-image ships (``chelsea`` → *Egyptian cat*,
``coffee`` → *espresso*, ``camera`` → *tripod*, ``rocket`` → *missile*, with their ImageNet
class indices), pasted with a rounded (super-elliptic) mask at a random scale and position onto
crops of the ``grass``, ``gravel`` and ``brick`` textures or a smooth colour gradient. The GT
mask is the pasted mask and each GT box its tight bounding box, so both are exact. Everything is
derived from ``seed`` and the image index: the same ``(seed, index)`` always gives the same image,
in any process, with nothing downloaded or written.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Annotated

import numpy as np
from PIL import Image

from ..schema import PROTOCOL, Range
from . import DATASETS
from .base import BoxRescale, Record, WsolDataset, resize_mask

__all__ = ["DEMO_OBJECTS", "DemoDataset", "build_demo"]


@dataclass(frozen=True)
class _Source:
    image: str  # skimage.data function name
    crop: tuple[float, float, float, float]  # x0, y0, x1, y1 as fractions of the photo
    label: int  # ImageNet class index
    name: str


DEMO_OBJECTS = (
    _Source("chelsea", (0.02, 0.0, 0.80, 1.0), 285, "Egyptian cat"),
    _Source("coffee", (0.12, 0.0, 0.80, 0.97), 967, "espresso"),
    _Source("camera", (0.47, 0.25, 0.85, 1.0), 872, "tripod"),
    _Source("rocket", (0.40, 0.15, 0.60, 1.0), 657, "missile"),
)
_BACKGROUNDS = ("grass", "gravel", "brick", "gradient")
_CANVAS_SIZES = ((500, 375), (375, 500), (400, 300), (320, 320), (480, 360))


@functools.cache
def _photo(name: str) -> np.ndarray:
    import skimage.data

    image = np.asarray(getattr(skimage.data, name)())
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    return np.ascontiguousarray(image[..., :3])


@functools.cache
def _object_crop(index: int) -> np.ndarray:
    src = DEMO_OBJECTS[index]
    photo = _photo(src.image)
    h, w = photo.shape[:2]
    x0, y0, x1, y1 = src.crop
    return photo[int(y0 * h) : int(y1 * h), int(x0 * w) : int(x1 * w)]


def _rounded_mask(w: int, h: int, power: float = 4.0) -> np.ndarray:
    """A super-ellipse ``|x|^p + |y|^p <= 1`` inscribed in a ``w``×``h`` rectangle."""
    y = (np.arange(h) + 0.5) / h * 2 - 1
    x = (np.arange(w) + 0.5) / w * 2 - 1
    return (np.abs(x)[None, :] ** power + np.abs(y)[:, None] ** power) <= 1.0


@dataclass(frozen=True)
class _Layout:
    size: tuple[int, int]
    label: int
    background: str
    placements: tuple[tuple[int, bool, int, int, int, int], ...]  # (source, flip, x, y, w, h)


def _layout(seed: int, index: int) -> _Layout:
    rng = np.random.default_rng([seed, index])
    size = _CANVAS_SIZES[rng.integers(len(_CANVAS_SIZES))]
    source = index % len(DEMO_OBJECTS)
    crop_h, crop_w = _object_crop(source).shape[:2]
    two = rng.random() < 0.2
    placements: list[tuple[int, bool, int, int, int, int]] = []
    for _ in range(2 if two else 1):
        for _attempt in range(20):
            frac = rng.uniform(0.35, 0.55) if two else rng.uniform(0.4, 0.85)
            scale = frac * min(size[0] / crop_w, size[1] / crop_h)
            w, h = max(8, int(crop_w * scale)), max(8, int(crop_h * scale))
            x, y = int(rng.integers(0, size[0] - w + 1)), int(rng.integers(0, size[1] - h + 1))
            if all(x + w <= px or px + pw <= x or y + h <= py or py + ph <= y for _, _, px, py, pw, ph in placements):
                placements.append((source, bool(rng.random() < 0.5), x, y, w, h))
                break
    background = _BACKGROUNDS[rng.integers(len(_BACKGROUNDS))]
    return _Layout(size, DEMO_OBJECTS[source].label, background, tuple(placements))


def _background(name: str, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    w, h = size
    if name == "gradient":
        c0, c1 = rng.uniform(40, 215, 3), rng.uniform(40, 215, 3)
        t = np.linspace(0, 1, w)[None, :, None] * 0.6 + np.linspace(0, 1, h)[:, None, None] * 0.4
        return (c0 * (1 - t) + c1 * t).astype(np.uint8)
    texture = _photo(name)
    th, tw = texture.shape[:2]
    scale = max(w / tw, h / th, 0.6)
    tex = np.asarray(Image.fromarray(texture).resize((max(w, int(tw * scale)), max(h, int(th * scale)))))
    x = int(rng.integers(0, tex.shape[1] - w + 1))
    y = int(rng.integers(0, tex.shape[0] - h + 1))
    return tex[y : y + h, x : x + w].copy()


def _render(seed: int, index: int, layout: _Layout) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, index, 1])
    canvas = _background(layout.background, layout.size, rng)
    mask = np.zeros(canvas.shape[:2], dtype=bool)
    for source, flip, x, y, w, h in layout.placements:
        patch = np.asarray(Image.fromarray(_object_crop(source)).resize((w, h), Image.BILINEAR))
        if flip:
            patch = patch[:, ::-1]
        shape = _rounded_mask(w, h)
        canvas[y : y + h, x : x + w][shape] = patch[shape]
        mask[y : y + h, x : x + w] |= shape
    return canvas, mask


def _tight_box(x: int, y: int, w: int, h: int) -> list[float]:
    ys, xs = np.nonzero(_rounded_mask(w, h))
    return [x + xs.min(), y + ys.min(), x + xs.max(), y + ys.max()]


class DemoDataset(WsolDataset):
    """``num_images`` generated images (see module docstring); masks are exact, boxes tight."""

    def __init__(
        self,
        num_images: int = 120,
        seed: int = 0,
        image_size: Annotated[int, Range(1), PROTOCOL] = 224,
        box_rescale: Annotated[BoxRescale, PROTOCOL] = BoxRescale.wsoleval,
        num_classes: int | None = 1000,
    ):
        self.seed = seed
        self.layouts = [_layout(seed, i) for i in range(num_images)]
        records = [
            Record(
                image_id=f"demo/{i:04d}_{DEMO_OBJECTS[i % len(DEMO_OBJECTS)].image}.png",
                label=lay.label,
                boxes=np.array([_tight_box(*p[2:]) for p in lay.placements], dtype=np.float64),
                size=lay.size,
                mask_paths=("<generated>",),
            )
            for i, lay in enumerate(self.layouts)
        ]
        for i, record in enumerate(records):
            record.index = i  # type: ignore[attr-defined]
        super().__init__(
            records, "", image_size=image_size, box_rescale=box_rescale, num_classes=num_classes, check_files=False,
            name="demo",
        )

    def render(self, record: Record) -> tuple[np.ndarray, np.ndarray]:
        index = record.index  # type: ignore[attr-defined]
        return _render(self.seed, index, self.layouts[index])

    def load_image(self, record: Record) -> Image.Image:
        return Image.fromarray(self.render(record)[0])

    def load_mask(self, record: Record) -> np.ndarray:
        return resize_mask(self.render(record)[1], self.image_size).astype(np.uint8)


@DATASETS.register("demo")
def build_demo(
    *,
    num_images: Annotated[int, Range(1)] = 120,
    seed: Annotated[int, Range(0)] = 0,
    image_size: Annotated[int, Range(1), PROTOCOL] = 224,
    box_rescale: Annotated[BoxRescale, PROTOCOL] = BoxRescale.wsoleval,
    num_classes: int | None = 1000,
):
    """The embedded offline demo dataset."""
    return DemoDataset(
        num_images=num_images, seed=seed, image_size=image_size, box_rescale=box_rescale, num_classes=num_classes
    )
