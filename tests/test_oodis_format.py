"""The OoDIS / Cityscapes instance submission: `oodbench export oodis` writes it as cityscapesScripts and OoDIS
(kumuji/anomaly-benchmark-suite) read it, and `oodbench evaluate --instances` reads it back: the run's
metrics.instances exactly, hand-worked AP on a hand-built submission, and an error naming the file and the fix for
each malformed one."""
import json
import re
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from red_method import Red
from scipy import ndimage
from real_layouts import ANOMALY_TEST, FS_STEMS, write_smiyc
from realdata import REALDATA, ROAD_ANOMALY, needs

from oodbench.cli import main
from oodbench.data.base import DATASETS
from oodbench.evaluation.oodis import folder_name, frame_name, frame_table
from oodbench.segments.collector import instance_ground_truth
from oodbench.evaluation.runner import run
from oodbench.methods import MethodOutput
from oodbench.methods.base import METHODS
from oodbench.metrics.instances import OVERLAPS, InstanceMetricState

H, W = 60, 80
SAME = ("ap", "ap50", "ap_per_overlap", "num_gt_instances", "num_pred_instances", "min_region", "ground_truth")
VERIFY_PNG = re.compile(r".*_instanceIds_\d+_1.png$")  # OoDIS verify_submission.py's mask names


class SmoothRed(Red):
    """The red channel / 255 averaged over 7x7 pixels (few speckle components), kept in the score cache as float16
    like the model-based methods."""

    name = "smooth_red"
    cacheable = True

    def predict(self, images):
        return MethodOutput(ndimage.uniform_filter(super().predict(images).scores, size=(1, 7, 7)))


class FailingRed(SmoothRed):
    """Fails on its third batch, after some frames were written."""

    calls = 0

    def predict(self, images):
        FailingRed.calls += 1
        if FailingRed.calls == 3:
            raise RuntimeError("the model fell over")
        return super().predict(images)


@pytest.fixture()
def red(tmp_path, monkeypatch):
    monkeypatch.setitem(METHODS._items, "smooth_red", SmoothRed)
    monkeypatch.setenv("OODBENCH_SCORE_CACHE", str(tmp_path / "cache"))
    return tmp_path


def lines_of(txt):
    return [line.split(" ") for line in txt.read_text().splitlines()]


def evaluate_instances(tmp_path, *args):
    """`evaluate --instances` alone: its JSON result."""
    out = tmp_path / "results"
    assert main(["evaluate", *args, "--out", str(out), "--quiet"]) == 0
    (path,) = out.glob("*.json")
    return json.loads(path.read_text())


def test_round_trip_reproduces_the_runs_instance_metrics(red):
    tmp = red
    record, _ = run(SmoothRed(), dataset="synthetic", split="val", progress=False, cache_root=tmp / "run-cache")
    want = record["metrics"]["instances"]
    assert main(["export", "oodis", "--method", "smooth_red", "--dataset", "synthetic", "--split", "val",
                 "--out", str(tmp / "sub"), "--quiet"]) == 0
    folder = tmp / "sub" / "synthetic-val"
    assert [p.name for p in (tmp / "sub").iterdir()] == ["synthetic-val"]  # nothing else, no temporary files
    ds = DATASETS.create("synthetic", split="val")
    masks = set()
    for sample in ds:
        rows = lines_of(folder / f"{sample.id}_instanceIds_pred.txt")
        assert rows and all(label == "1" and VERIFY_PNG.match(name) for name, label, _ in rows)
        masks |= {name for name, _, _ in rows}
    assert masks == {p.name for p in folder.glob("*.png")}  # every mask listed, as OoDIS's verifier wants
    got = evaluate_instances(tmp, "--instances", str(tmp / "sub"), "--dataset", "synthetic", "--split", "val")
    assert {k: got["metrics"]["instances"][k] for k in SAME} == {k: want[k] for k in SAME}
    assert want["num_pred_instances"] > 100 and 0 < want["ap"] < 1 and record["scores"]["storage"] == "float16"
    assert got["dataset"]["fingerprint"] == record["dataset"]["fingerprint"] and got["submission"] == str(folder)


