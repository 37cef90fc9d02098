"""ImageNet (ILSVRC2012) validation: official downloads → wsolevaluation metadata, with a validation report.

    python scripts/prepare_ilsvrc.py --images ILSVRC2012_img_val.tar --boxes ILSVRC2012_bbox_val_v3.tgz \\
        --synsets LOC_synset_mapping.txt --out data/ILSVRC

``--images`` / ``--boxes`` take the archives or unpacked folders (JPEGs; Pascal-VOC XML files).
``--synsets`` (one wnid per line first, in class order, e.g. Kaggle's LOC_synset_mapping.txt) may
be left out when the boxes cover all 1000 classes (the full set): the sorted wnids are the order.
Writes ``<out>/metadata/ILSVRC/test/`` with ids ``val/<file>`` for ``dataset=wsoleval
dataset.root=<out>``. Exit status 1 if any problem was found (listed).

The val split (``train-fullsup``) is ImageNetV2 threshold-0.7 with wsolevaluation's boxes:

    python scripts/prepare_ilsvrc.py --imagenetv2 imagenetv2-threshold0.7-format-val \
        --metadata wsolevaluation/metadata/ILSVRC/val --out data/ILSVRC [--reference OLD_COPY] [--copy]

maps the published folder (class-index folders, files renamed to content hashes since 2021) onto the
metadata's ``val2/<class>/<k>.jpeg`` ids by name, by image size, or by content against a copy under the
old names (``wsol.data.imagenetv2``), lays the files out under those ids (links, or ``--copy``), and
writes the reference's metadata lines of the matched images to ``<out>/metadata/ILSVRC/val/``; every
image it could not place and every file left over is listed.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from wsol.data.ilsvrc import read_ilsvrc  # noqa: E402
from wsol.data.imagenetv2 import match_imagenetv2, write_imagenetv2  # noqa: E402
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


def prepare_imagenetv2(folder: str, metadata: str, out: str, reference: str | None = None,
                       copy: bool = False) -> tuple[Report, str, str]:
    """Match the published ImageNetV2 folder to the reference's val metadata and lay it out under ``out``."""
    match = match_imagenetv2(folder, metadata, reference)
    report = Report(counts=match.counts(), problems=match.problems())
    report.counts["images placed"] = len(match.files)
    return report, out, write_imagenetv2(match, metadata, out, copy)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", help="ILSVRC2012_img_val.tar, or the folder of its JPEGs")
    parser.add_argument("--boxes", help="ILSVRC2012_bbox_val_v3.tgz, or the folder of its XML files")
    parser.add_argument("--synsets", default=None, help="class order: LOC_synset_mapping.txt (wnid first per line)")
    parser.add_argument("--imagenetv2", default=None, help="the val split: the published ImageNetV2 threshold-0.7 "
                        "folder (class-index folders 0-999)")
    parser.add_argument("--metadata", default=None, help="with --imagenetv2: wsolevaluation's metadata/ILSVRC/val")
    parser.add_argument("--reference", default=None, help="with --imagenetv2: a copy under the old names "
                        "(<class>/<k>.jpeg), to tell same-size images apart by content")
    parser.add_argument("--copy", action="store_true", help="with --imagenetv2: copy the files instead of linking")
    parser.add_argument("--out", required=True, help="where val/ (val2/) and metadata/ go")
    args = parser.parse_args(argv)
    if args.imagenetv2:
        if not args.metadata:
            parser.error("--imagenetv2 needs --metadata (wsolevaluation's metadata/ILSVRC/val: the boxes)")
        return run_preparation(
            lambda: prepare_imagenetv2(args.imagenetv2, args.metadata, args.out, args.reference, args.copy),
            "model=resnet50 method=gradcampp",
        )
    if not (args.images and args.boxes):
        parser.error("--images and --boxes are required (or --imagenetv2 for the val split)")
    return run_preparation(
        lambda: prepare(args.images, args.boxes, args.out, args.synsets), "model=resnet50 method=gradcampp"
    )


if __name__ == "__main__":
    sys.exit(main())
