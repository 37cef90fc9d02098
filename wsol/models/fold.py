"""Folding eval-mode batch norms into the convolutions that feed them (``speed.fold_batchnorm``).

In eval mode a batch norm is an affine map per channel, ``y = γ (x − μ) / √(σ² + ε) + β``. When its
input is a convolution's output and nothing else reads that output, the two are one convolution with

    W' = W · s,   b' = (b − μ) · s + β,   s = γ / √(σ² + ε)   (per output channel),

and the batch norm becomes an identity: one pass over the activations less per pair, the same function
up to float rounding (``torch.nn.utils.fusion.fuse_conv_bn_weights`` computes ``W'`` and ``b'``).

Which pairs qualify is read from the model's own dataflow, not from its class: one forward of an example
input records, for every convolution, the autograd node of its output, and for every batch norm the
node of its input. A pair qualifies when the batch norm's input *is* that node (an in-place op or a view
in between gives another node), the node feeds exactly one operation in the whole graph, and each
module runs once per forward. Norms must be exactly ``BatchNorm{1,2,3}d`` (a subclass may hold an
activation). Convolutions may be subclasses (TensorFlow-style "same" padding), since each fold is then
checked: the folded convolution, run on the input it saw in the trace, must give the batch norm's traced
output, or the fold is undone (a weight-standardised convolution fails this). Modules named in ``keep``
(the target layers: their outputs are what the CAM reads), modules with hooks or parametrized weights,
and batch norms in training mode are left as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.fusion import fuse_conv_bn_weights

__all__ = ["fold_batchnorms", "fold_example", "foldable_pairs"]

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


@dataclass
class _Pair:
    conv: str
    norm: str
    conv_input: torch.Tensor  # what the convolution saw in the trace
    norm_output: torch.Tensor  # what the batch norm gave


def _traced_pairs(module: nn.Module, example: torch.Tensor, keep: tuple[str, ...]) -> list[_Pair]:
    keep_set = set(keep)
    convs = {
        m: n for n, m in module.named_modules()
        if isinstance(m, _CONVS) and not m.transposed and n not in keep_set and not _has_hooks(m)
        and not parametrize.is_parametrized(m)
    }
    norms = {
        m: n for n, m in module.named_modules()
        if type(m) in _NORMS and n not in keep_set and not _has_hooks(m) and m.running_mean is not None
        and not m.training  # a training-mode norm normalises by the batch's statistics
    }
    if not norms:  # nothing to fold (a transformer, a ConvNeXt): no trace
        return []
    calls: dict[nn.Module, int] = {}
    produced: dict[object, nn.Module] = {}  # a convolution's output node → the convolution
    seen_input: dict[nn.Module, torch.Tensor] = {}
    fed: dict[nn.Module, object] = {}  # a batch norm → its input's node
    gave: dict[nn.Module, torch.Tensor] = {}

    def after_conv(conv: nn.Module, inputs, output) -> None:
        calls[conv] = calls.get(conv, 0) + 1
        if isinstance(output, torch.Tensor) and output.grad_fn is not None and inputs:
            produced[output.grad_fn], seen_input[conv] = conv, inputs[0].detach().clone()  # later ops may work in place

    def before_norm(norm: nn.Module, inputs) -> None:
        calls[norm] = calls.get(norm, 0) + 1
        if inputs and isinstance(inputs[0], torch.Tensor):
            fed[norm] = inputs[0].grad_fn

    def after_norm(norm: nn.Module, _inputs, output) -> None:
        gave[norm] = output.detach().clone()

    handles = [m.register_forward_hook(after_conv) for m in convs]
    handles += [m.register_forward_pre_hook(before_norm) for m in norms]
    handles += [m.register_forward_hook(after_norm) for m in norms]
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
        if norm.num_features != conv.out_channels:
            continue
        pairs.append(_Pair(convs[conv], norms[norm], seen_input[conv], gave[norm]))
    return pairs


def foldable_pairs(module: nn.Module, example: torch.Tensor, keep: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """``(convolution, batch norm)`` names of ``module`` whose dataflow allows a fold, read from one forward of
    ``example`` (module docstring); :func:`fold_batchnorms` still checks each fold's output."""
    return [(p.conv, p.norm) for p in _traced_pairs(module, example, keep)]


def _replace(module: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(module.get_submodule(parent_name) if parent_name else module, child, new)


@torch.no_grad()
def fold_example(size: int, device: torch.device) -> torch.Tensor:
    """The input a run checks its folds with: one seeded random ``[1, 3, size, size]`` image (the CLI and
    :func:`wsol.evaluate` fold alike, so their maps agree bit for bit)."""
    return torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)


def fold_batchnorms(module: nn.Module, example: torch.Tensor, keep: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """Fold every qualifying eval-mode batch norm of ``module`` into its convolution, in place: the convolution
    gets ``W'`` and ``b'``, the batch norm is replaced by ``nn.Identity`` (names stay). A fold whose convolution
    does not then reproduce the batch norm's traced output (to 1e-4 of its largest value) is undone. Returns
    the folded ``(convolution, batch norm)`` names. ``example``: an input like the real ones (random values
    make the check meaningful; zeros would test only the biases)."""
    folded = []
    for pair in _traced_pairs(module, example, keep):
        conv, norm = module.get_submodule(pair.conv), module.get_submodule(pair.norm)
        weight, bias = conv.weight, conv.bias
        conv.weight, conv.bias = fuse_conv_bn_weights(weight, bias, norm.running_mean, norm.running_var, norm.eps,
                                                      norm.weight, norm.bias)
        expected = pair.norm_output
        if not torch.allclose(conv(pair.conv_input), expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max())):
            conv.weight, conv.bias = weight, bias  # not a plain convolution of its weights: left as it was
            continue
        _replace(module, pair.norm, nn.Identity())
        folded.append((pair.conv, pair.norm))
    return folded
