"""The one sample type every dataset yields, and the loading shared by all formats.

Conventions (documented in README):
- Images are resized to ``image_size``×``image_size`` with PIL bilinear, no crop
  (torchvision ``Resize((S, S))`` on a PIL image, as wsolevaluation does).
- GT boxes are ``x0, y0, x1, y1`` in original pixels; they are rescaled to the eval size with
  ``int()`` truncation of each coordinate, in the reference's own floating-point order
  (:class:`BoxRescale`): ``int(x * S / w)`` as wsolevaluation's ``resize_bbox``, or
  ``int(x / w * S)`` as TS-CAM's loaders.
- Masks are ``uint8`` at the eval size: 0 background, 1 foreground, 255 ignore. Each mask file is
  read and resized exactly as wsolevaluation's ``load_mask_image`` does: OpenCV grayscale as
  ``float32``, ``cv2.resize(INTER_NEAREST)`` to the eval size, foreground ``> 0.5``. OpenCV's
  nearest-neighbour rule samples other source pixels than PIL's, so PxAP depends on it.
"""

from __future__ import annotations

import enum
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from ..errors import WsolError
from ..io import is_safe_id
from .cache import ImageCache

__all__ = [
    "BoxRescale", "Record", "Batch", "WsolDataset", "collate", "IGNORE", "read_mask", "resize_mask", "rescale_boxes",
    "to_rgb",
]

IGNORE = 255


@dataclass
class Record:
    """One image's annotation, as read from a dataset's metadata (original pixel space)."""

    image_id: str
    label: int
    boxes: np.ndarray  # float64 [K, 4] x0, y0, x1, y1; K may be 0 for mask-only datasets
    size: tuple[int, int] | None = None  # (width, height) from metadata, if the format has it
    mask_paths: tuple[str, ...] = ()
    ignore_path: str | None = None


@dataclass
class Batch:
    """A collated batch. ``boxes`` is padded to the largest box count; ``box_valid`` marks real boxes."""

    images: torch.Tensor  # uint8 [B, 3, S, S], channels-last in memory (the decoded rows as they are)
    labels: torch.Tensor  # int64 [B]
    boxes: torch.Tensor  # int64 [B, K, 4] in eval space
    box_valid: torch.Tensor  # bool [B, K]
    masks: torch.Tensor | None  # uint8 [B, S, S] or None
    ids: list[str]
    sizes: torch.Tensor  # int64 [B, 2] original (width, height)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (image id, reason) found at load
    size_mismatch: list[str] = field(default_factory=list)  # ids whose decoded size differs from the metadata's

    def __len__(self) -> int:
        return len(self.ids)


class BoxRescale(enum.StrEnum):
    """The floating-point order of a GT box's rescale: a corner whose exact scaled value is an integer can fall
    on either side of it, so each reference's order is kept."""

    wsoleval = "wsoleval"  # int(x * S / w): wsolevaluation's evaluation.py resize_bbox
    tscam = "tscam"  # int(x / w * S): TS-CAM's lib/datasets/cub.py and imagenet.py test loaders


def rescale_boxes(
    boxes: np.ndarray, size: tuple[int, int], image_size: int, order: BoxRescale | str = BoxRescale.wsoleval
) -> np.ndarray:
    """Boxes ``[K, 4]`` from original ``(w, h)`` pixels to the eval size ``S``, each coordinate truncated as
    ``int()`` does, computed in ``order`` (:class:`BoxRescale`) with float64 operations as the reference's."""
    w, h = size
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    extent = np.array([w, h, w, h], dtype=np.float64)
    if BoxRescale(order) is BoxRescale.wsoleval:
        scaled = boxes * float(image_size) / extent
    else:
        scaled = boxes / extent * float(image_size)
    return np.trunc(scaled).astype(np.int64)


