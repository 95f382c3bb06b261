"""Threshold choice for component metrics: given, fixed on a validation split, or the split's own best pixel F1
(oracle); every record says which, and the component metrics follow from it."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import precision_recall_curve

from oodbench.errors import OodbenchError
from oodbench.methods import MethodOutput
from oodbench.metrics.conventions import create_convention
from oodbench.metrics.pixel import PixelMetricState
from oodbench.evaluation.runner import run
from oodbench.evaluation.thresholds import ThresholdPolicy

from layout_files import write_png
from red_method import Red

H, W = 64, 128


def test_parse():
    assert ThresholdPolicy.parse("0.5") == ThresholdPolicy("given", value=0.5)
    assert ThresholdPolicy.parse(0.25).value == 0.25
    assert ThresholdPolicy.parse("oracle").kind == "oracle"
    assert ThresholdPolicy.parse("val") == ThresholdPolicy("validation", split="val", rule="best_f1")
    assert ThresholdPolicy.parse("validation:tpr95") == ThresholdPolicy("validation", split="validation", rule="tpr95")
    with pytest.raises(OodbenchError, match=r"threshold 'val:f2'.*best_f1, tpr95"):
        ThresholdPolicy.parse("val:f2")
    assert ThresholdPolicy.parse("oracle:smiyc_code") == ThresholdPolicy("oracle", rule="smiyc_code")
    with pytest.raises(OodbenchError, match=r"threshold 'oracle:tpr95': the oracle rules are best_f1, smiyc_code"):
        ThresholdPolicy.parse("oracle:tpr95")


def test_smiyc_code_threshold_by_hand():
    """Two frames: OoD 0.75 in each, in-distribution 0.25 and 0.5, then 0.5. Sorted thresholds .75 .75 .5 .5 .25 0 0;
    the curve keeps the first entry and each threshold's last, then gets a (0, 0) start: tp 0 1 2 2 2 2, fp 0 0 0 2 3 3,
    F1 0, 2/3, 1, 2/3, 4/7, 4/7. Its best point, index 2, indexes the uncollapsed thresholds: 0.5, not 0.75."""
    state = create_convention("smiyc768")
    state.update(np.array([1, 0, 0], np.uint8), np.array([0.75, 0.25, 0.5], np.float32))
    state.update(np.array([1, 0], np.uint8), np.array([0.75, 0.5], np.float32))
    assert state.code_best_f1_threshold() == (0.5, 1.0)
    empty = create_convention("smiyc768")
    empty.update(np.zeros(3, np.uint8), np.array([0.1, 0.2, 0.3], np.float32))
    assert all(np.isnan(empty.code_best_f1_threshold()))


@pytest.mark.parametrize("seed", range(6))
def test_best_f1_threshold_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    labels = (rng.random(5000) < 0.1).astype(np.uint8)
    scores = (rng.normal(size=5000) + 1.5 * labels).astype(np.float16).astype(np.float32)  # ties
    labels[rng.random(5000) < 0.05] = 255
    state = PixelMetricState()
    state.update(labels, scores)
    t, f1 = state.threshold_at_best_f1()
    keep = labels != 255
    precision, recall, thresholds = precision_recall_curve(labels[keep], scores[keep])
    with np.errstate(invalid="ignore"):
        f1s = np.nan_to_num(2 * precision * recall / (precision + recall))[:-1]
    assert f1 == pytest.approx(f1s.max(), abs=1e-12)
    pred, y = scores[keep] >= t, labels[keep] == 1
    assert 2 * (pred & y).sum() / (pred.sum() + y.sum()) == pytest.approx(f1, abs=1e-12)
    assert all(np.isnan(v) for v in PixelMetricState().threshold_at_best_f1())  # no positives: (nan, nan)


@pytest.fixture
def scenes(tmp_path):
    """Two 10x10 objects (red 230) and one 10x10 false blob (red 200) on background 25, per frame."""
    root = tmp_path / "mine"
    for i in range(3):
        image = np.full((H, W, 3), 25, np.uint8)
        label = np.zeros((H, W), np.uint8)
        for y, x in ((5, 5), (30, 60)):
            image[y:y + 10, x + i:x + i + 10, 0] = 230
            label[y:y + 10, x + i:x + i + 10] = 1
        image[40:50, 100:110, 0] = 200
        label[:2] = 255
        write_png(root / "images" / f"f{i}.png", image)
        write_png(root / "labels" / f"f{i}.png", label)
    return root


def _components(root, threshold, track=None):
    record, _ = run(Red(), dataset="folder", data_root=root, progress=False, threshold=threshold, track=track)
    return record["metrics"]["components"]


def test_oracle_threshold_separates_objects(scenes):
    comp = _components(scenes, "oracle", track="obstacle")
    choice = comp["threshold_choice"]
    assert choice["source"] == "oracle" and "oracle" in choice["description"] and choice["pixel_f1"] == 1.0
    assert 200 / 255 < choice["threshold"] <= 230 / 255
    assert comp["tp"] == [6] * 11 and comp["fn"] == [0] * 11 and comp["fp"] == [0] * 11
    assert comp["siou"] == 1.0 and comp["ppv"] == 1.0 and comp["f1_mean"] == 1.0
    assert comp["track"] == "obstacle" and (comp["min_pred"], comp["min_gt"]) == (50, 10)


def test_smiyc_code_oracle_is_recorded_and_used(scenes):
    """``oracle:smiyc_code``: the threshold SegmentMeIfYouCan's code picks from its 768-bin curve of the split,
    recorded with its rule; the record carries that convention's pixel metrics too."""
    record, _ = run(Red(), dataset="folder", data_root=scenes, progress=False, threshold="oracle:smiyc_code",
                    track="obstacle")
    state = create_convention("smiyc768")
    for i in range(len(list((scenes / "labels").glob("*.png")))):
        image = np.asarray(Image.open(scenes / "images" / f"f{i}.png").convert("RGB"))
        label = np.asarray(Image.open(scenes / "labels" / f"f{i}.png"))
        state.update(label, Red().predict(image[None]).scores[0])
    want, f1 = state.code_best_f1_threshold()
    comp = record["metrics"]["components"]
    choice = comp["threshold_choice"]
    assert (choice["source"], choice["rule"], choice["threshold"], choice["pixel_f1"]) == ("oracle", "smiyc_code", want, f1)
    assert "SegmentMeIfYouCan's code" in choice["description"]
    assert record["metrics"]["conventions"]["smiyc768"]["ap"] == state.compute()["ap"]
    assert comp["tp"] == ([6] * 11 if want < 230 / 255 else [0] * 11)  # components are score > t


