"""CUB-200-2011: official download → wsolevaluation metadata, with a validation report.

    python scripts/prepare_cub.py CUB_200_2011.tgz --out data/CUB
    python scripts/prepare_cub.py /path/to/CUB_200_2011 --out data/CUB     # already unpacked

Writes ``<out>/metadata/CUB/<split>/`` (default: test, 5,794 images) for ``dataset=wsoleval`` and
prints the command that evaluates it. Exit status 1 if any problem was found (listed).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from wsol.data.cub import read_cub  # noqa: E402
from wsol.data.prepare import (  # noqa: E402
    Report,
    check_records,
    find_file,
    run_preparation,
    unpack,
    write_wsoleval_metadata,
)

# counts of the official release (Wah et al., 2011)
EXPECTED = {"images": 11788, "test": 5794, "train": 5994, "classes": 200}


def prepare(source: str, out: str, split: str = "test") -> tuple[Report, str, str]:
    """Unpack, validate and write the metadata; returns ``(report, images folder, metadata folder)``."""
    root = find_file(unpack(source, out), "images.txt")
    report = Report()
    with open(os.path.join(root, "images.txt")) as f:
        report.expect("images", sum(1 for line in f if line.strip()), EXPECTED["images"])
    records = read_cub(root, split)
    report.expect(f"{split} images", len(records), EXPECTED[split])
    report.expect("classes", len({r.label for r in records}), EXPECTED["classes"])
    out_of_range = [r.image_id for r in records if not 0 <= r.label < EXPECTED["classes"]]
    report.problems += [f"class out of 1..200: {i}" for i in out_of_range]
    image_root = os.path.join(root, "images")
    valid = check_records([r for r in records if r.image_id not in out_of_range], image_root, report)
    report.counts["valid records written"] = len(valid)
    metadata = os.path.join(out, "metadata", "CUB", split)
    write_wsoleval_metadata(valid, metadata)
    return report, image_root, metadata


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="CUB_200_2011.tgz, or the unpacked folder")
    parser.add_argument("--out", required=True, help="where to unpack (archives) and write metadata/")
    parser.add_argument("--split", default="test", choices=("test", "train"))
    args = parser.parse_args(argv)
    # a CUB-fine-tuned checkpoint: 200 classes
    model = "model=resnet50 model.checkpoint=CKPT.pth model.num_classes=200 method=gradcampp"
    return run_preparation(lambda: prepare(args.source, args.out, args.split), model)


if __name__ == "__main__":
    sys.exit(main())
