"""Faithfulness of a map to its model: how the class score responds when the image is masked by the map.

Opt-in (``eval.faithfulness=[...]``), per image, on the eval-size maps (min-max normalised, as localized),
with the class each map explains. ``Y`` is the class score of the image, ``score``: ``softmax`` (the
probability, as the papers) or ``logit``. All perturbed copies of a batch go through the model together,
``chunk`` inputs per forward.

- ``average_drop`` (Chattopadhay et al., *Grad-CAM++*, WACV 2018, eq. 9): ``max(0, Y − O) / Y`` in percent,
  ``O`` the score of the explanation map ``E = map ⊙ image`` (``relative=false``: ``max(0, Y − O)``);
  lower is better.
- ``increase_in_confidence`` (same paper): the share of images with ``O > Y``, in percent.
- ``deletion`` / ``insertion`` (Petsiuk et al., *RISE*, BMVC 2018): pixels ranked by the map (highest
  first, raster order on ties); deletion replaces the first ``k`` by the baseline, insertion starts from
  the baseline and restores them; ``k`` runs over ``0, s, 2s, …`` and all ``P`` pixels with
  ``s = ceil(P / steps)``; the metric is the area under the score curve over the perturbed fraction
  (trapezoid), in percent of a constant score 1. Deletion: lower is better.

- ``road`` (Rong et al., *A Consistent and Efficient Evaluation Strategy for Attribution Methods*, ICML 2022,
  as pytorch-grad-cam's ``ROADCombined``): at each percentile ``p`` of ``road_percentiles`` the pixels at or
  above the map's ``p``-th percentile (MoRF) or at or below its ``(100 − p)``-th (LeRF) are removed and
  imputed from their neighbours (:func:`impute_linear`, plus ``road_noise`` · N(0, 1)); the metric is
  ``(mean_p ΔLeRF − mean_p ΔMoRF) / 2`` in percent, ``Δ`` the score change. Higher is better.

- ``average_gain`` (Zhang et al., *Opti-CAM*, 2023): ``max(0, O − Y) / (1 − Y)`` in percent, with softmax scores
  (a probability's headroom); higher is better.
- ``complexity`` (Poppi et al., *Revisiting the Evaluation of Class Activation Mapping for Explainability*,
  CVPRW 2021): the map's mean (its L1 norm over the pixels; maps are in [0, 1]); lower is better.
- ``coherency`` (same paper): ``(ρ(E', E) + 1) / 2``, ``ρ`` Pearson's correlation (``+ 1e-8`` on the product of
  the standard deviations, as pytorch-grad-cam's ``batch_pearson_coherency``) of the map ``E`` with the same
  method's map ``E'`` of the explanation input ``map ⊙ image`` for the same class; higher is better.
- ``adcc`` (same paper): the harmonic mean of coherency, ``1 − complexity`` and ``1 − average drop`` (relative),
  per image; ``arcc`` (pytorch-grad-cam 1.5.7's ``metrics/arcc.py``): the harmonic mean of coherency,
  ``1 − complexity`` and ``clip(2 · ROAD, 0, 1)`` — its docstring says geometric, its code computes the
  harmonic mean, which wsol follows. Both with pytorch-grad-cam's ``+ 1e-8`` on each term's denominator, in
  percent; higher is better.

``multiply``: ``normalized`` multiplies the normalised input tensor by the map (pytorch-grad-cam, torchcam);
``pixels`` the image's [0, 1] pixels before normalisation (the paper's ``L ∘ I``: masked pixels black).
``baseline``: ``zero`` (zeros of the normalised tensor: torchcam's default), ``black`` (pixels 0), ``blur``
(the image blurred with an 11×11 Gaussian, σ = 5: RISE's insertion start).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .ops import InputNormalization

__all__ = ["METRICS", "LOWER_IS_BETTER", "FaithfulnessOptions", "Faithfulness", "curve_counts",
           "trapezoid_auc", "perturbation_curves", "explanation_inputs", "impute_linear", "road_masks", "pearson",
           "harmonic_mean"]

METRICS = ("average_drop", "increase_in_confidence", "deletion", "insertion", "road", "average_gain", "complexity",
           "coherency", "adcc", "arcc")
LOWER_IS_BETTER = ("average_drop", "deletion", "complexity")
SCORES = ("softmax", "logit")
BASELINES = ("zero", "black", "blur")
MULTIPLY = ("normalized", "pixels")


@dataclass(frozen=True)
class FaithfulnessOptions:
    score: str = "softmax"
    steps: int = 20
    baseline: str = "zero"
    multiply: str = "normalized"
    relative: bool = True
    chunk: int = 64
    road_percentiles: tuple[int, ...] = (10, 20, 30, 40, 50, 60, 70, 80, 90)
    road_noise: float = 0.01


def curve_counts(pixels: int, steps: int) -> list[int]:
    """Perturbed pixel counts of a deletion / insertion curve: ``0, s, 2s, … < P`` and ``P``, ``s = ceil(P/steps)``."""
    step = math.ceil(pixels / steps)
    return [*range(0, pixels, step), pixels]


def trapezoid_auc(curves: torch.Tensor, counts: list[int], pixels: int) -> torch.Tensor:
    """Area under ``curves [B, K]`` over the perturbed fractions ``counts / pixels`` (trapezoid rule)."""
    fractions = torch.tensor(counts, dtype=torch.float64, device=curves.device) / pixels
    return torch.trapezoid(curves.double(), fractions, dim=1)


def _gaussian_blur(images: torch.Tensor, size: int = 11, sigma: float = 5.0) -> torch.Tensor:
    x = torch.arange(size, dtype=images.dtype, device=images.device) - (size - 1) / 2
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    c = images.shape[1]
    out = F.conv2d(F.pad(images, (size // 2,) * 4, mode="reflect"), kernel.view(1, 1, 1, -1).repeat(c, 1, 1, 1),
                   groups=c)
    return F.conv2d(out, kernel.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson's correlation ``[B]`` of ``a, b [B, ...]`` per image, ``cov / (σ_a σ_b + 1e-8)`` (sample moments, as
    pytorch-grad-cam's ``batch_pearson_coherency``; a flat map correlates 0)."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    n = a.shape[1] - 1
    cov = (a * b).sum(1) / n
    return cov / ((a.pow(2).sum(1) / n).sqrt() * (b.pow(2).sum(1) / n).sqrt() + 1e-8)


def harmonic_mean(*terms: torch.Tensor) -> torch.Tensor:
    """``k / Σ 1 / (t + 1e-8)`` of ``k`` terms (pytorch-grad-cam's ARCC; Poppi et al.'s ADCC)."""
    return len(terms) / sum(1 / (t + 1e-8) for t in terms)


def explanation_inputs(pixels: torch.Tensor, maps: torch.Tensor, mean, std, multiply: str) -> torch.Tensor:
    """The model inputs of the explanation maps ``E = map ⊙ image``: ``pixels [B, 3, H, W]`` in [0, 1]."""
    if multiply == "pixels":
        return (pixels * maps[:, None] - mean) / std
    return (pixels - mean) / std * maps[:, None]


class Faithfulness:
    """The per-image faithfulness metrics of a batch (module docstring).

    Args:
        model: the classifier (logits), on ``device``; mean, std: its input normalisation.
        metrics: names from :data:`METRICS`.
    """

    def __init__(self, model: torch.nn.Module, mean, std, device: torch.device, metrics, options=None) -> None:
        self.model, self.device, self.metrics = model, device, tuple(metrics)
        self.options = options or FaithfulnessOptions()
        self.normalize = InputNormalization(mean, std, device)

    @torch.no_grad()
    def class_scores(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Score ``[N]`` of class ``targets[i]`` for model inputs ``[N, 3, H, W]``, ``chunk`` inputs per forward."""
        out = []
        for start in range(0, len(inputs), self.options.chunk):
            logits = self.model(inputs[start : start + self.options.chunk]).float()
            if self.options.score == "softmax":
                logits = logits.softmax(dim=1)
            out.append(logits.gather(1, targets[start : start + self.options.chunk, None])[:, 0])
        return torch.cat(out) if out else torch.zeros(0, device=inputs.device)

    def baseline(self, pixels: torch.Tensor) -> torch.Tensor:
        """The baseline model inputs of ``pixels``."""
        if self.options.baseline == "zero":
            return torch.zeros_like(pixels)
        if self.options.baseline == "black":
            return self.normalize.inputs(torch.zeros_like(pixels))
        return self.normalize.inputs(_gaussian_blur(pixels))

    def __call__(self, images_u8: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor, seed: int = 0,
                 explain: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                 ) -> dict[str, torch.Tensor]:
        """Per-image values ``[B]`` (fractions, not percent) for uint8 images ``[B, 3, H, W]``, eval-size maps
        ``[B, H, W]`` in [0, 1] and target classes ``[B]``; ``seed``: ROAD's imputation noise; ``explain(inputs,
        targets)``: the method's eval-size maps of model inputs (coherency, ADCC, ARCC)."""
        pixels = self.normalize.pixels(images_u8)
        maps, targets = maps.to(self.device).float(), targets.to(self.device)
        inputs = self.normalize.inputs(pixels)
        y = self.class_scores(inputs, targets)
        wanted = set(self.metrics) | ({"average_drop", "complexity", "coherency"} if "adcc" in self.metrics else set())
        wanted |= {"road", "complexity", "coherency"} if "arcc" in self.metrics else set()
        out: dict[str, torch.Tensor] = {}
        if {"average_drop", "increase_in_confidence", "average_gain", "coherency"} & wanted:
            explained = explanation_inputs(pixels, maps, self.normalize.mean, self.normalize.std,
                                           self.options.multiply)
        if {"average_drop", "increase_in_confidence", "average_gain"} & wanted:
            o = self.class_scores(explained, targets)
            drop = (y - o).clamp(min=0)
            out["average_drop"] = drop / y if self.options.relative else drop
            out["increase_in_confidence"] = (o > y).double()
            out["average_gain"] = (o - y).clamp(min=0) / (1 - y)
        if "complexity" in wanted:
            out["complexity"] = maps.flatten(1).abs().double().mean(1)
        if "coherency" in wanted:
            if explain is None:
                raise ValueError("coherency, adcc and arcc need explain: the method's maps of the explanation inputs")
            out["coherency"] = (pearson(explain(explained, targets), maps) + 1) / 2
        if {"deletion", "insertion"} & set(self.metrics):
            deletion, insertion = perturbation_curves(self, inputs, self.baseline(pixels), maps, targets, y)
            counts = curve_counts(maps[0].numel(), self.options.steps)
            out["deletion"] = trapezoid_auc(deletion, counts, maps[0].numel())
            out["insertion"] = trapezoid_auc(insertion, counts, maps[0].numel())
        if "road" in wanted:
            out["road"] = road_scores(self, inputs, maps, targets, y, seed)
        if "adcc" in wanted:
            drop = out["average_drop"] if self.options.relative else out["average_drop"] / y
            out["adcc"] = harmonic_mean(out["coherency"], 1 - out["complexity"], 1 - drop.double())
        if "arcc" in wanted:
            road = (2 * out["road"]).clamp(0, 1)
            out["arcc"] = harmonic_mean(out["coherency"], 1 - out["complexity"], road)
        return {k: v.double() for k, v in out.items() if k in self.metrics}


