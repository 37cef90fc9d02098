"""LeGrad — Bousselham et al., "LeGrad: An Explainability Method for Vision Transformers via Feature Formation
Sensitivity", ICCV 2025 (arXiv 2404.03214).

Each chosen transformer block ``l`` is read out as if it were the last: its tokens, pooled, pass through the
model's final norm and head, giving scores ``s^l``; the map is the gradient of the target class's ``s^l``
with respect to that block's post-softmax attention probabilities ``A^l`` ``[B, heads, queries, keys]``,
``ReLU(∂s^l_c / ∂A^l)`` averaged over heads and queries, its prefix keys (class token, registers) dropped,
then averaged over the blocks (Eqs. 4–6). Attention values are not multiplied in.

Conventions, as the authors' code (WalBouss/LeGrad, ``compute_legrad_clip``) and torchcam 0.5.0's ``LeGrad``:
the pooled token is the mean of *all* tokens, class token included (``pool=mean``; ``pool=token`` reads the
class token, as the classifier itself does); the norm comes after the pooling; the queries averaged include the
prefix tokens. ``blocks`` (default 2, the authors' ``layer_index=-2``) counts the blocks read, ending with the
block of ``model.layer`` (a block, or a layer inside one such as the default ``blocks.11.norm1``); a list of
layers reads their blocks.

Each block's input is detached (a fresh leaf), so ``s^l`` reaches no other block's attention and one backward
pass gives every block's gradient; the layers before the first block run without autograd.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import WsolError
from ..models import find_layer
from ..schema import Range
from . import METHODS
from .core import CamMethod, CamOutput, resize_maps, target_scores
from .layout import token_grid

__all__ = ["LeGrad", "attention_of", "attention_probabilities", "transformer_blocks", "vit_readout"]


def _is_attention(module: nn.Module) -> bool:
    """``nn.MultiheadAttention``, or timm's attention (a ``fused_attn`` switch and the ``attn_drop`` its
    probabilities pass through)."""
    return isinstance(module, nn.MultiheadAttention) or (
        hasattr(module, "fused_attn") and isinstance(getattr(module, "attn_drop", None), nn.Module))


def attention_of(block: nn.Module) -> str | None:
    """The name (within ``block``) of the block's one self-attention, ``""`` for the block itself; ``None``
    when it has none or several."""
    found = [name for name, m in block.named_modules() if _is_attention(m)]
    return found[0] if len(found) == 1 else None


def transformer_blocks(model: nn.Module, layers: list[str], count: int = 2) -> list[str]:
    """The blocks LeGrad reads for ``layers``: each layer's block (the layer, or its nearest ancestor, holding
    one self-attention, the attention itself excluded, so that :meth:`LeGrad.target_layers`' list gives its
    blocks back); for one layer, that block and the ``count − 1`` sibling blocks before it."""
    modules = dict(model.named_modules())
    blocks = []
    for layer in layers:
        find_layer(model, layer)  # an unknown name: the error with close names
        parts = layer.split(".")
        block = next((name for name in (".".join(parts[:i]) for i in range(len(parts), 0, -1))
                      if not _is_attention(modules[name]) and attention_of(modules[name]) is not None), None)
        if block is None:
            raise WsolError(f"legrad reads transformer blocks' attention: {layer!r} is not in a block with one "
                            "self-attention (nn.MultiheadAttention or timm's Attention)")
        if block not in blocks:
            blocks.append(block)
    if len(layers) == 1 and count > 1:
        parent = blocks[0].rpartition(".")[0]
        children = (modules[parent] if parent else model).named_children()
        siblings = [f"{parent}.{n}" if parent else n for n, _ in children]
        before = [s for s in siblings[: siblings.index(blocks[0])] if attention_of(modules[s]) is not None]
        blocks = before[max(0, len(before) - (count - 1)):] + blocks
    return blocks


def vit_readout(model: nn.Module):
    """``pooled [B, C] → logits``: the final norm and head of a torchvision or timm ``VisionTransformer`` inside
    ``model``; ``None`` when there is none."""
    for m in model.modules():
        encoder, heads = getattr(m, "encoder", None), getattr(m, "heads", None)
        if isinstance(getattr(encoder, "ln", None), nn.Module) and isinstance(heads, nn.Module):  # torchvision
            return lambda pooled, m=m: m.heads(m.encoder.ln(pooled))
        if all(isinstance(getattr(m, a, None), nn.Module) for a in ("blocks", "norm", "head")):  # timm
            if getattr(m, "attn_pool", None) is not None:
                raise WsolError("legrad reads a pooled token through the head; this model pools by attention "
                                "(global_pool='map'), which it does not support")
            parts = [m.norm] + [getattr(m, a) for a in ("fc_norm", "head_drop") if isinstance(getattr(m, a, None),
                                                                                               nn.Module)] + [m.head]
            return lambda pooled, parts=parts: _chain(parts, pooled)
    return None


def _chain(modules, x):
    for module in modules:
        x = module(x)
    return x


@contextlib.contextmanager
def attention_probabilities(attention: nn.Module) -> Iterator[dict]:
    """While the block runs, ``store["probabilities"]``: ``attention``'s post-softmax probabilities
    ``[B, heads, queries, keys]``, on the graph of what the block outputs. timm's attention runs its unfused
    path for the block; ``nn.MultiheadAttention`` is asked for its per-head weights, and its output rebuilt
    from them (``out_proj(A · V)``), since the weights it returns are a copy its output does not use."""
    store: dict = {}
    if not isinstance(attention, nn.MultiheadAttention):
        fused, attention.fused_attn = attention.fused_attn, False
        handle = attention.attn_drop.register_forward_hook(lambda _m, _i, out: store.__setitem__("probabilities", out))
        try:
            yield store
        finally:
            handle.remove()
            attention.fused_attn = fused
        return
    if attention.in_proj_weight is None or attention.bias_k is not None or attention.add_zero_attn:
        raise WsolError("legrad needs an nn.MultiheadAttention with one in_proj_weight and no added key/value tokens")

    def ask_for_weights(_module, args, kwargs):
        args, kwargs = list(args), dict(kwargs)
        for position, key, value in ((4, "need_weights", True), (6, "average_attn_weights", False)):
            store[key] = args[position] if len(args) > position else kwargs.get(key, True)
            if len(args) > position:
                args[position] = value
            else:
                kwargs[key] = value
        return tuple(args), kwargs

    def rebuild(module, args, kwargs, output):
        weights = output[1]  # [B, heads, queries, keys]
        value = args[2] if len(args) > 2 else kwargs["value"]
        if not module.batch_first:
            value = value.transpose(0, 1)
        batch, keys, dim = value.shape
        bias = None if module.in_proj_bias is None else module.in_proj_bias[2 * dim:]
        v = F.linear(value, module.in_proj_weight[2 * dim:], bias).view(batch, keys, module.num_heads, -1)
        out = module.out_proj((weights @ v.transpose(1, 2)).transpose(1, 2).reshape(batch, weights.shape[2], dim))
        store["probabilities"] = weights
        returned = (weights.mean(1) if store["average_attn_weights"] else weights) if store["need_weights"] else None
        return (out if module.batch_first else out.transpose(0, 1)), returned

    handles = [attention.register_forward_pre_hook(ask_for_weights, with_kwargs=True),
               attention.register_forward_hook(rebuild, with_kwargs=True)]
    try:
        yield store
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def _block_tokens(block: nn.Module) -> Iterator[dict]:
    """While the model runs, ``store["tokens"]``: ``block``'s output ``[B, N, C]``, computed with autograd on from
    a detached copy of its input (so nothing before the block is on its graph)."""
    store: dict = {}

    def detach_input(_module, args):
        torch.set_grad_enabled(True)  # restored by the caller's grad-mode block
        return (args[0].detach().requires_grad_(True), *args[1:])

    def record(_module, _args, output):
        if not isinstance(output, torch.Tensor) or output.ndim != 3:
            raise WsolError(f"legrad reads blocks that output (B, tokens, C); this one gives "
                            f"{tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__}")
        store["tokens"] = output

    handles = [block.register_forward_pre_hook(detach_input), block.register_forward_hook(record)]
    try:
        yield store
    finally:
        for handle in handles:
            handle.remove()


@METHODS.register("legrad")
class LeGrad(CamMethod):
    weighs_activations = False

    def __init__(self, model, layer, *, blocks: Annotated[int, Range(1)] = 2,
                 pool: Literal["mean", "token"] = "mean", **kwargs) -> None:
        if pool not in ("mean", "token"):
            raise WsolError(f"method.pool must be mean or token, got {pool!r}")
        names = transformer_blocks(model, [layer] if isinstance(layer, str) else list(layer), int(blocks))
        super().__init__(model, names, **kwargs)
        self.attentions = [block.get_submodule(attention_of(block)) for block in self.layers]
        self.pool = pool
        self._readout = vit_readout(model)
        if self._readout is None and type(self).readout is LeGrad.readout:
            raise WsolError("legrad reads blocks through a VisionTransformer's final norm and head (torchvision, "
                            "timm); for another model subclass wsol.cams.legrad.LeGrad and override readout")

    @classmethod
    def target_layers(cls, model, layers, input_size: int = 224, blocks: int = 2, **options) -> list[str]:
        """The blocks and their attention modules (kept eager under ``speed.compile``, where the hooks sit)."""
        names = transformer_blocks(model, list(layers), int(blocks))
        modules = dict(model.named_modules())
        inner = [f"{b}.{a}" if a else b for b in names for a in [attention_of(modules[b])]]
        drops = [f"{n}.attn_drop" for n in inner if not isinstance(modules[n], nn.MultiheadAttention)]
        return list(dict.fromkeys(names + inner + drops))

    def readout(self, pooled: torch.Tensor) -> torch.Tensor:
        """A block's pooled token ``[B, C]`` as logits, through the model's final norm and head; override it for
        a model that is not a torchvision or timm ``VisionTransformer``."""
        return self._readout(pooled)

    def one_pass(self, images, targets_from) -> CamOutput:
        hw = tuple(images.shape[-2:])
        with contextlib.ExitStack() as stack, torch.set_grad_enabled(False):
            outputs = [stack.enter_context(_block_tokens(block)) for block in self.layers]
            probabilities = [stack.enter_context(attention_probabilities(a)) for a in self.attentions]
            logits = self.model(images.detach())
            targets = targets_from(logits)
            if any("tokens" not in o or "probabilities" not in p for o, p in zip(outputs, probabilities, strict=True)):
                raise WsolError("a legrad block did not run in the forward pass; check model.layer")
            with torch.enable_grad():
                tokens = [o["tokens"] for o in outputs]
                pooled = [t.mean(1) if self.pool == "mean" else t[:, 0] for t in tokens]
                score = sum(target_scores(self.readout(p), targets).sum() for p in pooled)
                grads = torch.autograd.grad(score, [p["probabilities"] for p in probabilities])
        with torch.no_grad():
            maps = []
            for i, (t, g) in enumerate(zip(tokens, grads, strict=True)):
                layout = self._layout(i)(t)
                prefix, h, w = token_grid(g.shape[-1], hw, layout.prefix, layout.grid)
                relevance = g.float().clamp_min(0).mean((1, 2))[:, prefix:]  # heads, queries → [B, keys]
                maps.append(relevance.reshape(len(relevance), h, w))
            size = maps[-1].shape[-2:]
            fused = torch.stack([resize_maps(m, size) for m in maps]).mean(0)
        return CamOutput(fused, logits.detach(), targets)