class UnreadableMask(OSError):
    """A mask file that OpenCV cannot decode (a counted skip, ``unreadable_mask``)."""


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """A 2-D mask as bool ``[size, size]``: ``float32``, ``cv2.resize(..., INTER_NEAREST)``, then ``> 0.5``
    (wsolevaluation's ``load_mask_image`` and ``get_mask``)."""
    import cv2

    return cv2.resize(np.asarray(mask, dtype=np.float32), (size, size), interpolation=cv2.INTER_NEAREST) > 0.5


def read_mask(path: str, size: int) -> np.ndarray:
    """A mask file as bool ``[size, size]``, read as wsolevaluation reads it: ``cv2.imread(IMREAD_GRAYSCALE)``,
    then :func:`resize_mask`."""
    import cv2

    raw = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if raw is None:
        raise UnreadableMask(path)
    return resize_mask(raw, size)


def _check_boxes(boxes: np.ndarray, size: tuple[int, int] | None) -> tuple[np.ndarray, str | None, int]:
    """Validate boxes; returns (boxes clipped to the image, skip reason or None, number clipped)."""
    if boxes.size and not np.isfinite(boxes).all():
        return boxes, "invalid_box", 0
    if (boxes[:, 2] < boxes[:, 0]).any() or (boxes[:, 3] < boxes[:, 1]).any():
        return boxes, "inverted_box", 0
    if size is None or not boxes.size:
        return boxes, None, 0
    w, h = size
    if (boxes[:, 0] >= w).any() or (boxes[:, 1] >= h).any() or (boxes[:, 2] < 0).any() or (boxes[:, 3] < 0).any():
        return boxes, "box_outside_image", 0
    # x1 == w is legitimate (CUB's x + width); only coordinates beyond the image are clipped.
    clipped = np.clip(boxes, 0, [w, h, w, h]).astype(np.float64)
    n_clipped = int((clipped != boxes).any(axis=1).sum())
    return clipped, None, n_clipped


