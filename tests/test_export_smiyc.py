"""`oodbench export smiyc` writes a SegmentMeIfYouCan submission as the benchmark stores it (float16 ``value``,
gzip), for labelled and hidden splits alike, and `oodbench evaluate --smiyc` on it reproduces the run's pixel
metrics on the float16 maps."""
import json

import h5py
import numpy as np
import pytest
from red_method import Red
from real_layouts import ANOMALY_TEST, ANOMALY_VAL, write_smiyc
from sklearn.metrics import average_precision_score, roc_auc_score

from oodbench.cli import main
from oodbench.data.base import DATASETS
from oodbench.evaluation.runner import run
from oodbench.methods.base import METHODS


class CachedRed(Red):
    """Red, kept in the score cache as float16 like the model-based methods."""

    cacheable = True


@pytest.fixture()
def setup(tmp_path, monkeypatch):
    monkeypatch.setitem(METHODS._items, "red", CachedRed)
    return write_smiyc(tmp_path / "smiyc"), tmp_path


def test_round_trip_reproduces_the_runs_float16_metrics(setup, capsys):
    root, tmp = setup
    opts = ["--dataset", "smiyc_roadanomaly21", "--data-root", str(root), "--option", f"expected={len(ANOMALY_VAL)}"]
    assert main(["export", "smiyc", "--method", "red", "--split", "validation", "--out", str(tmp / "sub"), "--quiet",
                 *opts]) == 0
    folder = tmp / "sub" / "red" / "AnomalyTrack-validation"
    assert sorted(p.stem for p in folder.glob("*.hdf5")) == ANOMALY_VAL
    record, _ = run(CachedRed(), dataset="smiyc_roadanomaly21", split="validation", data_root=root,
                    dataset_options={"expected": len(ANOMALY_VAL)}, cache_root=tmp / "cache", progress=False)
    assert record["scores"]["storage"] == "float16"
    assert main(["evaluate", "--scores", str(tmp / "sub"), "--smiyc", "red/AnomalyTrack-validation", "--name", "red",
                 "--split", "validation", "--out", str(tmp / "records"), "--quiet", *opts]) == 0
    (path,) = (tmp / "records").glob("*.json")
    again = json.loads(path.read_text())["metrics"]["pixel"]
    assert {k: again[k] for k in ("auroc", "ap", "fpr95", "num_pos", "num_neg")} == \
        {k: record["metrics"]["pixel"][k] for k in ("auroc", "ap", "fpr95", "num_pos", "num_neg")}
    ds = DATASETS.create("smiyc_roadanomaly21", root=root, split="validation", expected=len(ANOMALY_VAL))
    labels = np.concatenate([s.label.ravel() for s in ds])
    scores = np.concatenate([(s.image[..., 0] / 255).astype(np.float32).astype(np.float16).ravel() for s in ds])
    keep = labels != 255
    assert again["ap"] == pytest.approx(average_precision_score(labels[keep], scores[keep]), abs=1e-12)
    assert again["auroc"] == pytest.approx(roc_auc_score(labels[keep], scores[keep]), abs=1e-12)


def test_hidden_test_split_is_written_as_the_benchmark_stores_it(setup):
    root, tmp = setup
    assert main(["export", "smiyc", "--method", "red", "--dataset", "smiyc_roadanomaly21", "--data-root", str(root),
                 "--option", f"expected={len(ANOMALY_TEST)}", "--out", str(tmp / "sub"), "--quiet"]) == 0
    ds = DATASETS.create("smiyc_roadanomaly21", root=root, split="test", expected=len(ANOMALY_TEST))
    for sample in ds:
        assert sample.label is None
        with h5py.File(tmp / "sub" / "red" / "AnomalyTrack-test" / f"{sample.id}.hdf5", "r") as f:
            value = f["value"]
            assert value.dtype == np.float16 and value.compression == "gzip" and value.compression_opts == 9
            np.testing.assert_array_equal(value[()], (sample.image[..., 0] / 255).astype(np.float32).astype(np.float16))
    assert not list((tmp / "sub").rglob(".*"))  # no temporary files left
