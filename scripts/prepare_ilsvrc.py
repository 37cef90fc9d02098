"""ImageNet (ILSVRC2012) validation: official downloads → wsolevaluation metadata, with a validation report.

    python scripts/prepare_ilsvrc.py --images ILSVRC2012_img_val.tar --boxes ILSVRC2012_bbox_val_v3.tgz \\
        --synsets LOC_synset_mapping.txt --out data/ILSVRC

``--images`` / ``--boxes`` take the archives or unpacked folders (JPEGs; Pascal-VOC XML files).
``--synsets`` (one wnid per line first, in class order, e.g. Kaggle's LOC_synset_mapping.txt) may
be left out when the boxes cover all 1000 classes (the full set): the sorted wnids are the order.
Writes ``<out>/metadata/ILSVRC/test/`` with ids ``val/<file>`` for ``dataset=wsoleval
dataset.root=<out>``. Exit status 1 if any problem was found (listed).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from wsol.data.ilsvrc import read_ilsvrc  # noqa: E402
from wsol.data.prepare import Report, check_records, run_preparation, unpack, write_wsoleval_metadata  # noqa: E402
from wsol.errors import WsolError  # noqa: E402

EXPECTED_IMAGES = 50000


def _single_folder(root: str, suffix: str) -> str:
    """The folder under ``root`` holding the files ending in ``suffix``."""
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        if any(f.lower().endswith(suffix) for f in files):
            return folder
    raise WsolError(f"no *{suffix} files under {root}")


def prepare(images: str, boxes: str, out: str, synsets: str | None = None) -> tuple[Report, str, str]:
    """Unpack, validate and write the metadata; returns ``(report, image root, metadata folder)``."""
    val = os.path.join(out, "val")
    image_dir = _single_folder(unpack(images, val), ".jpeg")
    if os.path.abspath(image_dir) != os.path.abspath(val):  # wsolevaluation's ids are val/<file>
        os.makedirs(val, exist_ok=True)
        for name in os.listdir(image_dir):
            target = os.path.join(val, name)
            if not os.path.exists(target):
                os.symlink(os.path.abspath(os.path.join(image_dir, name)), target)
    xml_dir = _single_folder(unpack(boxes, os.path.join(out, "bbox")), ".xml")
    report = Report()
    records = read_ilsvrc(val, xml_dir, synsets)
    report.expect("images", len(records), EXPECTED_IMAGES)
    report.counts["XML files"] = sum(1 for f in os.listdir(xml_dir) if f.endswith(".xml"))
    report.counts["boxes"] = sum(len(r.boxes) for r in records)
    unknown = [r.image_id for r in records if len(r.boxes) and r.label >= 1000]
    report.problems += [f"synset not in the class list: {i}" for i in unknown]
    valid = check_records([r for r in records if r.image_id not in unknown], val, report)
    report.counts["valid records written"] = len(valid)
    metadata = os.path.join(out, "metadata", "ILSVRC", "test")
    write_wsoleval_metadata(valid, metadata, prefix="val/")
    return report, out, metadata


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", required=True, help="ILSVRC2012_img_val.tar, or the folder of its JPEGs")
    parser.add_argument("--boxes", required=True, help="ILSVRC2012_bbox_val_v3.tgz, or the folder of its XML files")
    parser.add_argument("--synsets", default=None, help="class order: LOC_synset_mapping.txt (wnid first per line)")
    parser.add_argument("--out", required=True, help="where val/ and metadata/ go")
    args = parser.parse_args(argv)
    return run_preparation(
        lambda: prepare(args.images, args.boxes, args.out, args.synsets), "model=resnet50 method=gradcampp"
    )


if __name__ == "__main__":
    sys.exit(main())
