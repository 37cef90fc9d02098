"""Bootstrap over images: resampling weights, weighted sums, percentile intervals, paired comparisons.

A resample draws ``n`` images with replacement from the ``n`` evaluated ones; what a metric needs from
a resample is how often it drew each image, its weight. Every metric here is a function of per-image
sums (hits per threshold, histogram counts, pointing hits and energies), so a resample's sums are a
product ``weights @ per_image``: all resamples at once, in chunks of images, exactly (float32 holds
integer sums below 2^24 exactly, and a resample's weights sum to ``n``). The weights depend only on
``n``, the resample count and the seed, so every run on the same images draws the same resamples: two
runs' resampled metrics are paired, image for image.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["LEVEL", "resample_weights", "weighted_sums", "percentile_interval", "tied_with", "images_key"]

LEVEL = 95.0  # the intervals' confidence level, in percent
_CHUNK = 4096  # images per matrix product: [R, 4096] weights at a time


def resample_weights(n: int, resamples: int, seed: int = 0) -> np.ndarray:
    """``[R, n]`` uint8: how often resample ``r`` drew image ``i``; the draws are
    ``numpy.random.default_rng(seed).integers(0, n, size=n)`` for each resample in turn."""
    rng = np.random.default_rng(seed)
    weights = np.zeros((resamples, n), dtype=np.uint8)
    for r in range(resamples):
        counts = np.bincount(rng.integers(0, n, size=n), minlength=n)
        if counts.max(initial=0) > 255:  # a draw of one image 256 times in n: never in practice
            raise ValueError("a resample drew one image more than 255 times")
        weights[r] = counts
    return weights


def weighted_sums(weights: np.ndarray, per_image: Iterable[np.ndarray]) -> np.ndarray:
    """``[R, K]`` float64: ``weights [R, n] @ per_image [n, K]``, ``per_image`` given as consecutive row blocks
    (batches, in image order) of numbers or bools."""
    total = None
    start, pending = 0, []

    def flush() -> None:
        nonlocal total, start, pending
        if not pending:
            return
        block = np.concatenate(pending).astype(np.float32, copy=False)
        part = weights[:, start:start + len(block)].astype(np.float32) @ block
        total = part.astype(np.float64) if total is None else total + part
        start, pending = start + len(block), []

    for rows in per_image:
        pending.append(np.asarray(rows).reshape(len(rows), -1))
        if sum(len(p) for p in pending) >= _CHUNK:
            flush()
    flush()
    if start != weights.shape[1]:
        raise ValueError(f"weights cover {weights.shape[1]} images, the blocks {start}")
    return total


def percentile_interval(samples: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The percentile interval ``[q_(100-level)/2, q_(100+level)/2]`` of a metric's resampled values
    (``numpy.percentile``, linear interpolation)."""
    tail = (100.0 - level) / 2
    lo, hi = np.percentile(np.asarray(samples, dtype=np.float64), [tail, 100.0 - tail])
    return float(lo), float(hi)


def tied_with(best: np.ndarray, other: np.ndarray, level: float = LEVEL) -> bool:
    """Whether ``other`` is not significantly different from ``best``: the percentile interval of the paired
    difference ``best − other`` over the same resamples contains 0."""
    lo, hi = percentile_interval(np.asarray(best) - np.asarray(other), level)
    return lo <= 0.0 <= hi


def images_key(ids: Iterable[str]) -> str:
    """A short hash of the evaluated image ids in order: runs with equal keys were resampled identically."""
    import hashlib

    digest = hashlib.sha256()
    for image_id in ids:
        digest.update(str(image_id).encode() + b"\0")
    return digest.hexdigest()[:16]