def test_given_threshold_counts_the_false_blob(scenes):
    comp = _components(scenes, 0.7)
    assert comp["threshold_choice"] == {"threshold": 0.7, "source": "given", "rule": None, "split": None,
                                        "description": "given before evaluation"}
    # the folder dataset's default anomaly track drops predictions under 500 px: every 100-px object is missed
    assert comp["track"] == "anomaly" and comp["num_gt_components"] == 6 and comp["num_pred_components"] == 0
    assert comp["fn"] == [6] * 11 and comp["f1_mean"] == 0.0


def test_given_threshold_with_obstacle_track(scenes):
    record, _ = run(Red(), dataset="folder", data_root=scenes, progress=False, threshold=0.7, track="obstacle")
    comp = record["metrics"]["components"]
    assert comp["tp"] == [6] * 11 and comp["fp"] == [3] * 11 and comp["fn"] == [0] * 11
    assert comp["f1_mean"] == pytest.approx(2 * 6 / (2 * 6 + 3))
    assert comp["ppv"] == pytest.approx(6 / 9) and comp["siou"] == 1.0
    record, _ = run(Red(), dataset="folder", data_root=scenes, progress=False, threshold=0.95, track="obstacle")
    comp = record["metrics"]["components"]
    assert comp["tp"] == [0] * 11 and comp["fn"] == [6] * 11 and comp["f1_mean"] == 0.0 and comp["siou"] == 0.0


def test_validation_threshold_is_recorded_with_its_split(scenes):
    record, _ = run(Red(), dataset="folder", data_root=scenes, progress=False, threshold="calib:best_f1",
                    track="obstacle")
    choice = record["metrics"]["components"]["threshold_choice"]
    assert choice["source"] == "validation" and choice["split"] == "calib" and choice["rule"] == "best_f1"
    assert choice["validation"]["num_images"] == 3 and len(choice["validation"]["fingerprint"]) == 64
    assert 200 / 255 < choice["threshold"] <= 230 / 255


def test_components_can_be_switched_off(scenes):
    record, _ = run(Red(), dataset="folder", data_root=scenes, progress=False, components=False)
    assert "components" not in record["metrics"]