def cityscapes_ap(folder, frames, monkeypatch):
    """cityscapesScripts' own reading of the files (readPredInfo, masks opened in assignGt2Preds) and its
    evaluateMatches, on ground truth written as Cityscapes instanceIds (OoDIS: the anomaly class mapped onto car,
    26, label 1 of the predictions rewritten to it as its preprocess_files.py does)."""
    ev = pytest.importorskip("cityscapesscripts.evaluation.evalInstanceLevelSemanticLabeling",
                             reason="cityscapesscripts is not installed (extra dev)")
    from cityscapesscripts.evaluation.instances2dict import instances2dict

    if not hasattr(np, "in1d"):  # removed in numpy 2.4; cityscapesScripts 2.3 still calls it
        monkeypatch.setattr(np, "in1d", lambda a, b: np.isin(a, b).ravel(), raising=False)
    args = ev.CArgs()
    args.overlaps, args.minRegionSizes = OVERLAPS, np.array([10])
    args.distanceThs, args.distanceConfs = np.array([float("inf")]), np.array([-float("inf")])
    args.distanceAvailable, args.instLabels, args.quiet = False, ["car"], True
    args.predictionPath = str(folder.resolve())
    matches = {}
    for sample, frame in frames:
        gt, void = ground_truth(sample)
        encoded = np.where(gt > 0, 26000 + gt, np.where(void, 0, 7)).astype(np.uint16)  # 0 void, 7 road
        gt_png = folder.parent / f"{frame}_gtFine_instanceIds.png"
        Image.fromarray(encoded).save(gt_png)
        pred_info = ev.readPredInfo(str((folder / f"{frame}_instanceIds_pred.txt").resolve()), args)
        assert {info["labelID"] for info in pred_info.values()} == {1}
        for info in pred_info.values():
            info["labelID"] = 26
        gts = ev.filterGtInstances(instances2dict([str(gt_png)])[str(gt_png.resolve())], args)
        gt_matches, pred_matches = ev.assignGt2Preds(gts, Image.open(gt_png), pred_info, args)
        matches[frame] = {"groundTruth": gt_matches, "prediction": pred_matches}
    return ev.evaluateMatches(matches, args)[0, 0]


def ground_truth(sample):
    """(instance ids, void) of a sample, by the rule every instance metric uses."""
    return instance_ground_truth(sample.label, sample.instance_label)[0], sample.label == 255


def test_cityscapes_scripts_reads_the_files_as_oodbench_does(red, monkeypatch):
    tmp = red
    assert main(["export", "oodis", "--method", "smooth_red", "--dataset", "synthetic", "--split", "val", "--threshold",
                 "0.65", "--out", str(tmp / "sub"), "--quiet"]) == 0
    folder = tmp / "sub" / "synthetic-val"
    ds = DATASETS.create("synthetic", split="val")
    frames = [(sample, frame_name("synthetic", sample.id)) for sample in ds]
    state = InstanceMetricState(0.65)
    for sample, frame in frames:
        state.add_table(*frame_table(folder, frame, *ground_truth(sample)))
    ours = np.array(list(state.compute()["ap_per_overlap"].values()))
    assert state.num_pred > 100 and ours[0] > 0
    np.testing.assert_allclose(ours, cityscapes_ap(folder, frames, monkeypatch), atol=1e-12, equal_nan=True)


def box(array, y, x, h, w, value):
    array[y:y + h, x:x + w] = value
    return array


def write_mask(path, mask):
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)


@pytest.fixture()
def hand_built(tmp_path):
    """Image a: instances A (20x20) and B (10x10); predictions A exactly (0.9), 80 px inside B (IoU 0.8, 0.6) and a
    5x5 false positive (0.7). Image b: no OoD pixels, one empty mask. IoU thresholds 0.50..0.75 (six): TP 0.9, FP
    0.7, TP 0.6: (P, R) = (2/3, 1), (1/2, 1/2), (1, 1/2), end (1, 0), centred recall steps 1/4 each: AP 19/24.
    0.80..0.95 (four): B is missed and its prediction a false positive: P 1/3, 1/2, 1 at R 1/2, steps 0, 0, 1/4, 1/4:
    AP 1/2. Mean (6 * 19/24 + 4 / 2) / 10 = 0.675."""
    labels, sub = tmp_path / "labels", tmp_path / "sub"
    labels.mkdir()
    sub.mkdir()
    a = box(box(np.zeros((H, W), np.uint8), 10, 10, 20, 20, 1), 40, 50, 10, 10, 1)
    a[0:3] = 255
    Image.fromarray(a).save(labels / "a.png")
    Image.fromarray(np.zeros((H, W), np.uint8)).save(labels / "b.png")
    preds = [box(np.zeros((H, W), bool), 10, 10, 20, 20, True), box(np.zeros((H, W), bool), 40, 50, 10, 8, True),
             box(np.zeros((H, W), bool), 5, 60, 5, 5, True)]
    rows = []
    for k, (mask, conf) in enumerate(zip(preds, (0.9, 0.6, 0.7)), 1):
        write_mask(sub / f"a_instanceIds_{k}_1.png", mask)
        rows.append(f"a_instanceIds_{k}_1.png 1 {conf}\n")
    (sub / "a_instanceIds_pred.txt").write_text("".join(rows))
    write_mask(sub / "b_instanceIds_0_1.png", np.zeros((H, W), bool))
    (sub / "b_instanceIds_pred.txt").write_text("b_instanceIds_0_1.png 1 0.0\n")
    return labels, sub