def perturbation_curves(faith: Faithfulness, inputs: torch.Tensor, baseline: torch.Tensor, maps: torch.Tensor,
                        targets: torch.Tensor, original: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Deletion and insertion score curves ``[B, K]`` at :func:`curve_counts`; the original image's scores
    ``original`` are deletion's first point and insertion's last, the all-baseline input's the other ends."""
    b, pixels = len(inputs), maps[0].numel()
    counts = curve_counts(pixels, faith.options.steps)
    ranks = torch.argsort(torch.argsort(maps.reshape(b, -1), dim=1, descending=True, stable=True), dim=1)
    flat_inputs, flat_base = inputs.flatten(2), baseline.flatten(2)
    jobs = [(i, curve, k) for i in range(b) for curve in (0, 1) for k in range(1, len(counts) - 1)]
    jobs += [(i, 2, len(counts) - 1) for i in range(b)]  # all baseline: deletion's end, insertion's start
    deletion = original.new_empty((b, len(counts)), dtype=torch.float64)
    insertion = original.new_empty((b, len(counts)), dtype=torch.float64)
    deletion[:, 0], insertion[:, -1] = original, original
    step = faith.options.chunk
    for start in range(0, len(jobs), step):
        chunk = jobs[start : start + step]
        idx = torch.tensor([j[0] for j in chunk], device=inputs.device)
        count = torch.tensor([counts[j[2]] for j in chunk], device=inputs.device)
        first = ranks[idx] < count[:, None]  # [N, P]: the top-ranked pixels
        keep_original = torch.tensor([j[1] == 1 for j in chunk], device=inputs.device)[:, None] == first
        # deletion (0) and all-baseline (2): original where not among the first; insertion (1): where among them
        perturbed = torch.where(keep_original[:, None], flat_inputs[idx], flat_base[idx]).reshape(-1, *inputs.shape[1:])
        scores = faith.class_scores(perturbed, targets[idx]).double()
        curve = torch.tensor([j[1] for j in chunk], device=inputs.device)
        point = torch.tensor([j[2] for j in chunk], device=inputs.device)
        into_deletion, into_insertion = curve != 1, curve == 1
        deletion[idx[into_deletion], point[into_deletion]] = scores[into_deletion]
        insertion[idx[into_insertion], point[into_insertion]] = scores[into_insertion]
        ends = curve == 2
        insertion[idx[ends], torch.zeros_like(point[ends])] = scores[ends]
    return deletion, insertion


_NEIGHBOURS = torch.tensor([[1 / 12, 1 / 6, 1 / 12], [1 / 6, 0.0, 1 / 6], [1 / 12, 1 / 6, 1 / 12]])


def impute_linear(inputs: torch.Tensor, removed: torch.Tensor, tol: float = 1e-6, max_iter: int = 5000,
                  solver: str = "auto") -> torch.Tensor:
    """ROAD's linear imputation without noise: every removed pixel (``removed [N, H, W]``) becomes the weighted
    mean of its 8 neighbours (1/6 across an edge, 1/12 across a corner; neighbours outside the image left out),
    the kept pixels fixed: the sparse system of pytorch-grad-cam's ``NoisyLinearImputer``.

    ``solver``: ``direct`` factorises the whole batch's system at once (one block-diagonal sparse matrix, every
    channel a right-hand side; SciPy's SuperLU, as ``spsolve`` there), the fastest on a CPU; ``cg`` solves
    every image and channel by conjugate gradients on the device (``tol``: relative residual), as
    convolutions: ``S ⊙ u − W * u = W * known`` on the removed pixels, ``S`` the neighbour weights inside the
    image; ``auto``: ``direct`` on a CPU, ``cg`` on an accelerator."""
    if solver == "direct" or (solver == "auto" and inputs.device.type == "cpu"):
        return _impute_direct(inputs, removed)
    n, c, h, w = inputs.shape
    x = inputs.double()
    kernel = _NEIGHBOURS.to(x).view(1, 1, 3, 3).repeat(c, 1, 1, 1)

    def spread(t):
        return F.conv2d(t, kernel, padding=1, groups=c)

    m = removed[:, None].to(x).expand(n, c, h, w)
    s = spread(torch.ones_like(x))
    known = x * (1 - m)
    b = m * spread(known)

    def apply(u):
        return m * (s * u - spread(u))

    def dot(a, b_):
        return (a * b_).sum(dim=(2, 3), keepdim=True)

    u = torch.zeros_like(x)
    r = b.clone()
    p = r.clone()
    rs = dot(r, r)
    limit = (tol**2) * dot(b, b).clamp(min=1e-30)
    for _ in range(max_iter):
        if bool((rs <= limit).all()):
            break
        ap = apply(p)
        denom = dot(p, ap)
        alpha = torch.where(denom > 0, rs / denom.clamp(min=1e-300), torch.zeros_like(rs))
        u = u + alpha * p
        r = r - alpha * ap
        new = dot(r, r)
        p = r + torch.where(rs > 0, new / rs.clamp(min=1e-300), torch.zeros_like(rs)) * p
        rs = new
    return (known + m * u).to(inputs.dtype)


_OFFSETS = [(dy, dx, float(_NEIGHBOURS[dy + 1, dx + 1])) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]


def _impute_direct(inputs: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    """:func:`impute_linear` by sparse LU factorisations of block-diagonal systems (CPU): the batch split into one
    contiguous part per torch thread, the parts solved in parallel threads (SuperLU releases the GIL)."""
    parts = min(len(inputs), max(1, torch.get_num_threads()))
    if parts <= 1:
        return _solve_block(inputs, removed)
    from concurrent.futures import ThreadPoolExecutor

    bounds = [round(i * len(inputs) / parts) for i in range(parts + 1)]
    chunks = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    with ThreadPoolExecutor(parts) as pool:
        return torch.cat(list(pool.map(lambda s: _solve_block(inputs[s], removed[s]), chunks)))


def _solve_block(inputs: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    """One block-diagonal sparse system for the images of ``inputs``, every channel a right-hand side."""
    import numpy as np
    from scipy.sparse import csc_matrix
    from scipy.sparse.linalg import spsolve

    n, c, h, w = inputs.shape
    x = inputs.detach().double().cpu().numpy().transpose(0, 2, 3, 1).reshape(-1, c)  # [N·H·W, C]
    mask = removed.detach().cpu().numpy().reshape(-1).astype(bool)
    unknown = np.flatnonzero(mask)
    if not len(unknown):
        return inputs.clone()
    variable = np.full(mask.shape, -1, dtype=np.int64)
    variable[unknown] = np.arange(len(unknown))
    y, col = (unknown // w) % h, unknown % w
    diagonal, rhs = np.zeros(len(unknown)), np.zeros((len(unknown), c))
    rows, cols, values = [np.arange(len(unknown))], [np.arange(len(unknown))], []
    for dy, dx, weight in _OFFSETS:
        inside = (y + dy >= 0) & (y + dy < h) & (col + dx >= 0) & (col + dx < w)
        equation = np.flatnonzero(inside)
        neighbour = unknown[inside] + dy * w + dx  # the same image: the shifted pixel stays inside it
        diagonal[equation] += weight
        free = mask[neighbour]
        rows.append(equation[free])
        cols.append(variable[neighbour[free]])
        values.append(np.full(int(free.sum()), -weight))
        np.add.at(rhs, equation[~free], weight * x[neighbour[~free]])
    system = csc_matrix((np.concatenate([diagonal, *values]), (np.concatenate(rows), np.concatenate(cols))),
                        shape=(len(unknown), len(unknown)))
    # minimum degree on AᵀA: the fastest of SuperLU's orderings on these grids (measured: 1.5× COLAMD's)
    x[unknown] = spsolve(system, rhs, permc_spec="MMD_ATA").reshape(len(unknown), c)
    out = torch.from_numpy(x.reshape(n, h, w, c).transpose(0, 3, 1, 2).copy())
    return out.to(device=inputs.device, dtype=inputs.dtype)


def road_masks(maps: torch.Tensor, percentile: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The removed pixels ``[B, H, W]`` at ``percentile``: MoRF, the map at or above its ``percentile``-th
    percentile; LeRF, ``1 − map`` at or above its (numpy's linear-interpolation percentiles, as
    pytorch-grad-cam's ``RemoveMostRelevantFirst``)."""
    flat = maps.reshape(len(maps), -1).double()
    q = percentile / 100
    morf = flat >= torch.quantile(flat, q, dim=1, keepdim=True)
    lerf = (1 - flat) >= torch.quantile(1 - flat, q, dim=1, keepdim=True)
    return morf.reshape(maps.shape), lerf.reshape(maps.shape)


def road_scores(faith: Faithfulness, inputs: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor,
                original: torch.Tensor, seed: int) -> torch.Tensor:
    """``(mean_p ΔLeRF − mean_p ΔMoRF) / 2`` per image (module docstring), the imputations ``chunk`` at a time."""
    generator = torch.Generator(device=inputs.device).manual_seed(seed)
    jobs = [(p, kind) for p in faith.options.road_percentiles for kind in (0, 1)]  # 0: MoRF, 1: LeRF
    total = torch.zeros(len(inputs), dtype=torch.float64, device=inputs.device)
    per_job = max(1, faith.options.chunk // max(len(inputs), 1))
    for start in range(0, len(jobs), per_job):
        part = jobs[start : start + per_job]
        removed = torch.cat([road_masks(maps, p)[kind] for p, kind in part])
        batch = inputs.repeat(len(part), 1, 1, 1)
        imputed = impute_linear(batch, removed)
        noise = torch.randn(imputed.shape, generator=generator, device=inputs.device, dtype=imputed.dtype)
        imputed = imputed + faith.options.road_noise * noise * removed[:, None]
        change = faith.class_scores(imputed, targets.repeat(len(part))).double() - original.double().repeat(len(part))
        sign = torch.tensor([1.0 if kind == 1 else -1.0 for _, kind in part], dtype=torch.float64,
                            device=inputs.device).repeat_interleave(len(inputs))
        total += (sign * change).reshape(len(part), len(inputs)).sum(dim=0)
    return total / (2 * len(faith.options.road_percentiles))