def test_bootstrap_intervals_in_the_record(scenes):
    """Frames with identical statistics: every resample gives the full-sample values, so intervals collapse."""
    record, _ = run(Red(), dataset="folder", data_root=scenes, progress=False, threshold=0.7, track="obstacle",
                    bootstrap=40, seed=3)
    boot = record["metrics"]["bootstrap"]["metrics"]
    assert record["metrics"]["bootstrap"]["n_resamples"] == 40 and record["metrics"]["bootstrap"]["seed"] == 3
    assert record["metrics"]["bootstrap"]["num_images"] == 3
    assert boot["ap"]["low"] == boot["ap"]["high"] == pytest.approx(record["metrics"]["pixel"]["ap"], abs=1e-12)
    assert boot["f1_mean"]["low"] == boot["f1_mean"]["high"] == pytest.approx(2 * 6 / 15)
    record, _ = run(Red(), dataset="folder", data_root=scenes, progress=False, components=False, bootstrap=10)
    assert "f1_mean" not in record["metrics"]["bootstrap"]["metrics"] and "ap" in record["metrics"]["bootstrap"]["metrics"]


def test_cli_metric_options(scenes, tmp_path, capsys):
    from oodbench.cli import main

    scores = tmp_path / "scores"
    scores.mkdir()
    for path in sorted((scenes / "images").glob("*.png")):
        np.save(scores / f"{path.stem}.npy", np.asarray(Image.open(path))[..., 0].astype(np.float32) / 255)
    out = tmp_path / "records"
    assert main(["evaluate", "--scores", str(scores), "--name", "red", "--labels", str(scenes), "--out", str(out),
                 "--quiet", "--threshold", "0.7", "--track", "obstacle", "--bootstrap", "5"]) == 0
    table = capsys.readouterr().out
    assert "| mean F1" in table and "0.7 (given, obstacle track)" in table
    (path,) = out.glob("*.json")
    metrics = json.loads(path.read_text())["metrics"]
    assert metrics["components"]["f1_mean"] == pytest.approx(2 * 6 / 15) and metrics["bootstrap"]["n_resamples"] == 5
    assert main(["evaluate", "--scores", str(scores), "--name", "red", "--labels", str(scenes), "--out", str(out),
                 "--quiet", "--threshold", "val:f3"]) == 2
    assert "RULE one of best_f1, tpr95" in capsys.readouterr().err


def test_named_conventions_next_to_canonical(scenes, tmp_path):
    from oodbench.metrics.conventions import create_convention

    record, _ = run(Red(), dataset="folder", data_root=scenes, progress=False, components=False,
                    conventions=["hist100", "fpr95_strict", "hist100"])
    named = record["metrics"]["conventions"]
    assert list(named) == ["hist100", "fpr95_strict"]
    independent = create_convention("hist100")
    for path in sorted((scenes / "images").glob("*.png")):
        label = np.asarray(Image.open(scenes / "labels" / path.name))
        independent.update(label, np.asarray(Image.open(path))[..., 0].astype(np.float32) / 255)
    assert named["hist100"] == pytest.approx(independent.compute(), nan_ok=True)
    assert named["hist100"]["convention"] == "hist100" and "meta-ood" in named["hist100"]["description"]
    with pytest.raises(OodbenchError, match="unknown convention 'hist10'.*hist100"):
        run(Red(), dataset="folder", data_root=scenes, progress=False, conventions=["hist10"])


def test_oracle_pass_reuses_the_first_pass_maps(scenes, monkeypatch):
    calls = []
    monkeypatch.setattr(Red, "predict", lambda self, images: calls.append(len(images)) or
                        MethodOutput(images[..., 0].astype(np.float32) / 255))
    record, _ = run(Red(), dataset="folder", data_root=scenes, progress=False, track="obstacle")
    assert sum(calls) == 3 and record["scores"]["storage"] == "float32"  # one model pass for 3 frames
    assert record["metrics"]["components"]["f1_mean"] == 1.0


def test_unusable_thresholds_are_refused(scenes):
    for bad in ("nan", "inf"):
        with pytest.raises(OodbenchError, match="give a finite number"):
            ThresholdPolicy.parse(bad)
    with pytest.raises(OodbenchError, match=r"sharded runs and merging need the score cache.*cacheable = True"):
        run(Red(), dataset="folder", data_root=scenes, progress=False, shard=(0, 2))