def test_hand_built_submission_has_the_hand_worked_ap(hand_built, tmp_path):
    labels, sub = hand_built
    got = evaluate_instances(tmp_path, "--instances", str(sub), "--labels", str(labels))["metrics"]["instances"]
    assert list(got["ap_per_overlap"].values()) == pytest.approx([19 / 24] * 6 + [0.5] * 4)
    assert got["ap50"] == pytest.approx(19 / 24) and got["ap"] == pytest.approx(0.675)
    assert got["num_gt_instances"] == 2 and got["num_pred_instances"] == 3 and got["threshold"] is None



def test_overlapping_masks_are_each_matched_as_cityscapes_scripts_does(hand_built, tmp_path, monkeypatch):
    """A fourth mask, more confident than the exact one, overlaps it (IoU 0.82 with instance A): up to IoU 0.80 it
    takes A and prediction 1 becomes a false positive; above, it is a false positive itself. Each mask is matched
    on its own, as by cityscapesScripts, which scores these files the same to 1e-12."""
    labels, sub = hand_built
    write_mask(sub / "a_instanceIds_4_1.png", box(np.zeros((H, W), bool), 10, 12, 20, 20, True))
    with open(sub / "a_instanceIds_pred.txt", "a") as txt:
        txt.write("a_instanceIds_4_1.png 1 0.95\n")
    got = evaluate_instances(tmp_path, "--instances", str(sub), "--labels", str(labels))["metrics"]["instances"]
    assert got["num_pred_instances"] == 4
    frames = [(SimpleNamespace(label=np.asarray(Image.open(labels / f"{name}.png")), instance_label=None), name)
              for name in ("a", "b")]
    reference = cityscapes_ap(sub, frames, monkeypatch)
    np.testing.assert_allclose(list(got["ap_per_overlap"].values()), reference, atol=1e-12)
    assert got["ap50"] != pytest.approx(19 / 24)  # the overlapping mask changed the result

def test_with_scores_the_record_carries_the_submissions_instances(hand_built, tmp_path):
    labels, sub = hand_built
    scores = tmp_path / "scores"
    scores.mkdir()
    for name in ("a", "b"):
        np.save(scores / f"{name}.npy", np.random.default_rng(0).random((H, W)).astype(np.float32))
    out = tmp_path / "records"
    assert main(["evaluate", "--scores", str(scores), "--instances", str(sub), "--labels", str(labels), "--name", "x",
                 "--threshold", "0.5", "--out", str(out), "--quiet"]) == 0
    (path,) = out.glob("*.json")
    metrics = json.loads(path.read_text())["metrics"]
    assert metrics["instances"]["ap"] == pytest.approx(0.675) and "submission" in metrics["instances"]["rules"]
    assert metrics["instances"]["predictions"]["folder"] == str(sub) and "auroc" in metrics["pixel"]


