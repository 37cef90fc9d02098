"""Pointing games.

Pointing game (Zhang et al., *Top-down Neural Attention by Excitation Backprop*, ECCV 2016; the
TorchRay benchmark's convention): a hit when the map's maximum lies within ``tolerance`` pixels
(Euclidean) of a GT box; the maximum is the first in row-major order, and a flat map (no
maximum) is a miss. Energy-based pointing game (Wang et al., *Score-CAM*, CVPRW 2020): the share
of the map's total mass that falls inside the union of the GT boxes (0 for a flat map).
Both are computed on the normalised map at the eval size, with inclusive box coordinates.
"""

from __future__ import annotations

import math

import numpy as np

from .bootstrap import weighted_sums

__all__ = ["PointingAccumulator", "max_location", "point_box_distance", "box_union_mask"]


def max_location(maps: np.ndarray) -> np.ndarray:
    """``[B, 2]`` (x, y) of each map's first maximum in row-major order."""
    flat = maps.reshape(len(maps), -1)
    index = flat.argmax(axis=1)  # numpy returns the first occurrence
    return np.stack([index % maps.shape[2], index // maps.shape[2]], axis=1)


def point_box_distance(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Euclidean distance ``[B, K]`` from points ``[B, 2]`` to boxes ``[B, K, 4]`` (0 inside)."""
    x, y = points[:, None, 0], points[:, None, 1]
    dx = np.maximum.reduce([boxes[..., 0] - x, np.zeros_like(boxes[..., 0]), x - boxes[..., 2]])
    dy = np.maximum.reduce([boxes[..., 1] - y, np.zeros_like(boxes[..., 1]), y - boxes[..., 3]])
    return np.hypot(dx, dy)


def box_union_mask(boxes: np.ndarray, valid: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bool ``[B, H, W]``: pixels inside any valid box (inclusive coordinates)."""
    h, w = size
    ys, xs = np.arange(h)[None, None, :, None], np.arange(w)[None, None, None, :]
    b = boxes[..., None, None]
    inside = (xs >= b[:, :, 0]) & (xs <= b[:, :, 2]) & (ys >= b[:, :, 1]) & (ys <= b[:, :, 3])
    return (inside & valid[:, :, None, None]).any(axis=1)


class PointingAccumulator:
    """Pointing-game hits and energy sums; merge by summing."""

    def __init__(self, tolerance: float = 15.0) -> None:
        self.tolerance = float(tolerance)
        self.hit: list[bool] = []  # per image
        self.energies: list[float] = []  # per image, summed with math.fsum: exact in any merge order

    @property
    def hits(self) -> int:
        return sum(self.hit)

    @property
    def count(self) -> int:
        return len(self.energies)

    def update(self, maps: np.ndarray, flat: np.ndarray, boxes: np.ndarray, valid: np.ndarray) -> None:
        """Maps ``[B, H, W]`` (normalised), ``flat [B]``, GT boxes ``[B, K, 4]`` with ``valid [B, K]``."""
        distance = point_box_distance(max_location(maps), boxes)
        hit = ((distance <= self.tolerance) & valid).any(axis=1) & ~flat
        inside = box_union_mask(boxes, valid, maps.shape[1:])
        total = maps.reshape(len(maps), -1).sum(axis=1, dtype=np.float64)
        mass = (maps * inside).reshape(len(maps), -1).sum(axis=1, dtype=np.float64)
        share = np.where(total > 0, mass / np.where(total > 0, total, 1), 0.0)
        self.hit.extend(bool(v) for v in hit)
        self.energies.extend(float(v) for v in share)

    def merge(self, other: PointingAccumulator) -> None:
        self.hit.extend(other.hit)
        self.energies.extend(other.energies)

    def compute(self) -> dict[str, float]:
        n = max(self.count, 1)
        return {"pointing_game": 100.0 * self.hits / n, "energy_pointing_game": 100.0 * math.fsum(self.energies) / n}

    def bootstrap(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        """Both games for each resample (``weights [R, n]``)."""
        sums = weighted_sums(weights, [np.stack([np.array(self.hit, bool), np.array(self.energies)], axis=1)])
        n = self.count
        return {"pointing_game": 100.0 * sums[:, 0] / n, "energy_pointing_game": 100.0 * sums[:, 1] / n}
