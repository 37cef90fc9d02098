"""wsol's Poly-CAM against the authors' own code (aenglebert/polycam), run side by side.

The authors' repository carries no licence, so its code is not copied into wsol; clone it and point this
script at the checkout:

    git clone https://github.com/aenglebert/polycam /tmp/polycam
    python scripts/compare_polycam.py /tmp/polycam [--size 64 --images 2]

A seeded random VGG-11 (5 classes), the ends of its five resolution stages (``wsol.models.stage_layers``, the
layers the authors' own search finds for VGG), random images, one target each. Their classes take one image at
a time; their last (finest) map, upsampled to the input, is compared with wsol's map upsampled the same way:
Pearson r and the largest absolute difference (both maps are already in [0, 1]).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from wsol.cams import build_method  # noqa: E402
from wsol.models import stage_layers  # noqa: E402

VARIANTS = {"plus": "PCAMp", "minus": "PCAMm", "plusminus": "PCAMpm"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout", help="a clone of github.com/aenglebert/polycam")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--images", type=int, default=2)
    args = parser.parse_args(argv)
    sys.path.insert(0, args.checkout)
    import torchvision
    from polycam import polycam as authors

    warnings.filterwarnings("ignore")  # their implicit-dim softmax
    torch.manual_seed(0)
    net = torchvision.models.vgg11(num_classes=5).eval()
    x = torch.randn(args.images, 3, args.size, args.size)
    labels = torch.arange(args.images) % 5
    layers = stage_layers(net, "features.19", 5, args.size)
    print(f"VGG-11 (random, seed 0), layers {', '.join(layers)}, {args.images} images at {args.size}²\n")
    print("| variant | worst r | max \\|Δ\\| |\n| --- | ---: | ---: |")
    for variant, name in VARIANTS.items():
        ours = build_method("polycam", net, layers, variant=variant)(x, labels).maps
        ours = F.interpolate(ours[:, None], size=(args.size, args.size), mode="bilinear")[:, 0]
        theirs = torch.cat([getattr(authors, name)(net, layers)(x[i:i + 1], int(labels[i]))[-1][:, 0]
                            for i in range(args.images)])
        pairs = zip(ours.flatten(1), theirs.flatten(1), strict=True)
        r = min(torch.corrcoef(torch.stack(pair))[0, 1].item() for pair in pairs)
        print(f"| {variant} | {r:.7f} | {(ours - theirs).abs().max().item():.1e} |")


if __name__ == "__main__":
    main()
