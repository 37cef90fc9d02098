"""Classification accuracy."""

from __future__ import annotations

import torch

__all__ = ["topk_correct"]


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Bool ``[B]``: the label is among the ``k`` highest logits (``k`` capped at the class count)."""
    k = min(k, logits.shape[1])
    return (logits.topk(k, dim=1).indices == labels[:, None]).any(1)