class WsolDataset(Dataset):
    """Images + labels + boxes (+ masks) from a list of :class:`Record`, with counted skips.

    Records that are unusable (an id that is not a relative path below the root, no box where boxes are
    required, inverted box, missing file, class id out of range) are dropped and counted in :attr:`skipped`:
    at construction, the class range last, or with ``num_classes=None`` later by :meth:`check_classes` (an
    evaluation starts loading images before its model is built). Images that cannot be decoded are reported
    per batch through :attr:`Batch.skipped`.
    """

    def __init__(
        self,
        records: Sequence[Record],
        image_root: str,
        *,
        image_size: int = 224,
        box_rescale: BoxRescale | str = BoxRescale.wsoleval,
        num_classes: int | None = 1000,
        mask_root: str | None = None,
        requires_boxes: bool = True,
        check_files: bool = True,
        name: str = "dataset",
    ) -> None:
        self.image_root = image_root
        self.mask_root = mask_root
        self.image_size = image_size
        self.box_rescale = BoxRescale(box_rescale)
        self.name = name
        self.skipped: Counter[str] = Counter()
        self.skipped_ids: list[tuple[str, str]] = []
        self._clipped: dict[str, int] = {}  # image id → its boxes clipped to the image
        self.has_masks = any(r.mask_paths for r in records)
        kept = []
        for record in records:
            reason = self._validate(record, requires_boxes, check_files)
            if reason is None:
                kept.append(record)
            else:
                self._skip(record, reason)
        self._usable = kept
        self.keep_first(None)
        self.image_cache: ImageCache | None = None
        self._check_usable()
        if num_classes is not None:
            self.check_classes(num_classes)

    @property
    def boxes_clipped(self) -> int:
        """Boxes of the usable records clipped to their image."""
        return sum(self._clipped.get(r.image_id, 0) for r in self._usable)

    def _skip(self, record: Record, reason: str) -> None:
        self.skipped[reason] += 1
        self.skipped_ids.append((record.image_id, reason))

    def _check_usable(self) -> None:
        if not self._usable:
            detail = ", ".join(f"{k}={v}" for k, v in self.skipped.items()) or "no records"
            raise WsolError(f"{self.name}: no usable images ({detail})")

    def check_classes(self, num_classes: int) -> bool:
        """Skip (and count as ``class_id_out_of_range``) the records whose label is not in ``[0, num_classes)``,
        the last check, made once the model says how many classes it has; whether any record was skipped."""
        outside = [r for r in self._usable if not 0 <= r.label < num_classes]
        for record in outside:
            self._skip(record, "class_id_out_of_range")
        if outside:
            self._usable = [r for r in self._usable if 0 <= r.label < num_classes]
            self._check_usable()
            self.keep_first(self.limit)
        return bool(outside)

    def _validate(self, record: Record, requires_boxes: bool, check_files: bool) -> str | None:
        if not is_safe_id(record.image_id):
            return "unsafe_id"
        if requires_boxes and len(record.boxes) == 0:
            return "no_boxes"
        boxes, reason, n_clipped = _check_boxes(np.asarray(record.boxes, dtype=np.float64).reshape(-1, 4), record.size)
        if reason:
            return reason
        record.boxes = boxes
        if n_clipped:
            self._clipped[record.image_id] = n_clipped
        if check_files and not os.path.isfile(self._image_path(record)):
            return "missing_file"
        return None

    @property
    def has_boxes(self) -> bool:
        """Whether any kept record has a GT box (box metrics and pointing games apply)."""
        return any(len(r.boxes) for r in self.records)

    def __len__(self) -> int:
        return len(self.records)

    def keep_first(self, count: int | None) -> None:
        """Evaluate only the first ``count`` usable records (``limit``); ``None`` keeps all."""
        self.limit = count
        self.records = self._usable if count is None else self._usable[:count]

    def _image_path(self, record: Record) -> str:
        return os.path.join(self.image_root, record.image_id)

    def load_image(self, record: Record) -> Image.Image:
        """The record's image as RGB (see :func:`to_rgb`)."""
        with Image.open(self._image_path(record)) as img:
            img.load()
            return to_rgb(img)

    def load_mask(self, record: Record) -> np.ndarray | None:
        """The union of the record's foreground masks at eval size, ignore pixels (in the ignore mask and not
        in the foreground) set to 255: wsolevaluation's ``get_mask``, each file read by :func:`read_mask`."""
        if not record.mask_paths:
            return None
        root = self.mask_root or ""
        fg = np.zeros((self.image_size, self.image_size), dtype=bool)
        for path in record.mask_paths:
            fg |= read_mask(os.path.join(root, path), self.image_size)
        mask = fg.astype(np.uint8)
        if record.ignore_path:
            mask[read_mask(os.path.join(root, record.ignore_path), self.image_size) & ~fg] = IGNORE
        return mask

    def use_image_cache(self, folder: str) -> ImageCache:
        """Keep decoded eval-size images in ``folder`` (see :mod:`wsol.data.cache`), keyed by the records
        (ids, labels and boxes: a generated set with another seed gets another key)."""
        identity = {
            "layout": 2,  # the sizes file holds decoded sizes
            "name": self.name,
            "root": os.path.abspath(self.image_root),
            "size": self.image_size,
            "records": [(r.image_id, r.label, np.round(r.boxes, 3).tolist()) for r in self.records],
        }
        self.image_cache = ImageCache(folder, identity, len(self.records), self.image_size)
        return self.image_cache

    def _eval_image(self, index: int, record: Record) -> tuple[np.ndarray, tuple[int, int]]:
        """The record's image at eval size, ``uint8 [S, S, 3]``, and its decoded ``(width, height)``."""
        cached = self.image_cache.get(index) if self.image_cache is not None else None
        if cached is not None:
            return cached
        image = self.load_image(record)
        resized = np.asarray(image.resize((self.image_size, self.image_size), Image.BILINEAR)).copy()
        if self.image_cache is not None:
            self.image_cache.put(index, resized, image.size)
        return resized, image.size

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        try:
            mask = self.load_mask(record)
        except UnreadableMask:
            return {"id": record.image_id, "skip": "unreadable_mask"}
        try:
            resized, decoded = self._eval_image(index, record)
        except Image.DecompressionBombError:  # more pixels than PIL's MAX_IMAGE_PIXELS allows twice over
            return {"id": record.image_id, "skip": "decompression_bomb"}
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
            return {"id": record.image_id, "skip": "unreadable_image"}
        size = record.size or decoded  # the metadata's size wins, as in the reference; a mismatch is counted
        return {
            "id": record.image_id,
            "image": torch.from_numpy(resized).permute(2, 0, 1),
            "label": record.label,
            "boxes": torch.from_numpy(rescale_boxes(record.boxes, size, self.image_size, self.box_rescale)),
            "mask": None if mask is None else torch.from_numpy(mask),
            "size": size,
            "size_mismatch": tuple(size) != tuple(decoded),
        }


