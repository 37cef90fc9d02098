"""Top-1 / top-5 loc with classes from elsewhere: another classifier (eval.classifier) or a file of predictions
(eval.predictions), for maps of any model or of a localizer that does not classify (method=from_files)."""

from __future__ import annotations

import json

import pytest
from conftest import compose

from wsol.config import validate
from wsol.errors import WsolError
from wsol.pipeline import evaluate
from wsol.scoring import read_predictions

BASE = ("limit=12", "batch_size=4", "eval.bootstrap=50")


@pytest.fixture(scope="module")
def base():
    return evaluate(compose(*BASE))


def test_read_predictions_csv_with_header_and_json(tmp_path):
    (tmp_path / "p.csv").write_text("image_id,top1,top2\na.jpg,3,7\nb.jpg, 5\n\n")
    assert read_predictions(str(tmp_path / "p.csv")) == {"a.jpg": [3, 7], "b.jpg": [5]}
    (tmp_path / "p.json").write_text(json.dumps({"a.jpg": [1, 2, 3, 4, 5, 6], "b.jpg": 9}))
    assert read_predictions(str(tmp_path / "p.json")) == {"a.jpg": [1, 2, 3, 4, 5], "b.jpg": [9]}
    (tmp_path / "bad.csv").write_text("a.jpg,3\nb.jpg,cat\n")
    with pytest.raises(WsolError, match="the classes of b.jpg are not integers"):
        read_predictions(str(tmp_path / "bad.csv"))
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(WsolError, match="is not valid JSON"):
        read_predictions(str(tmp_path / "bad.json"))


def _write(tmp_path, rows: dict[str, list[int]]) -> str:
    path = tmp_path / "predictions.csv"
    path.write_text("".join(f"{i},{','.join(map(str, c))}\n" for i, c in rows.items()))
    return str(path)


def test_the_models_own_predictions_from_a_file_give_its_numbers(base, tmp_path):
    own = {r["id"]: [int(c) for c in r["top5"].split()] for r in base.images}
    out = evaluate(compose(*BASE, f"eval.predictions={_write(tmp_path, own)}"))
    assert out.metrics == base.metrics and out.info["ci"] == base.info["ci"]
    assert out.info["classes_from"].startswith("predictions:") and base.info["classes_from"] is None


def test_correct_predictions_make_top1_loc_equal_gt_known_loc(base, tmp_path):
    right = {r["id"]: [r["label"]] for r in base.images}  # top-1 always right, nothing else given
    out = evaluate(compose(*BASE, f"eval.predictions={_write(tmp_path, right)}"))
    assert out.metrics["top1_cls"] == out.metrics["top5_cls"] == 100.0
    assert out.metrics["top1_loc"] == out.metrics["top5_loc"] == out.metrics["gt_known_loc"] == base.metrics[
        "gt_known_loc"]
    wrong = {r["id"]: [(r["label"] + 1) % 1000] for r in base.images}
    out = evaluate(compose(*BASE, f"eval.predictions={_write(tmp_path, wrong)}"))
    assert out.metrics["top1_loc"] == out.metrics["top1_cls"] == 0.0
    assert out.metrics["maxboxacc_v2"] == base.metrics["maxboxacc_v2"]  # the maps are the same


def test_a_classifier_equal_to_the_model_gives_its_numbers(base):
    out = evaluate(compose(*BASE, "eval.classifier=efficientnet_lite0"))
    assert out.metrics == base.metrics and out.info["classes_from"] == "classifier:efficientnet_lite0"
    other = evaluate(compose(*BASE, "eval.classifier={name: resnet18, weights: null}"))
    assert other.metrics["maxboxacc_v2"] == base.metrics["maxboxacc_v2"]
    assert other.metrics["top1_cls"] != base.metrics["top1_cls"]  # a random network's classes


def test_maps_from_files_get_top1_loc_from_a_predictions_file(base, tmp_path):
    maps = tmp_path / "maps"
    evaluate(compose(*BASE, "save_maps=true", f"maps_dir={maps}"))
    alone = evaluate(compose(*BASE, "method=from_files", f"method.maps_dir={maps}"))
    assert "top1_loc" not in alone.metrics and "top1_cls" not in alone.metrics
    own = {r["id"]: [int(c) for c in r["top5"].split()] for r in base.images}
    out = evaluate(compose(*BASE, "method=from_files", f"method.maps_dir={maps}",
                           f"eval.predictions={_write(tmp_path, own)}"))
    for key in ("top1_cls", "top5_cls", "top1_loc", "top5_loc", "gt_known_loc", "maxboxacc_v2"):
        assert out.metrics[key] == pytest.approx(base.metrics[key], abs=1e-9), key


def test_bad_external_classes_are_one_line(base, tmp_path):
    partial = {r["id"]: [1] for r in base.images[:5]}
    with pytest.raises(WsolError, match=r"^eval.predictions: 7 of 12 images have no prediction .* \(e.g. "):
        evaluate(compose(*BASE, f"eval.predictions={_write(tmp_path, partial)}"))
    path = _write(tmp_path, {r["id"]: [1] for r in base.images})
    for overrides, message in (
        ([f"eval.predictions={path}", "eval.classifier=resnet18"], "not both"),
        ([f"eval.predictions={path}", "eval.target=top1"], "eval.target=gt"),
        (["eval.predictions=/no/such.csv"], "no such file"),
        (["eval.classifier=resnet5O"], "no model preset of that name; did you mean: resnet50"),
        (["eval.classifier={nme: resnet18}"], "eval.classifier: Key 'nme' not in 'ModelConfig'"),
    ):
        with pytest.raises(WsolError, match=message) as error:
            validate(compose(*overrides))
        assert "\n" not in str(error.value)


def test_a_classifier_config_keeps_every_model_key():
    """eval.classifier builds through the same path as model=: wsolevaluation's architecture keys included."""
    from wsol.config import classifier_config
    from wsol.stages import load_model

    loaded = load_model(classifier_config({"name": "wsoleval_vgg16", "architecture": "acol", "num_classes": 5,
                                             "weights": None}), 224)
    assert type(loaded.module).__name__ == "VGG16Acol" and loaded.num_classes == 5
