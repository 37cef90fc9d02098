"""Dataset formats on tiny generated fixtures, the real wsolevaluation metadata, and bad input."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest
import torch
from conftest import write_image
from PIL import Image

from wsol.data import build_dataset, collate
from wsol.data.base import IGNORE, rescale_boxes
from wsol.data.wsoleval import read_wsoleval_metadata
from wsol.errors import WsolError


def write_wsoleval(root, rows, sizes=None):
    """rows: (path, label, [boxes]); writes metadata under root/meta and returns (image_root, meta)."""
    meta = os.path.join(root, "meta")
    os.makedirs(meta, exist_ok=True)
    with open(os.path.join(meta, "image_ids.txt"), "w") as f:
        f.writelines(f"{p}\n" for p, _, _ in rows)
    with open(os.path.join(meta, "class_labels.txt"), "w") as f:
        f.writelines(f"{p},{c}\n" for p, c, _ in rows)
    with open(os.path.join(meta, "image_sizes.txt"), "w") as f:
        f.writelines(f"{p},{w},{h}\n" for p, (w, h) in (sizes or {}).items())
    with open(os.path.join(meta, "localization.txt"), "w") as f:
        for p, _, boxes in rows:
            f.writelines(f"{p},{','.join(str(v) for v in b)}\n" for b in boxes)
    return os.path.join(root, "images"), meta


def test_rescale_boxes_truncates_like_the_reference():
    # 300x200 image to 224: x*224/300, y*224/200, each truncated
    out = rescale_boxes(np.array([[10, 20, 150, 199]]), (300, 200), 224)
    assert out.tolist() == [[7, 22, 112, 222]]


def test_wsoleval_loader_rescales_boxes_and_keeps_several(tmp_path):
    write_image(str(tmp_path / "images/a/x.jpg"), (300, 200))
    write_image(str(tmp_path / "images/a/y.png"), (224, 224))
    rows = [("a/x.jpg", 3, [[10, 20, 150, 199], [0, 0, 299, 199]]), ("a/y.png", 1, [[5, 5, 10, 10]])]
    images, meta = write_wsoleval(str(tmp_path), rows, {"a/x.jpg": (300, 200), "a/y.png": (224, 224)})
    ds = build_dataset("wsoleval", root=images, metadata_root=meta, num_classes=10)
    assert len(ds) == 2
    s = ds[0]
    assert s["image"].shape == (3, 224, 224) and s["label"] == 3 and s["size"] == (300, 200)
    assert s["boxes"].tolist() == [[7, 22, 112, 222], [0, 0, 223, 222]]
    batch = collate([ds[0], ds[1]])
    assert batch.boxes.shape == (2, 2, 4) and batch.box_valid.tolist() == [[True, True], [True, False]]
    assert batch.boxes[1, 0].tolist() == [5, 5, 10, 10]


def test_real_wsolevaluation_metadata(wsoleval_data):
    cub = read_wsoleval_metadata(os.path.join(wsoleval_data, "metadata/CUB/test"))
    assert len(cub) == 5794
    first = cub[0]
    assert first.image_id == "001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg"
    assert first.label == 0 and first.size == (500, 335) and first.boxes.tolist() == [[60, 27, 385, 331]]
    ilsvrc = read_wsoleval_metadata(os.path.join(wsoleval_data, "metadata/ILSVRC/test"))
    assert len(ilsvrc) == 50000
    assert sum(len(r.boxes) for r in ilsvrc) == 80477
    assert {r.label for r in ilsvrc} == set(range(1000))
    openimages = read_wsoleval_metadata(os.path.join(wsoleval_data, "metadata/OpenImages/test"))
    assert all(len(r.boxes) == 0 and r.mask_paths for r in openimages)
    assert openimages[0].ignore_path.endswith("_ignore.png") and len(openimages[0].mask_paths) == 2


def test_openimages_masks_union_and_ignore(tmp_path, wsoleval_data):
    mask_root = os.path.join(wsoleval_data, "test_data", "test_masks")
    folder = os.path.join(mask_root, "val", "0bt_c3")
    stem = "3a29f0b33894d4a6"
    masks = sorted(f for f in os.listdir(folder) if f.startswith(stem) and "_m" in f)
    write_image(str(tmp_path / "images/val/0bt_c3" / f"{stem}.jpg"), (64, 48))
    meta = tmp_path / "meta"
    meta.mkdir()
    path = f"val/0bt_c3/{stem}.jpg"
    (meta / "image_ids.txt").write_text(path + "\n")
    (meta / "class_labels.txt").write_text(path + ",0\n")
    (meta / "image_sizes.txt").write_text("")
    lines = [f"{path},val/0bt_c3/{masks[0]},val/0bt_c3/{stem}_ignore.png"]
    lines += [f"{path},val/0bt_c3/{m}," for m in masks[1:]]
    (meta / "localization.txt").write_text("\n".join(lines) + "\n")
    ds = build_dataset("wsoleval", root=str(tmp_path / "images"), metadata_root=str(meta), mask_root=mask_root)
    mask = ds[0]["mask"].numpy()
    # expected, as wsolevaluation's get_mask: union of the instance masks (OpenCV grayscale, INTER_NEAREST to
    # 224, > 0.5), ignore where ignore ∧ ¬fg
    def reference(name):
        raw = np.float32(cv2.imread(os.path.join(folder, name), cv2.IMREAD_GRAYSCALE))
        return cv2.resize(raw, (224, 224), interpolation=cv2.INTER_NEAREST) > 0.5

    fg = np.zeros((224, 224), dtype=bool)
    for m in masks:
        fg |= reference(m)
    ignore = reference(f"{stem}_ignore.png")
    assert ((mask == 1) == fg).all()
    assert ((mask == IGNORE) == (ignore & ~fg)).all()
    assert fg.any()
    with pytest.raises(WsolError, match="mask_root"):
        build_dataset("wsoleval", root=str(tmp_path / "images"), metadata_root=str(meta))


def test_cub_layout(tmp_path):
    root = tmp_path / "CUB_200_2011"
    write_image(str(root / "images/001.A/a1.jpg"), (500, 335))
    write_image(str(root / "images/002.B/b1.jpg"), (100, 80))
    write_image(str(root / "images/002.B/b2.jpg"), (100, 80))
    (root / "images.txt").write_text("1 001.A/a1.jpg\n2 002.B/b1.jpg\n3 002.B/b2.jpg\n")
    (root / "bounding_boxes.txt").write_text("1 60.0 27.0 325.0 304.0\n2 0 0 10 10\n3 1.5 2.5 20 30\n")
    (root / "image_class_labels.txt").write_text("1 1\n2 2\n3 2\n")
    (root / "train_test_split.txt").write_text("1 0\n2 1\n3 0\n")
    ds = build_dataset("cub", root=str(root), split="test")
    assert [r.image_id for r in ds.records] == ["001.A/a1.jpg", "002.B/b2.jpg"]
    assert ds.records[0].boxes.tolist() == [[60, 27, 385, 331]]  # x + w, y + h, as wsolevaluation's CUB metadata
    assert [r.label for r in ds.records] == [0, 1]
    assert ds[0]["boxes"].tolist() == rescale_boxes(np.array([[60, 27, 385, 331]]), (500, 335), 224).tolist()
    assert len(build_dataset("cub", root=str(root), split="train")) == 1


def _voc(name, boxes, size=(120, 90)):
    objs = "".join(
        f"<object><name>{name}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for b in boxes
    )
    return f"<annotation><size><width>{size[0]}</width><height>{size[1]}</height></size>{objs}</annotation>"


def test_ilsvrc_layout(tmp_path):
    images, ann = tmp_path / "val", tmp_path / "ann"
    ann.mkdir()
    write_image(str(images / "ILSVRC2012_val_00000001.JPEG"), (120, 90))
    write_image(str(images / "ILSVRC2012_val_00000002.JPEG"), (120, 90))
    (ann / "ILSVRC2012_val_00000001.xml").write_text(_voc("n01443537", [[10, 20, 50, 60], [60, 10, 119, 89]]))
    (ann / "ILSVRC2012_val_00000002.xml").write_text(_voc("n01440764", [[0, 0, 30, 30]]))
    synsets = tmp_path / "LOC_synset_mapping.txt"
    synsets.write_text("n01440764 tench, Tinca tinca\nn01443537 goldfish\n")
    ds = build_dataset("ilsvrc", root=str(images), ann_root=str(ann), synsets_file=str(synsets), num_classes=1000)
    assert [r.label for r in ds.records] == [1, 0]
    assert ds.records[0].boxes.tolist() == [[10, 20, 50, 60], [60, 10, 119, 89]]
    assert ds.records[0].size == (120, 90)
    with pytest.raises(WsolError, match="not 1000"):
        build_dataset("ilsvrc", root=str(images), ann_root=str(ann))


def test_coco_layout(tmp_path):
    write_image(str(tmp_path / "img/1.jpg"), (100, 50))
    write_image(str(tmp_path / "img/2.jpg"), (100, 50))
    coco = {
        "images": [{"id": 1, "file_name": "1.jpg", "width": 100, "height": 50},
                   {"id": 2, "file_name": "2.jpg", "width": 100, "height": 50}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 7, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 9, "bbox": [0, 0, 60, 40], "area": 2400, "iscrowd": 0},
            {"id": 3, "image_id": 1, "category_id": 9, "bbox": [70, 5, 10, 10], "area": 100, "iscrowd": 0},
            {"id": 4, "image_id": 1, "category_id": 9, "bbox": [0, 0, 99, 49], "area": 4900, "iscrowd": 1},
        ],
        "categories": [{"id": 7, "name": "a"}, {"id": 9, "name": "b"}],
    }
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    ds = build_dataset("coco", root=str(tmp_path / "img"), ann_file=str(tmp_path / "ann.json"), num_classes=5)
    assert len(ds) == 1 and ds.skipped == {"no_boxes": 1}
    record = ds.records[0]
    assert record.label == 1  # category 9 (largest non-crowd) → index 1 in id order
    assert record.boxes.tolist() == [[0, 0, 60, 40], [70, 5, 80, 15]]
    mapped = build_dataset(
        "coco", root=str(tmp_path / "img"), ann_file="../ann.json", category_map={9: 4}, num_classes=5
    )
    assert mapped.records[0].label == 4


def test_demo_is_deterministic_with_exact_boxes_and_masks():
    a = build_dataset("demo", num_images=12)
    b = build_dataset("demo", num_images=12)
    assert len(build_dataset("demo")) >= 100
    for i in range(12):
        sa, sb = a[i], b[i]
        assert (sa["image"] == sb["image"]).all() and (sa["boxes"] == sb["boxes"]).all()
        record = a.records[i]
        image, mask = a.render(record)
        ys, xs = np.nonzero(mask)
        # at the original size each GT box is the tight box of one pasted mask, all inside the mask's extent
        for x0, y0, x1, y1 in record.boxes:
            assert mask[int(y0), int(x0):int(x1) + 1].any() and mask[int(y0):int(y1) + 1, int(x0)].any()
        assert record.boxes[:, 0].min() == xs.min() and record.boxes[:, 2].max() == xs.max()
        assert record.boxes[:, 1].min() == ys.min() and record.boxes[:, 3].max() == ys.max()
        assert image.shape[:2][::-1] == record.size
    assert {r.label for r in a.records} == {285, 967, 872, 657}
    assert any(len(r.boxes) == 2 for r in build_dataset("demo").records)


def test_bad_input_is_counted_or_converted(tmp_path):
    root = tmp_path / "images"
    write_image(str(root / "gray.png"), mode="L")
    write_image(str(root / "cmyk.jpg"), mode="CMYK")
    write_image(str(root / "rgba.png"), mode="RGBA")
    for i in range(5):
        write_image(str(root / f"ok{i}.jpg"))
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    write_image(str(root / "big.jpg"))
    rows = [
        ("gray.png", 0, [[1, 1, 10, 10]]),
        ("cmyk.jpg", 0, [[1, 1, 10, 10]]),
        ("rgba.png", 0, [[1, 1, 10, 10]]),
        ("corrupt.jpg", 0, [[1, 1, 10, 10]]),
        ("missing.jpg", 0, [[1, 1, 10, 10]]),
        ("ok0.jpg", 0, [[10, 10, 5, 20]]),  # inverted
        ("ok1.jpg", 5, [[1, 1, 10, 10]]),  # class id ≥ num_classes
        ("ok2.jpg", 0, []),  # no box
        ("ok3.jpg", 0, [[50, 1, 60, 10]]),  # entirely outside the 40x30 image
        ("big.jpg", 0, [[-5, 2, 45, 29]]),  # partly outside: clipped to [0, w]
    ]
    sizes = {p: (40, 30) for p, _, _ in rows}
    images, meta = write_wsoleval(str(tmp_path), rows, sizes)
    ds = build_dataset("wsoleval", root=images, metadata_root=meta, num_classes=5)
    assert dict(ds.skipped) == {
        "missing_file": 1,
        "inverted_box": 1,
        "class_id_out_of_range": 1,
        "no_boxes": 1,
        "box_outside_image": 1,
    }
    assert ds.boxes_clipped == 1
    assert ds.records[-1].boxes.tolist() == [[0, 2, 40, 29]]
    later = build_dataset("wsoleval", root=images, metadata_root=meta, num_classes=None)  # classes checked later
    assert "class_id_out_of_range" not in later.skipped and len(later) == len(ds) + 1
    assert later.check_classes(5) and later.skipped == ds.skipped and later.boxes_clipped == 1
    assert [r.image_id for r in later.records] == [r.image_id for r in ds.records]
    assert not later.check_classes(5)
    samples = [ds[i] for i in range(len(ds))]
    batch = collate(samples)
    assert batch.skipped == [("corrupt.jpg", "unreadable_image")]
    assert batch.ids == ["gray.png", "cmyk.jpg", "rgba.png", "big.jpg"]
    assert batch.images.shape == (4, 3, 224, 224)
    assert batch.images.is_contiguous(memory_format=torch.channels_last)  # the decoded rows, not transposed
    assert torch.equal(batch.images[3], samples[-1]["image"])


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    """A 16-bit grayscale PNG (PIL mode I;16) becomes 8-bit by round(v / 257); PIL's own conversion clips, which
    turns everything above 255 white."""
    from wsol.data.base import to_rgb

    values = np.linspace(0, 65535, 40 * 30).reshape(30, 40).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as image:
        assert image.mode.startswith("I")
        rgb = np.asarray(to_rgb(image))
        clipped = np.asarray(image.convert("RGB"))
    expected = np.rint(values / 257.0).astype(np.uint8)
    assert rgb.shape == (30, 40, 3) and (rgb == expected[..., None]).all()
    assert (clipped == 255).mean() > 0.99 and (rgb == 255).mean() < 0.01


def test_palette_images_with_transparency_convert_without_a_warning(tmp_path):
    import warnings

    from wsol.data.base import to_rgb

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 4, (30, 40), dtype=np.uint8), "P")
    image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9] + [0] * 756)
    image.info["transparency"] = bytes([255, 0, 255, 255] + [255] * 252)
    image.save(tmp_path / "palette.png", transparency=image.info["transparency"])
    with Image.open(tmp_path / "palette.png") as reread, warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL's "Palette images with Transparency" warning would raise here
        rgb = np.asarray(to_rgb(reread))
    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [9, 9, 9]], dtype=np.uint8)
    assert (rgb == palette[np.asarray(image)]).all()


def test_size_mismatch_uses_the_metadata_size_and_is_counted(tmp_path):
    """An image whose decoded size is not image_sizes.txt's: boxes are rescaled with the metadata's size (as the
    reference does), and the image is reported, not silently evaluated."""
    write_image(str(tmp_path / "images/a.jpg"), (150, 100))
    write_image(str(tmp_path / "images/b.jpg"), (300, 200))
    rows = [("a.jpg", 0, [[30, 20, 150, 199]]), ("b.jpg", 1, [[30, 20, 150, 199]])]
    images, meta = write_wsoleval(str(tmp_path), rows, {"a.jpg": (300, 200), "b.jpg": (300, 200)})
    ds = build_dataset("wsoleval", root=images, metadata_root=meta, num_classes=5)
    batch = collate([ds[0], ds[1]])
    assert batch.size_mismatch == ["a.jpg"]
    expected = rescale_boxes(np.array([[30, 20, 150, 199]]), (300, 200), 224).tolist()
    assert batch.boxes[0, :1].tolist() == batch.boxes[1, :1].tolist() == expected
    assert batch.sizes.tolist() == [[300, 200], [300, 200]]


def test_unreadable_mask_is_a_counted_skip(tmp_path):
    write_image(str(tmp_path / "images/a.jpg"), (64, 48))
    write_image(str(tmp_path / "images/b.jpg"), (64, 48))
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(np.full((48, 64), 255, np.uint8)).save(masks / "a.png")
    (masks / "b.png").write_bytes(b"not a png")
    meta = tmp_path / "meta"
    meta.mkdir()
    (meta / "image_ids.txt").write_text("a.jpg\nb.jpg\n")
    (meta / "class_labels.txt").write_text("a.jpg,0\nb.jpg,0\n")
    (meta / "localization.txt").write_text("a.jpg,a.png,\nb.jpg,b.png,\n")
    ds = build_dataset("wsoleval", root=str(tmp_path / "images"), metadata_root=str(meta), mask_root=str(masks))
    batch = collate([ds[0], ds[1]])
    assert batch.ids == ["a.jpg"] and batch.skipped == [("b.jpg", "unreadable_mask")]
    assert batch.masks.shape == (1, 224, 224) and (batch.masks == 1).all()


def test_missing_root_and_files_are_one_line_errors(tmp_path):
    with pytest.raises(WsolError, match="dataset.root does not exist"):
        build_dataset("cub", root=str(tmp_path / "nope"))
    with pytest.raises(WsolError, match="not set"):
        build_dataset("cub", root=None)
    with pytest.raises(WsolError, match="images.txt not found"):
        build_dataset("cub", root=str(tmp_path))
    with pytest.raises(WsolError, match="unknown dataset 'cu'"):
        build_dataset("cu")
    images, meta = write_wsoleval(str(tmp_path), [("x.jpg", 0, [[1, 1, 2, 2]])])
    with pytest.raises(WsolError, match="no usable images"):
        build_dataset("wsoleval", root=str(tmp_path), metadata_root=meta)
    (tmp_path / "meta" / "image_ids.txt").write_text("x.jpg\nx.jpg\n")
    with pytest.raises(WsolError, match="x.jpg twice"):
        build_dataset("wsoleval", root=str(tmp_path), metadata_root=meta)
    (tmp_path / "meta" / "image_ids.txt").write_text("x.jpg\n")
    (tmp_path / "meta" / "localization.txt").write_text("x.jpg,1,a,2,2\n")
    with pytest.raises(WsolError, match="not numbers"):
        build_dataset("wsoleval", root=str(tmp_path), metadata_root=meta)


def test_ids_outside_the_root_are_counted_skips(tmp_path):
    """Ids become paths under the image root, ``maps_dir`` and ``method.maps_dir``: an absolute id or one with a
    ``..`` part would name a file elsewhere, so it is skipped (``unsafe_id``), and map paths refuse it."""
    from wsol.cams.from_files import load_maps, map_path

    write_image(str(tmp_path / "images/a.jpg"))
    write_image(str(tmp_path / "outside.jpg"))
    rows = [("a.jpg", 0, [[1, 1, 10, 10]]), ("../outside.jpg", 0, [[1, 1, 10, 10]]),
            (str(tmp_path / "outside.jpg"), 0, [[1, 1, 10, 10]]), ("b/../../outside.jpg", 0, [[1, 1, 10, 10]])]
    images, meta = write_wsoleval(str(tmp_path), rows, {p: (40, 30) for p, _, _ in rows})
    ds = build_dataset("wsoleval", root=images, metadata_root=meta, num_classes=5)
    assert [r.image_id for r in ds.records] == ["a.jpg"] and dict(ds.skipped) == {"unsafe_id": 3}
    with pytest.raises(WsolError, match="not a relative path below"):
        map_path(str(tmp_path / "maps"), "../x")
    assert map_path("maps", "val/a.JPEG") == os.path.join("maps", "val/a.JPEG.npy")
    assert load_maps(str(tmp_path), ["/etc/passwd", "../x"])[1] == ["unsafe_id", "unsafe_id"]


def test_a_decompression_bomb_is_a_counted_skip(tmp_path, monkeypatch):
    write_image(str(tmp_path / "images/small.png"), (40, 30))
    write_image(str(tmp_path / "images/bomb.png"), (200, 200))
    rows = [("small.png", 0, [[1, 1, 10, 10]]), ("bomb.png", 0, [[1, 1, 10, 10]])]
    images, meta = write_wsoleval(str(tmp_path), rows, {"small.png": (40, 30), "bomb.png": (200, 200)})
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # 200 × 200 > twice the limit: PIL raises
    ds = build_dataset("wsoleval", root=images, metadata_root=meta, num_classes=5)
    batch = collate([ds[0], ds[1]])
    assert batch.ids == ["small.png"] and batch.skipped == [("bomb.png", "decompression_bomb")]


def test_maps_from_files_keep_labels_of_any_class_range(tmp_path):
    """No model: the metadata's labels are the classes (a 1,200-class set is not cut to ImageNet's 1,000)."""
    from conftest import compose

    from wsol.cams.from_files import save_maps
    from wsol.pipeline import evaluate

    rows = [(f"{i}.png", label, [[2, 2, 20, 20]]) for i, label in enumerate([3, 999, 1000, 1199])]
    for path, _, _ in rows:
        write_image(str(tmp_path / "images" / path), (40, 30))
    images, meta = write_wsoleval(str(tmp_path), rows, {p: (40, 30) for p, _, _ in rows})
    maps = np.zeros((4, 30, 40), dtype=np.float32)
    maps[:, 2:20, 2:20] = 1.0
    save_maps(str(tmp_path / "maps"), [p for p, _, _ in rows], maps)
    out = evaluate(compose("dataset=wsoleval", f"dataset.root={images}", f"dataset.metadata_root={meta}",
                           "method=from_files", f"method.maps_dir={tmp_path / 'maps'}", "eval.bootstrap=0"))
    assert out.info["images"] == 4 and out.info["skipped"] == {}
