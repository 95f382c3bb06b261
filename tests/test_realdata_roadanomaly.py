"""The published ESPNetv2 (s = 2.0) on all 60 real Road Anomaly frames through the CLI: the four closed-set scores
against the figures the original EdgeNets code gives with this protocol (../shared/realdata/README.md) and against an
exact tally of the cached maps computed here with scikit-learn, and the paper's meta stage on real segments.
One model pass per score; the _meta variants share their maps with the plain scores through the score cache."""
from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from oodbench.cli import main
from oodbench.data import DATASETS
from oodbench.paths import home

from realdata import REALDATA, ROAD_ANOMALY, espnetv2_weights, needs

WEIGHTS = espnetv2_weights(2.0)
SCORES = ("maxlogit", "msp", "entropy", "energy")
# X and X_meta share their maps: maxlogit_meta calibrates on maxlogit's, entropy reads entropy_meta's (5 model passes)
METHODS = ("maxlogit", "maxlogit_meta", "msp", "energy", "entropy_meta", "entropy")
# (score, metric) -> the original code's figure in percent, README of ../shared/realdata
PUBLISHED = {("msp", "ap"): 16.6, ("msp", "auroc"): 67.5, ("maxlogit", "ap"): 20.2, ("maxlogit", "auroc"): 75.5,
             ("maxlogit", "fpr95"): 58.2}
real = needs(ROAD_ANOMALY, WEIGHTS)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    out = tmp_path_factory.mktemp("records")
    found = {}
    for method in METHODS:
        before = set(out.glob("*.json"))
        assert main(["run", "--method", method, "--network", "espnetv2_cityscapes", "--dataset", "roadanomaly",
                     "--data-root", str(REALDATA), "--checkpoint", str(WEIGHTS), "--batch-size", "1", "--out", str(out),
                     "--quiet"]) == 0
        (path,) = set(out.glob("*.json")) - before
        found[method] = json.loads(path.read_text())
    return found


@pytest.fixture(scope="module")
def dataset():
    return DATASETS.create("roadanomaly", root=REALDATA, split="test")


def tally(record: dict, dataset, category: str | None = None) -> dict:
    """Exact pixel metrics of the run's cached float16 maps (of one frame category, if given): per distinct score
    value, the OoD and in-distribution pixel counts, handed to scikit-learn as sample weights (the same curves as
    over every pixel)."""
    key = record["scores"]["cache"]
    folder = home() / "score_cache" / key[:2] / key
    pos = np.zeros(1 << 16, np.int64)
    neg = np.zeros(1 << 16, np.int64)
    for sample in dataset:
        if category is not None and sample.meta["category"] != category:
            continue
        with np.load(folder / f"{sample.id}.npz") as z:
            bits = z["score"].astype(np.float16).view(np.uint16).ravel()
        ood = sample.label.ravel() == 1
        pos += np.bincount(bits[ood], minlength=1 << 16)
        neg += np.bincount(bits[~ood & (sample.label.ravel() == 0)], minlength=1 << 16)
    used = np.flatnonzero(pos + neg)
    values = used.astype(np.uint16).view(np.float16).astype(np.float64)
    y = np.r_[np.ones(len(used)), np.zeros(len(used))]
    s, w = np.r_[values, values], np.r_[pos[used], neg[used]].astype(np.float64)
    keep = w > 0
    y, s, w = y[keep], s[keep], w[keep]
    fpr, tpr, _ = roc_curve(y, s, sample_weight=w, drop_intermediate=False)
    return {"ap": average_precision_score(y, s, sample_weight=w), "auroc": roc_auc_score(y, s, sample_weight=w),
            "fpr95": fpr[np.argmax(tpr >= 0.95)], "num_pos": int(pos.sum()), "num_neg": int(neg.sum())}


@real
def test_scores_reproduce_the_original_codes_figures(records):
    for (score, metric), published in PUBLISHED.items():
        ours = 100 * records[score]["metrics"]["pixel"][metric]
        assert abs(ours - published) <= 0.5, (f"{score} {metric}: ours {ours:.2f} %, the original EdgeNets code "
                                              f"{published} % with the same protocol")


@real
def test_metrics_equal_an_exact_tally_of_the_cached_maps(records, dataset):
    for score in SCORES:
        pixel, want = records[score]["metrics"]["pixel"], tally(records[score], dataset)
        assert (pixel["num_pos"], pixel["num_neg"]) == (want["num_pos"], want["num_neg"]) == (5446413, 49849587)
        for k in ("ap", "auroc", "fpr95"):
            assert pixel[k] == pytest.approx(want[k], abs=1e-9), (score, k)


@real
def test_per_category_metrics_equal_a_tally_of_the_categorys_frames(records, dataset):
    categories = records["maxlogit"]["metrics"]["categories"]
    counts = {c: v["num_images"] for c, v in categories.items()}
    assert counts == {"animals": 31, "cones": 8, "lost": 3, "obstacles": 15, "vehicle": 3}
    for category, got in categories.items():
        want = tally(records["maxlogit"], dataset, category)
        assert (got["pixel"]["num_pos"], got["pixel"]["num_neg"]) == (want["num_pos"], want["num_neg"])
        for k in ("ap", "auroc", "fpr95"):
            assert got["pixel"][k] == pytest.approx(want[k], abs=1e-9), (category, k)
    assert sum(v["pixel"]["num_pos"] for v in categories.values()) == 5446413
    ground_truth = records["maxlogit"]["metrics"]["instances"]["ground_truth"]
    assert ground_truth.startswith("dataset instance labels on 46 of 60 images")  # the release's labels_instance.png


@real
def test_records_name_the_network_its_protocol_and_weights(records):
    published = "a72d59699801c7ce8e8b89a53af9097eaaa60dc12180ecde86fd700ba1222fe8"
    for method, record in records.items():
        m = record["method"]
        assert m["network"] == "espnetv2_cityscapes" and m["model"] == "espnetv2"
        assert m["protocol"]["input_size"] == [1024, 512] and m["protocol"]["score_channels"] == 19
        assert m["checkpoint_sha256"] == published and m["model_info"]["matches_published"] is True
        assert record["dataset"]["num_images"] == 60 and record["scores"]["storage"] == "float16"


@real
def test_meta_stage_on_real_segments(records):
    """Same maps as the plain scores; segments at 0.7 normalized entropy, or (max logit, unbounded) at 95 % pixel TPR
    of the only split there is, which the record says; grouped cross-validation by image removes most false
    positives."""
    for meta, base in (("maxlogit_meta", "maxlogit"), ("entropy_meta", "entropy")):
        rec = records[meta]
        assert rec["metrics"]["pixel"] == records[base]["metrics"]["pixel"]
        seg = rec["metrics"]["segments"]
        print(f"\n{meta}: {seg['num_segments']} segments, FP {seg['fp_before']} -> {seg['fp_after']}, "
              f"FN {seg['fn_before']} -> {seg['fn_after']}, meta AUROC {100 * seg['meta_auroc']:.1f} %, "
              f"threshold {seg['segment_threshold']:.4g}")
        assert seg["protocol"] == "grouped" and seg["num_images"] == 60
        assert seg["fp_before"] > seg["fp_after"] and seg["fn_after"] >= seg["fn_before"]
        assert 0.5 < seg["meta_auroc"] <= 1.0
    assert records["entropy_meta"]["metrics"]["segments"]["segment_threshold"] == 0.7
    calibration = records["maxlogit_meta"]["metrics"]["segments"]["calibration"]
    assert calibration["on_evaluated_split"] is True and calibration["split"] == "test"
