"""`oodbench evaluate`: precomputed score maps give scikit-learn's pooled metrics and the same record as `run`."""
import json

import numpy as np
import pytest
from PIL import Image

from oodbench.cli import main
from oodbench.methods import Method, MethodOutput
from oodbench.evaluation.runner import run

from pixel_reference import assert_close, sklearn_metrics

H, W, N = 20, 30, 6
IDS = [f"frame_{i:02d}" for i in range(N)]


@pytest.fixture()
def labels(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "labels"
    d.mkdir()
    maps = {}
    for i in IDS:
        lab = rng.choice(np.array([0, 1, 255], np.uint8), size=(H, W), p=[0.6, 0.3, 0.1])
        Image.fromarray(lab).save(d / f"{i}.png")
        maps[i] = lab
    return d, maps


def make_scores(labels, dtype, seed=1):
    """Scores that separate the classes imperfectly, with ties when stored as float16."""
    rng = np.random.default_rng(seed)
    return {i: (rng.normal(size=lab.shape) + 1.2 * (lab == 1)).astype(dtype) for i, lab in labels.items()}


def save_npy(folder, scores, skip=()):
    """Write each score map as ``<folder>/<id>.npy``; return the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, s in scores.items():
        if i not in skip:
            np.save(folder / f"{i}.npy", s)
    return folder


def pooled_sklearn(labels, scores):
    return sklearn_metrics(np.concatenate([labels[i].ravel() for i in IDS]),
                           np.concatenate([scores[i].astype(np.float64).ravel() for i in IDS]))


def evaluate(tmp_path, *args):
    out = tmp_path / "records"
    code = main(["evaluate", *args, "--out", str(out), "--quiet"])
    assert code == 0
    (path,) = out.glob("*.json")
    return json.loads(path.read_text())


@pytest.mark.parametrize("fmt", ["npy32", "npz16", "npz16_key", "hdf5", "smiyc"])
def test_exact_metrics_per_format(fmt, labels, tmp_path):
    label_dir, maps = labels
    scores = make_scores(maps, np.float16)  # float16-representable: the state is exact
    d = tmp_path / "scores"
    target = d / "MyMethod" / "LostAndFound-test" if fmt == "smiyc" else d
    target.mkdir(parents=True)
    for i, s in scores.items():
        if fmt == "npy32":
            np.save(target / f"{i}.npy", s.astype(np.float32))
        elif fmt == "npz16":
            np.savez(target / f"{i}.npz", s)
        elif fmt == "npz16_key":
            np.savez_compressed(target / f"{i}.npz", value=s, other=np.zeros(3))
        else:
            h5py = pytest.importorskip("h5py")
            with h5py.File(target / f"{i}.hdf5", "w") as f:
                f.create_dataset("value", data=s, compression=9)
    extra = ["--smiyc", "MyMethod/LostAndFound-test"] if fmt == "smiyc" else []
    rec = evaluate(tmp_path, "--scores", str(d), "--name", "mine", "--labels", str(label_dir), *extra)
    assert_close(rec["metrics"]["pixel"], pooled_sklearn(maps, scores), 1e-12)
    assert rec["method"]["name"] == "mine" and rec["method"]["kind"] == "precomputed"
    assert rec["method"]["score_dtype"] == ("float32" if fmt == "npy32" else "float16")
    assert rec["method"]["score_format"] == {"npy32": "npy", "npz16": "npz", "npz16_key": "npz", "hdf5": "hdf5",
                                             "smiyc": "hdf5-smiyc"}[fmt]
    assert rec["dataset"]["name"] == "folder" and rec["dataset"]["num_images"] == N
    assert rec["dataset"]["fingerprint_kind"] == "names+sizes"


def test_raw_float32_within_histogram_tolerance(labels, tmp_path):
    """Raw float32 scores are binned to 20 key bits (11 mantissa bits): ~1e-3 in AP/FPR95; asserted at 2e-3."""
    label_dir, maps = labels
    scores = make_scores(maps, np.float32, seed=2)
    d = save_npy(tmp_path / "scores", scores)
    rec = evaluate(tmp_path, "--scores", str(d), "--name", "raw32", "--labels", str(label_dir))
    assert_close(rec["metrics"]["pixel"], pooled_sklearn(maps, scores), 2e-3)


def test_shape_mismatch_needs_resize(labels, tmp_path, capsys):
    label_dir, maps = labels
    d = save_npy(tmp_path / "scores", make_scores(maps, np.float32))
    np.save(d / f"{IDS[3]}.npy", np.ones((H // 2, W // 2), np.float32))
    args = ["evaluate", "--scores", str(d), "--name", "m", "--labels", str(label_dir), "--quiet",
            "--out", str(tmp_path / "records")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert IDS[3] in err and "(10, 15)" in err and "--resize" in err
    assert not (tmp_path / "records").exists()
    assert main(args + ["--resize"]) == 0
    (path,) = (tmp_path / "records").glob("*.json")
    method = json.loads(path.read_text())["method"]
    assert method["resize"] == "bilinear" and method["resized_maps"] == 1


def test_missing_score_file_names_id_and_paths(labels, tmp_path, capsys):
    label_dir, maps = labels
    d = save_npy(tmp_path / "scores", make_scores(maps, np.float16), skip=(IDS[4],))
    assert main(["evaluate", "--scores", str(d), "--name", "m", "--labels", str(label_dir), "--quiet",
                 "--out", str(tmp_path / "records")]) == 2
    err = capsys.readouterr().err
    assert f"no score file for sample {IDS[4]!r}" in err and str(d / f"{IDS[4]}.npy") in err


def test_dataset_and_labels_are_exclusive(labels, tmp_path, capsys):
    label_dir, _ = labels
    assert main(["evaluate", "--scores", str(tmp_path), "--name", "m", "--quiet"]) == 2
    assert "--labels" in capsys.readouterr().err


class FromArrays(Method):
    name = "mine"

    cacheable = True  # each test's maps differ, so each uses its own name

    def __init__(self, scores, name="arrays"):
        self.scores = scores
        self.name = name

    def predict_samples(self, samples):
        return MethodOutput(np.stack([self.scores[s.id] for s in samples]))


def test_evaluate_and_run_records_are_interchangeable(labels, tmp_path):
    label_dir, maps = labels
    scores = make_scores(maps, np.float32, seed=3)
    d = save_npy(tmp_path / "scores", scores)
    ev = evaluate(tmp_path, "--scores", str(d), "--name", "mine", "--labels", str(label_dir), "--deep")
    rec, _ = run(FromArrays(scores), dataset="folder", data_root=label_dir, progress=False, deep_fingerprint=True,
                 score_cache=False)
    assert ev["metrics"] == rec["metrics"]
    assert rec["scores"]["storage"] == "float32" and ev["scores"]["storage"] == "float32"
    # with its score cache, run computes on the float16 maps it stores: evaluate on float16 maps agrees
    cached, _ = run(FromArrays(scores, name="arrays-interchangeable"), dataset="folder", data_root=label_dir,
                    progress=False, cache_root=tmp_path / "cache")
    d16 = save_npy(tmp_path / "scores16", {i: s.astype(np.float16) for i, s in scores.items()})
    ev16 = evaluate(tmp_path / "16", "--scores", str(d16), "--name", "mine", "--labels", str(label_dir))
    assert cached["scores"]["storage"] == "float16" and cached["metrics"] == ev16["metrics"]
    assert set(ev) == set(rec)
    assert set(ev["dataset"]) == set(rec["dataset"])
    assert ev["dataset"]["fingerprint"] == rec["dataset"]["fingerprint"]
    assert ev["dataset"]["fingerprint_kind"] == "content"
    shallow, _ = run(FromArrays(scores), dataset="folder", data_root=label_dir, progress=False)
    assert shallow["dataset"]["fingerprint"] != rec["dataset"]["fingerprint"]
    assert shallow["dataset"]["fingerprint_kind"] == "names+sizes"