@pytest.mark.parametrize("change, message", [
    (lambda sub: (sub / "a_instanceIds_pred.txt").unlink(), "a_instanceIds_pred.txt: no prediction file for image 'a'"),
    (lambda sub: (sub / "a_instanceIds_2_1.png").unlink(), "a_instanceIds_2_1.png does not exist"),
    (lambda sub: write_mask(sub / "a_instanceIds_2_1.png", np.ones((H // 2, W), bool)),
     "mask of shape 30x80 (HxW), the image's labels are 60x80"),
    (lambda sub: (sub / "a_instanceIds_pred.txt").write_text("a_instanceIds_1_1.png 1 high\n"),
     "line 1: confidence 'high' is not a number"),
    (lambda sub: (sub / "a_instanceIds_pred.txt").write_text("a_instanceIds_1_1.png 26 0.9\n"),
     "line 1: label id 26 is not OoDIS's anomaly class; expected 1"),
    (lambda sub: (sub / "a_instanceIds_pred.txt").write_text("a_instanceIds_1_1.png 1 0.9\na_instanceIds_1_1.png 1 0.5\n"),
     "line 2: mask a_instanceIds_1_1.png is listed twice (also on line 1)"),
])
def test_malformed_submissions_name_the_file_and_the_fix(hand_built, tmp_path, capsys, change, message):
    labels, sub = hand_built
    change(sub)
    assert main(["evaluate", "--instances", str(sub), "--labels", str(labels), "--out", str(tmp_path / "r"),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and str(sub) in err
    assert not (tmp_path / "r").exists()


def test_hidden_test_split_needs_a_threshold_and_gets_oodis_names(red):
    tmp = red
    root = write_smiyc(tmp / "smiyc")
    opts = ["--dataset", "smiyc_roadanomaly21", "--data-root", str(root), "--option", f"expected={len(ANOMALY_TEST)}",
            "--out", str(tmp / "sub"), "--quiet"]
    assert main(["export", "oodis", "--method", "smooth_red", *opts]) == 2  # the default oracle needs labels
    assert not (tmp / "sub").exists() or not any((tmp / "sub").iterdir())
    assert main(["export", "oodis", "--method", "smooth_red", "--threshold", "0.5", *opts]) == 0
    folder = tmp / "sub" / "roadanomaly"
    assert sorted(p.name for p in folder.glob("*.txt")) == [f"{i}_instanceIds_pred.txt" for i in ANOMALY_TEST]
    for txt in folder.glob("*.txt"):
        assert all(VERIFY_PNG.match(name) and (folder / name).is_file() for name, _, _ in lines_of(txt))


def test_a_failed_export_leaves_nothing_and_a_new_one_replaces_the_old(red, monkeypatch):
    tmp = red
    folder = tmp / "sub" / "synthetic-val"

    def export(method, threshold="0.9"):
        return main(["export", "oodis", "--method", method, "--dataset", "synthetic", "--split", "val", "--threshold",
                     threshold, "--batch-size", "2", "--out", str(tmp / "sub"), "--no-score-cache", "--quiet"])

    monkeypatch.setitem(METHODS._items, "failing", FailingRed)
    FailingRed.calls = 0
    with pytest.raises(RuntimeError, match="fell over"):
        export("failing")
    assert list((tmp / "sub").iterdir()) == []  # frames were written, and are gone with the failure
    assert export("smooth_red") == 0
    (folder / "stale_instanceIds_9_1.png").write_bytes(b"")
    assert export("smooth_red", "0.7") == 0  # a second export replaces the first whole
    assert not (folder / "stale_instanceIds_9_1.png").exists() and len(list(folder.glob("*.txt"))) == 30
    (folder / "notes.md").write_text("mine")
    assert export("smooth_red") == 2  # a folder holding anything else is never replaced
    assert (folder / "notes.md").read_text() == "mine"


def test_oodis_folder_and_frame_names():
    assert [folder_name(d, "test") for d in ("smiyc_roadanomaly21", "smiyc_roadobstacle21", "fishyscapes_laf")] == \
        ["roadanomaly", "roadobstacle", "fishyscapes"]
    assert folder_name("synthetic", "val") == "synthetic-val"
    fs_id = next(iter(FS_STEMS))  # <NNNN>_<LostAndFound frame>, as OoDIS's expected_files name it with _gtCoarse
    assert frame_name("fishyscapes_laf", fs_id) == "04_Maurener_Weg_8_000000_000030_gtCoarse"
    assert frame_name("smiyc_roadanomaly21", "airplane0000") == "airplane0000"


@pytest.mark.slow
@needs(ROAD_ANOMALY)
def test_real_road_anomaly_round_trip_with_its_instance_labels(red):
    """Real frames and their instance labels (46 of 60): export, then evaluate --instances, gives the run's
    metrics.instances."""
    tmp = red
    record, _ = run(SmoothRed(), dataset="roadanomaly", data_root=REALDATA, threshold=0.98, progress=False,
                    cache_root=tmp / "run-cache")
    want = record["metrics"]["instances"]
    assert want["ground_truth"].startswith("dataset instance labels on 46 of 60")
    common = ["--dataset", "roadanomaly", "--data-root", str(REALDATA), "--quiet"]
    assert main(["export", "oodis", "--method", "smooth_red", "--threshold", "0.98", "--out", str(tmp / "sub"), *common]) == 0
    got = evaluate_instances(tmp, "--instances", str(tmp / "sub"), *common[:-1])["metrics"]["instances"]
    assert {k: got[k] for k in SAME} == {k: want[k] for k in SAME} and want["num_pred_instances"] > 0