_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL image as 8-bit RGB: grayscale, palette, CMYK and RGBA are converted; 16-bit (and 32-bit integer)
    grayscale is scaled to 8 bits (``round(v / 257)``, clipped to [0, 255]) instead of PIL's clipping, which
    turns most 16-bit images white; palette images with transparency go through RGBA, which gives the same RGB
    without PIL's warning."""
    if image.mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image, dtype=np.float64)
        return Image.fromarray(np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8), "L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def _stack_channels_last(images: list[torch.Tensor]) -> torch.Tensor:
    """``[B, 3, H, W]`` from ``[3, H, W]`` views of decoded ``[H, W, 3]`` rows, stored channels-last: the rows are
    copied as they are, and a channels-last model takes them without a transposition."""
    if not images:
        return torch.zeros(0, 3, 1, 1, dtype=torch.uint8)
    return torch.stack([image.permute(1, 2, 0) for image in images]).permute(0, 3, 1, 2)


def collate(samples: list[dict]) -> Batch:
    """Stack samples into a :class:`Batch`, padding boxes and passing skipped samples through."""
    skipped = [(s["id"], s["skip"]) for s in samples if "skip" in s]
    samples = [s for s in samples if "skip" not in s]
    k = max((len(s["boxes"]) for s in samples), default=0)
    boxes = torch.zeros(len(samples), max(k, 1), 4, dtype=torch.int64)
    valid = torch.zeros(len(samples), max(k, 1), dtype=torch.bool)
    for i, s in enumerate(samples):
        boxes[i, : len(s["boxes"])] = s["boxes"]
        valid[i, : len(s["boxes"])] = True
    has_mask = bool(samples) and samples[0]["mask"] is not None
    return Batch(
        images=_stack_channels_last([s["image"] for s in samples]),
        labels=torch.tensor([s["label"] for s in samples], dtype=torch.int64),
        boxes=boxes,
        box_valid=valid,
        masks=torch.stack([s["mask"] for s in samples]) if has_mask else None,
        ids=[s["id"] for s in samples],
        sizes=torch.tensor([list(s["size"]) for s in samples], dtype=torch.int64).reshape(-1, 2),
        skipped=skipped,
        size_mismatch=[s["id"] for s in samples if s.get("size_mismatch")],
    )


def require_dir(path: str | None, what: str) -> str:
    """``path`` if it is an existing directory, else a one-line :class:`WsolError` naming the key ``what``."""
    if not path:
        raise WsolError(f"{what} is not set (pass {what}=/path/to/folder)")
    path = os.path.expanduser(str(path))
    if not os.path.isdir(path):
        raise WsolError(f"{what} does not exist: {path}")
    return path


def require_file(path: str, what: str) -> str:
    if not os.path.isfile(path):
        raise WsolError(f"{what} not found: {path}")
    return path
