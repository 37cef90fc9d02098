"""Stage 3, maps: a method's low-resolution maps → eval-size maps in ``[0, 1]`` → ``uint8``.

Conventions (wsolevaluation's; see docs/protocols.md):
- a map is upsampled to the eval size (bicubic, ``align_corners=False``) and min-max normalised per
  image; a flat or non-finite map becomes all zeros (and is counted). ``normalize="before_resize"``
  gives pytorch-grad-cam's post-processing instead (min-max at the map's resolution, upsampling, min-max);
- a map is quantised to ``uint8`` as ``int(map * 255)``: the cut levels of stage 4 are read off it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .ops import minmax_normalize

__all__ = ["RESIZE_MODES", "NORMALIZE_ORDERS", "upsample", "eval_maps", "quantize"]

RESIZE_MODES = ("bicubic", "bilinear", "nearest")
NORMALIZE_ORDERS = ("after_resize", "before_resize")


def upsample(maps: torch.Tensor, size: int, mode: str = "bicubic") -> torch.Tensor:
    """``[B, h, w]`` → ``[B, size, size]`` (``mode`` one of :data:`RESIZE_MODES`, ``align_corners=False``); maps
    already at ``size`` pass unchanged."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode must be one of {RESIZE_MODES}, got {mode!r}")  # the config checks it first
    if maps.shape[-2:] == (size, size):
        return maps.float()
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    return F.interpolate(maps[:, None].float(), size=(size, size), mode=mode, **kwargs)[:, 0]


def eval_maps(
    maps: torch.Tensor, size: int, resize: str = "bicubic", normalize: str = "after_resize"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Maps ``[B, h, w]`` at the eval size in ``[0, 1]``, and which were flat ``[B]``.

    ``after_resize`` (wsolevaluation's ``inference.py``): upsample, then min-max (:func:`minmax_normalize`).
    ``before_resize`` (pytorch-grad-cam's post-processing of one layer's map, ``BaseCAM.compute_cam_per_layer``
    and ``aggregate_multi_layers``): ``scale_cam_image``, i.e. ``(M − min) / (max − min + 1e-7)`` at the map's
    own resolution, then upsampled (its ``cv2.resize`` is bilinear), then ``max(·, 0)`` and ``scale_cam_image``
    once more at the eval size: ``(U − min) / (1e-7 + max(U − min))``.
    """
    if normalize == "after_resize":
        return minmax_normalize(upsample(maps, size, resize))
    if normalize != "before_resize":
        raise ValueError(f"normalize must be one of {NORMALIZE_ORDERS}, got {normalize!r}")  # the config checks it
    lo, hi = maps.amin((1, 2), keepdim=True), maps.amax((1, 2), keepdim=True)
    flat = (~torch.isfinite(hi - lo) | (hi - lo <= 0)).flatten()
    scaled = torch.where(flat[:, None, None], torch.zeros_like(maps), (maps - lo) / (hi - lo + 1e-7))
    up = upsample(scaled, size, resize).clamp(min=0)
    up = up - up.amin((1, 2), keepdim=True)
    return (up / (1e-7 + up.amax((1, 2), keepdim=True))).clamp(0, 1), flat


def quantize(maps: torch.Tensor) -> torch.Tensor:
    """``[0, 1]`` maps → ``uint8`` by truncation, ``int(map * 255)`` (numpy's ``astype(uint8)``)."""
    return (maps * 255).to(torch.uint8)
