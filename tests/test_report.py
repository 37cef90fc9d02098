"""Figures, HTML reports (rendered in a headless browser), progress output and the dataset prep scripts."""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pytest
from conftest import REPO, compose
from PIL import Image

from wsol.aggregate import aggregate
from wsol.errors import WsolError
from wsol.progress import Progress
from wsol.report.figures import GT_COLOR, PRED_COLOR, colorize, curves_figure, grid_size, image_grid, overlay
from wsol.report.tables import format_table, metrics_frame
from wsol.report.visualize import select_images, write_sweep_report
from wsol.run import run

sys.path.insert(0, os.path.join(REPO, "scripts"))
import prepare_cub  # noqa: E402
import prepare_ilsvrc  # noqa: E402


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


class _Sources(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.sources.append(attrs["src"])
        if tag == "a" and not attrs["href"].startswith(("http", "#")):
            self.sources.append(attrs["href"])


def referenced_files(report: str) -> list[str]:
    parser = _Sources()
    with open(report) as f:
        parser.feed(f.read())
    return parser.sources


# --- figures ---------------------------------------------------------------------------------------


def test_colorize_overlay_and_boxes():
    jet = colorize(np.array([[0.0, 1.0]]))
    assert jet[0, 0].tolist() == [0, 0, 128] and jet[0, 1].tolist() == [128, 0, 0]  # jet's ends
    image = np.full((20, 20, 3), 100, np.uint8)
    score = np.zeros((20, 20))
    out = overlay(image, score, gt_boxes=[[2, 2, 10, 10]], pred_boxes=[[5, 12, 15, 18]], alpha=0.25)
    assert out.shape == (20, 20, 3) and out.dtype == np.uint8
    assert out[0, 0].tolist() == [75, 75, 107]  # 0.25 · (0, 0, 128) + 0.75 · 100, rounded
    assert tuple(out[2, 6]) == GT_COLOR and tuple(out[18, 10]) == PRED_COLOR  # box edges
    with pytest.raises(WsolError, match="colormap"):
        colorize(score, "no-such-map")
    with pytest.raises(WsolError, match="differ in size"):
        overlay(image, np.zeros((10, 10)))


def test_grid_and_curves_have_the_expected_size():
    tile = np.zeros((30, 30, 3), np.uint8)
    grid = image_grid([[tile, tile, None], [tile, None, tile]], ["cam", "gradcam"], ["a", "b", "c"], cell=40)
    assert grid.shape[1::-1] == grid_size(2, 3, 40, 150, 22) == (150 + 3 * 44 + 4, 22 + 2 * 44 + 4)
    rows = [{"threshold": t / 10, "mode": "largest", "iou": d, "box_acc": 10 * t} for t in range(10) for d in (30, 50)]
    png = curves_figure({"cam": rows, "gradcam": rows}, [30, 50], {"cam": 0.3})
    assert png_size(png) == (840, 340)  # 4.2 in per panel × 2, 3.4 in, at 100 dpi


def test_select_images_sample_and_extremes():
    rows = [{"id": f"i{k}", "iou_largest": str(v)} for k, v in enumerate([0.5, 0.9, 0.1, 0.9, 0.3, 0.0])]
    chosen = select_images(rows, 3, 2)
    assert chosen["sample"] == ["i0", "i2", "i5"]  # evenly spaced over the set, both ends included
    assert chosen["best"] == ["i1", "i3"] and chosen["worst"] == ["i5", "i2"]
    assert select_images([{"id": "a"}], 8, 2) == {"sample": ["a"]}  # no IoU (mask-only set): no extremes


def test_html_table_marks_best_and_escapes():
    runs = [
        {"method": m, "model": "<m>", "layer": "l", "dataset": "d", "metrics": {"maxboxacc_v2": v}}
        for m, v in (("cam", 50.0), ("gradcam", 60.0), ("eigencam", 40.0))
    ]
    text = format_table(metrics_frame(runs, ["maxboxacc_v2"]), "html", caption="a & b")
    assert "<b>60.00</b>" in text and "<u>50.00</u>" in text and "&lt;m&gt;" in text and "a &amp; b" in text


def test_progress_lines_bar_and_off():
    stream = io.StringIO()
    progress = Progress(10, "scoring", "lines", stream=stream, every=0)
    progress.update(4)
    assert "scoring" in stream.getvalue() and "4/10 images" in stream.getvalue() and "img/s" in stream.getvalue()
    bar = io.StringIO()
    progress = Progress(2, "scoring", "bar", stream=bar)
    progress.update(2)
    progress.close()
    assert bar.getvalue().startswith("\r") and "2/2 images" in bar.getvalue() and bar.getvalue().endswith("\n")
    quiet = io.StringIO()
    Progress(2, "scoring", False, stream=quiet).update(2)
    assert quiet.getvalue() == ""


# --- reports ---------------------------------------------------------------------------------------


def _config(*overrides: str):
    return compose(
        "limit=10", "batch_size=5", "report=true", "figures.num_images=4", "figures.extremes=2",
        f"cache_dir={os.environ['WSOL_CACHE']}", *overrides,
    )


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Two runs with reports and the sweep's report, built in process."""
    root = tmp_path_factory.mktemp("sweep")
    for method in ("gradcam", "gradcampp"):
        cfg = _config(f"method={method}")
        run(cfg, str(root / f"method={method}"), [f"method={method}"])
    aggregate(str(root))
    write_sweep_report(str(root))
    return root


def test_run_report_files_exist_and_have_the_expected_size(sweep):
    folder = sweep / "method=gradcam"
    report = folder / "report.html"
    sources = referenced_files(str(report))
    assert "figures/curves.png" in sources and len(sources) == 1 + 4 + 2 + 2  # curves, sample, best, worst
    for src in sources:
        assert (folder / src).is_file(), src
    overlays = [s for s in sources if s.startswith("figures/overlays/")]
    assert all(png_size((folder / s).read_bytes()) == (224, 224) for s in overlays)
    text = report.read_text()
    assert "<b>" not in text.split("<table")[1].split("</table>")[0]  # one row: nothing to highlight
    assert "Best localized" in text and "Worst localized" in text


def test_sweep_report_grid_and_links(sweep):
    sources = referenced_files(str(sweep / "report.html"))
    assert sources[:4] == ["figures/curves.png", "figures/grid.png", "figures/best.png", "figures/worst.png"]
    for src in sources:
        assert (sweep / src).is_file(), src
    assert sorted(s for s in sources if s.endswith("report.html")) == [
        "method=gradcam/report.html",
        "method=gradcampp/report.html",
    ]
    grid = (sweep / "figures" / "grid.png").read_bytes()
    assert png_size(grid) == grid_size(2, 4, 160, 150, 22)  # 2 methods × 4 sample images
    assert png_size((sweep / "figures" / "worst.png").read_bytes()) == grid_size(2, 2, 160, 150, 22)  # 2 each
    assert "Grid: methods × images" in (sweep / "report.html").read_text()


def test_report_for_an_already_finished_run(sweep, tmp_path, monkeypatch):
    """The report draws the maps the run made (here from the map cache); the model is never built again."""
    import wsol.models

    folder = tmp_path / "again"
    shutil.copytree(sweep / "method=gradcam", folder)
    shutil.rmtree(folder / "figures")
    (folder / "report.html").unlink()
    monkeypatch.setattr(wsol.models, "build_model", lambda *a, **k: pytest.fail("the model was built again"))
    run(_config("method=gradcam", "figures.colormap=viridis"), str(folder), ["method=gradcam"])
    assert (folder / "report.html").is_file() and (folder / "figures" / "curves.png").is_file()


def test_report_without_a_map_cache_keeps_the_maps_in_the_run_folder(tmp_path):
    folder = tmp_path / "run"
    run(_config("method=gradcam", "cache_dir=null", "limit=6"), str(folder), [])
    assert sorted(os.listdir(folder / "maps")) == ["batch_000000.npz", "batch_000001.npz"]
    moved = tmp_path / "moved"
    shutil.move(str(folder), str(moved))  # the run folder carries its maps (a relative path in metrics.json)
    shutil.rmtree(moved / "figures")
    run(_config("method=gradcam", "cache_dir=null", "limit=6"), str(moved), [])
    sources = referenced_files(str(moved / "report.html"))
    assert sources and all((moved / s).is_file() for s in sources)
    plain = tmp_path / "plain"  # no cache and no report: no maps are kept, and a later report says so
    run(_config("method=gradcam", "cache_dir=null", "limit=6", "report=false"), str(plain), [])
    assert not (plain / "maps").exists()
    with pytest.raises(WsolError, match="kept no score maps"):
        run(_config("method=gradcam", "cache_dir=null", "limit=6"), str(plain), [])


def test_report_of_a_mask_only_split(tmp_path, wsoleval_data):
    from conftest import mask_only_split

    overrides, ids = mask_only_split(tmp_path, wsoleval_data)
    folder = tmp_path / "run"
    run(_config(*overrides, "limit=null"), str(folder), [])
    sources = referenced_files(str(folder / "report.html"))
    assert sources and all((folder / s).is_file() for s in sources)
    assert not any("curves" in s for s in sources)  # no boxes: no BoxAcc curves, no best / worst
    assert len(sources) == min(4, len(ids)) and "Best localized" not in (folder / "report.html").read_text()


def _browser() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not found and os.environ.get("WSOL_REQUIRE_BROWSER"):
        pytest.fail("WSOL_REQUIRE_BROWSER is set but no Chromium is installed")
    return found


@pytest.mark.parametrize("page", ["report.html", "method=gradcampp/report.html"])
def test_reports_render_in_a_headless_browser(sweep, page):
    browser = _browser()
    if not browser:
        pytest.skip("no Chromium (apt install chromium); CI installs it")
    proc = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--allow-file-access-from-files",
            "--virtual-time-budget=5000",
            "--dump-dom",
            (sweep / page).as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    body = [line for line in proc.stdout.splitlines() if "<body" in line]
    assert body, proc.stderr[-2000:]
    expected = sum(1 for s in referenced_files(str(sweep / page)) if s.endswith(".png"))
    assert expected > 0 and f'data-images="{expected}"' in body[0] and 'data-broken="0"' in body[0], body[0]


# --- dataset preparation -----------------------------------------------------------------------------


def _metadata(root: str, split: str, dataset: str) -> dict[str, list[str]]:
    folder = os.path.join(root, "metadata", dataset, split)
    out = {}
    for name in ("image_ids", "class_labels", "image_sizes", "localization"):
        with open(os.path.join(folder, f"{name}.txt")) as f:
            out[name] = [line.strip() for line in f if line.strip()]
    return out


def _pick(meta: dict[str, list[str]], n: int) -> list[str]:
    ids = meta["image_ids"]
    return [ids[i] for i in np.linspace(0, len(ids) - 1, n).round().astype(int)]


def _save(path: str, size: tuple[int, int]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", size, (90, 120, 150)).save(path, quality=50)


def test_prepare_cub_reproduces_the_reference_metadata(tmp_path, wsoleval_data):
    meta = _metadata(wsoleval_data, "test", "CUB")
    ids = _pick(meta, 6)
    sizes = {r.split(",")[0]: tuple(map(int, r.split(",")[1:])) for r in meta["image_sizes"]}
    labels = {r.split(",")[0]: int(r.split(",")[1]) for r in meta["class_labels"]}
    boxes = {r.split(",")[0]: list(map(float, r.split(",")[1:])) for r in meta["localization"]}
    root = tmp_path / "CUB_200_2011"
    lines = {"images": [], "bounding_boxes": [], "image_class_labels": [], "train_test_split": []}
    extra = ["999.Extra/train_bird.jpg", "999.Extra/missing.jpg", "999.Extra/outside.jpg"]
    for k, image_id in enumerate(ids + extra, 1):
        size = sizes.get(image_id, (100, 80))
        x0, y0, x1, y1 = boxes.get(image_id, [10, 10, 50, 40] if "outside" not in image_id else [10, 10, 150, 40])
        lines["images"].append(f"{k} {image_id}")
        lines["bounding_boxes"].append(f"{k} {x0:.1f} {y0:.1f} {x1 - x0:.1f} {y1 - y0:.1f}")
        lines["image_class_labels"].append(f"{k} {labels.get(image_id, 7) + 1}")
        lines["train_test_split"].append(f"{k} {1 if 'train' in image_id else 0}")
        if "missing" not in image_id:
            _save(str(root / "images" / image_id), size)
    for name, rows in lines.items():
        (root / f"{name}.txt").write_text("\n".join(rows) + "\n")
    archive = tmp_path / "CUB_200_2011.tgz"
    subprocess.run(["tar", "czf", str(archive), "-C", str(tmp_path), "CUB_200_2011"], check=True)
    out = tmp_path / "out"
    report, images, metadata = prepare_cub.prepare(str(archive), str(out))
    assert os.path.isdir(images) and metadata == str(out / "metadata" / "CUB" / "test")
    assert report.counts["test images"] == 8 and report.counts["valid records written"] == 6
    problems = "\n".join(report.problems)
    assert "missing image: 999.Extra/missing.jpg" in problems and "box outside the 100x80 image" in problems
    assert "count: 8 test images, the official release has 5794" in problems
    written = {name: (out / "metadata/CUB/test" / f"{name}.txt").read_text().split() for name in meta}
    for name, rows in meta.items():  # the reference's own lines for these images, exactly
        assert sorted(written[name]) == sorted(r for r in rows if r.split(",")[0] in ids), name
    assert prepare_cub.main([str(root), "--out", str(tmp_path / "again")]) == 1  # problems → exit 1


def test_prepare_ilsvrc_reproduces_the_reference_metadata(tmp_path, wsoleval_data):
    meta = _metadata(wsoleval_data, "test", "ILSVRC")
    ids = _pick(meta, 5)
    wnids = [f"n{k:08d}" for k in range(1000)]
    (tmp_path / "synsets.txt").write_text("".join(f"{w} name {k}\n" for k, w in enumerate(wnids)))
    by_id = {name: [r for r in meta[name] if r.split(",")[0] in ids] for name in meta}
    images, xml = tmp_path / "images", tmp_path / "xml" / "val"
    xml.mkdir(parents=True)
    for image_id in ids:
        name = os.path.basename(image_id)
        size = next(tuple(map(int, r.split(",")[1:])) for r in by_id["image_sizes"] if r.startswith(image_id + ","))
        label = next(int(r.split(",")[1]) for r in by_id["class_labels"] if r.startswith(image_id + ","))
        _save(str(images / name), size)
        objects = "".join(
            f"<object><name>{wnids[label]}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
            f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
            for b in (r.split(",")[1:] for r in by_id["localization"] if r.startswith(image_id + ","))
        )
        size_xml = f"<size><width>{size[0]}</width><height>{size[1]}</height></size>"
        (xml / (os.path.splitext(name)[0] + ".xml")).write_text(f"<annotation>{size_xml}{objects}</annotation>")
    _save(str(images / "ILSVRC2012_val_99999999.JPEG"), (60, 40))  # no XML: reported
    subprocess.run(["tar", "czf", str(tmp_path / "bbox.tgz"), "-C", str(tmp_path / "xml"), "val"], check=True)
    out = tmp_path / "out"
    report, _, metadata = prepare_ilsvrc.prepare(
        str(images), str(tmp_path / "bbox.tgz"), str(out), str(tmp_path / "synsets.txt")
    )
    assert report.counts["images"] == 6 and report.counts["valid records written"] == 5
    assert "no box: ILSVRC2012_val_99999999.JPEG" in "\n".join(report.problems)
    for name, rows in by_id.items():
        assert sorted((out / "metadata/ILSVRC/test" / f"{name}.txt").read_text().split()) == sorted(rows), name
    assert all((out / image_id).is_file() for image_id in ids)  # val/<file>, as the ids say
    code = prepare_ilsvrc.main(["--images", str(images), "--boxes", str(tmp_path / "xml"), "--out", str(out)])
    assert code == 2  # 5 synsets in the boxes and no --synsets: the class order is unknown


def test_bench_tiny_mode_writes_its_table(tmp_path):
    import bench

    path = bench.main(["--tiny", "--methods", "gradcam,eigencam", "--out", str(tmp_path)])
    with open(path) as f:
        text = f.read()
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in text.splitlines()[4:] if "|" in line}
    for stage in (
        "raw forward",
        "forward + backward to the layer",
        "wsol gradcam: end to end, cc boxes",
        "wsol eigencam: maps",
        "findContours per threshold (the reference's procedure)",
        "fast engine, cc regions, 1 thread",
        "fast engine, contours regions, 1 thread",
        "reference engine, contours regions, 1 thread",
    ):
        assert float(rows[stage].replace(",", "")) > 0, stage
    assert "× fwd+bwd" in text and "× findContours" in text and "cut levels (holes or tied areas)" in text
    loop = text.split("## The loop: serial vs overlapped")[1]
    assert loop.count("| overlapped, scoring") == loop.count("| serial, scoring") >= 2
    assert "| NO |" not in loop and loop.count("| yes |") >= 4  # every run's metrics equal, bit for bit
    assert "the overlapped loop runs at" in loop and "the best overlapped split at" in loop
    wsoleval = text.split("## A WSOL model: wsolevaluation's ResNet50")[1].split("##")[0]
    assert "8×8 maps at `layer4`" in wsoleval  # --tiny: 64² input, layer3 at stride 1
    for stage in ("forward + backward to `layer4`", "wsol cam: end to end", "wsol gradcampp: end to end"):
        line = next(x for x in wsoleval.splitlines() if x.startswith(f"| {stage}"))
        assert float(line.split("|")[2].replace(",", "")) > 0, stage
    for library in ("pytorch-grad-cam GradCAM", "pytorch-grad-cam GradCAM++", "torchcam GradCAM", "torchcam GradCAMpp"):
        assert float(rows[library].replace(",", "")) > 0, library  # both are test dependencies: measured


def test_run_labels_name_what_varies():
    """A layer sweep's rows read by layer; constants (device, progress) never show; a lone run is method · model ·
    layer."""
    from wsol.report.visualize import run_labels

    def summary(layer, method="gradcam"):
        overrides = ["model=vgg16", f"model.layer={layer}", f"method={method}", "device=cpu", "progress=False"]
        return {"method": method, "model": "vgg16", "layer": layer, "dataset": "demo", "overrides": overrides}

    layers = ["features.5", "features.15", "features.22"]
    assert run_labels([summary(x) for x in layers]) == layers
    assert run_labels([summary("features.5", "cam"), summary("features.15")]) == ["cam · features.5",
                                                                                     "gradcam · features.15"]
    assert run_labels([summary("features.5")]) == ["gradcam · vgg16 · features.5"]


def test_a_wide_grid_fits_the_page():
    tiles = [[np.zeros((20, 20, 3), np.uint8)] * 8] * 2
    assert grid_size(2, 8, 160, 150, 22)[0] > 1400  # at the full cell size, eight images would not fit
    assert 1300 < image_grid(tiles, ["a", "b"], [str(i) for i in range(8)]).shape[1] <= 1400
