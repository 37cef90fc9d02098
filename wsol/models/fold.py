"""Folding eval-mode batch norms into the convolutions that feed them (``speed.fold_batchnorm``).

In eval mode a batch norm is an affine map per channel, ``y = γ (x − μ) / √(σ² + ε) + β``. When its
input is a convolution's output and nothing else reads that output, the two are one convolution with

    W' = W · s,   b' = (b − μ) · s + β,   s = γ / √(σ² + ε)   (per output channel),

and the batch norm becomes an identity: one pass over the activations less per pair, the same function
up to float rounding (``torch.nn.utils.fusion.fuse_conv_bn_weights`` computes ``W'`` and ``b'``).

Which pairs qualify is read from the model's own dataflow, not from its class: one forward of a small
input records, for every convolution, the autograd node of its output, and for every batch norm the
node of its input. A pair qualifies when the batch norm's input *is* that node (an in-place op or a view
in between gives another node), the node feeds exactly one operation in the whole graph, and each
module runs once per forward. Only the exact ``Conv{1,2,3}d`` and ``BatchNorm{1,2,3}d`` classes are
folded: a subclass may do more in its forward (weight standardisation, an activation inside the norm).
Modules named in ``keep`` (the target layers: their outputs are what the CAM reads) and modules with
hooks are left as they are, and so are batch norms in training mode.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

__all__ = ["fold_batchnorms", "foldable_pairs"]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _has_hooks(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
                or getattr(module, "_backward_pre_hooks", None))


def _tensors(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


def _consumers(outputs: list[torch.Tensor]) -> dict[object, int]:
    """How many autograd nodes take each node's result as an input, over the graph behind ``outputs``."""
    counts: dict[object, int] = {}
    stack = [t.grad_fn for t in outputs if t.grad_fn is not None]
    seen = set(stack)
    while stack:
        node = stack.pop()
        for child, _ in node.next_functions:
            if child is None:
                continue
            counts[child] = counts.get(child, 0) + 1
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return counts


def foldable_pairs(module: nn.Module, example: torch.Tensor, keep: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """``(convolution, batch norm)`` names of ``module`` that :func:`fold_batchnorms` may merge, read from one
    forward of ``example`` (module docstring)."""
    keep_set = set(keep)
    convs = {m: n for n, m in module.named_modules() if type(m) in _CONVS and n not in keep_set and not _has_hooks(m)}
    norms = {
        m: n for n, m in module.named_modules()
        if type(m) in _NORMS and n not in keep_set and not _has_hooks(m) and m.running_mean is not None
        and not m.training  # a training-mode norm normalises by the batch's statistics
    }
    calls: dict[nn.Module, int] = {}
    produced: dict[object, nn.Module] = {}  # a convolution's output node → the convolution
    fed: dict[nn.Module, object] = {}  # a batch norm → its input's node

    def after_conv(conv: nn.Module, _inputs, output) -> None:
        calls[conv] = calls.get(conv, 0) + 1
        if isinstance(output, torch.Tensor) and output.grad_fn is not None:
            produced[output.grad_fn] = conv

    def before_norm(norm: nn.Module, inputs) -> None:
        calls[norm] = calls.get(norm, 0) + 1
        if inputs and isinstance(inputs[0], torch.Tensor):
            fed[norm] = inputs[0].grad_fn

    handles = [m.register_forward_hook(after_conv) for m in convs]
    handles += [m.register_forward_pre_hook(before_norm) for m in norms]
    was_training = module.training
    try:
        module.eval()
        with torch.enable_grad():
            outputs = _tensors(module(example.detach().requires_grad_(True)))
    finally:
        module.train(was_training)
        for handle in handles:
            handle.remove()
    consumers = _consumers(outputs)
    pairs = []
    for norm, node in fed.items():
        conv = produced.get(node)
        if conv is None or calls[conv] != 1 or calls[norm] != 1 or consumers.get(node, 0) != 1:
            continue
        if conv.transposed or norm.num_features != conv.out_channels:
            continue
        pairs.append((convs[conv], norms[norm]))
    return pairs


def _replace(module: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(module.get_submodule(parent_name) if parent_name else module, child, new)


@torch.no_grad()
def fold_batchnorms(module: nn.Module, example: torch.Tensor, keep: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """Fold every qualifying eval-mode batch norm of ``module`` into its convolution, in place: the convolution
    gets ``W'`` and ``b'``, the batch norm is replaced by ``nn.Identity`` (names stay). Returns the folded
    ``(convolution, batch norm)`` names."""
    pairs = foldable_pairs(module, example, keep)
    for conv_name, norm_name in pairs:
        conv, norm = module.get_submodule(conv_name), module.get_submodule(norm_name)
        weight, bias = fuse_conv_bn_weights(conv.weight, conv.bias, norm.running_mean, norm.running_var, norm.eps,
                                            norm.weight, norm.bias)
        conv.weight, conv.bias = weight, bias
        _replace(module, norm_name, nn.Identity())
    return pairs
