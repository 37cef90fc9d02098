"""Classification accuracy from the classifier's top-5 predictions."""

from __future__ import annotations

import numpy as np

__all__ = ["topk_correct"]


def topk_correct(topk: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Bool ``[B]``: the label is among the first ``k`` of each row's predictions ``topk [B, ≥k]`` (best first)."""
    return (np.asarray(topk)[:, :k] == np.asarray(labels)[:, None]).any(axis=1)
