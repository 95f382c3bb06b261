"""The paper's two claims on the embedded benchmark, cache reuse, records, and bad-input errors.

Trains the two embedded models once per session (about two minutes on 2 cores)."""
import json

import numpy as np
import pytest

from oodbench.cli import main
from oodbench.errors import DatasetError, ScoreError
from oodbench.leaderboard.record import BENCHMARK_VERSION
from oodbench.methods import Method, MethodOutput
from oodbench.evaluation.runner import run
from oodbench.training.embedded import _load_cached, checkpoint_path


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    out = tmp_path_factory.mktemp("records")
    return {m: run(m, out_dir=out, progress=False)[0] for m in ("entropy", "entmax", "entmax_meta")}, out


def test_entropy_maximization_beats_the_baseline(records):
    recs, _ = records
    base, entmax = recs["entropy"]["metrics"]["pixel"], recs["entmax"]["metrics"]["pixel"]
    print(f"entropy AP {base['ap']:.4f} FPR95 {base['fpr95']:.4f} | entmax AP {entmax['ap']:.4f} FPR95 {entmax['fpr95']:.4f}")
    assert entmax["ap"] > base["ap"] + 0.10
    assert entmax["fpr95"] < base["fpr95"] - 0.20
    assert entmax["auroc"] > base["auroc"]


def test_meta_classification_removes_false_positives(records):
    recs, _ = records
    seg = recs["entmax_meta"]["metrics"]["segments"]
    print({k: seg[k] for k in ("fp_before", "fp_after", "fn_before", "fn_after", "meta_auroc", "meta_ap")})
    assert seg["fp_after"] < seg["fp_before"]
    assert seg["fn_after"] - seg["fn_before"] < seg["fp_before"] - seg["fp_after"]
    assert seg["segment_threshold"] == 0.7 and seg["protocol"] == "grouped"
    assert recs["entmax_meta"]["metrics"]["pixel"] == recs["entmax"]["metrics"]["pixel"]


def test_records_are_complete_and_content_addressed(records):
    recs, out = records
    files = sorted(out.glob("*.json"))
    assert len(files) == 3
    rec = json.loads(next(f for f in files if "-entmax_meta-" in f.name).read_text())
    assert rec["schema_version"] == 1 and rec["benchmark_version"] == BENCHMARK_VERSION == 2
    assert rec["dataset"]["num_images"] == 60 and len(rec["dataset"]["fingerprint"]) == 64
    assert rec["method"]["checkpoint_sha256"] == rec["method"]["model_info"]["sha256"]
    assert rec["method"]["model_info"]["val_miou"] > 0.6
    assert rec["conventions"]["fpr95"].startswith("FPR at the first threshold")
    assert set(rec["provenance"]) >= {"oodbench_version", "git_commit", "libraries", "command", "utc_time"}
    assert rec["cost"]["images_per_second"] > 0


def test_second_run_reuses_models_and_keeps_old_records(records, tmp_path):
    _, out = records
    before = {p.name: p.read_bytes() for p in out.glob("*.json")}
    ckpt = checkpoint_path("entmax")
    mtime = ckpt.stat().st_mtime_ns
    record, path = run("entmax_meta", out_dir=out, progress=False)
    assert ckpt.stat().st_mtime_ns == mtime
    assert record["method"]["checkpoint_sha256"] == records[0]["entmax_meta"]["method"]["checkpoint_sha256"]
    assert {p.name: p.read_bytes() for p in out.glob("*.json") if p.name in before} == before
    assert path.name not in before and len(list(out.glob("*.json"))) == 4
    assert not list(out.glob(".record-*"))


class Flaky(Method):
    name = "flaky"

    def __init__(self, fail_at=None, bad=None, shape_off=False):
        self.calls, self.fail_at, self.bad, self.shape_off = 0, fail_at, bad, shape_off

    def predict(self, images):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt
        scores = images[..., 0].astype(np.float32) / 255
        if self.bad is not None and self.calls == 2:
            scores[1, 3, 4] = self.bad
        return MethodOutput(scores[:, 1:] if self.shape_off else scores)


def test_interrupted_run_leaves_no_record(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run(Flaky(fail_at=3), out_dir=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_scores_are_rejected(bad, tmp_path):
    with pytest.raises(ScoreError, match=r"flaky.*1 NaN/inf scores for sample .*row 3, column 4"):
        run(Flaky(bad=bad), out_dir=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_score_shape_mismatch_is_rejected(tmp_path):
    with pytest.raises(ScoreError, match=r"shape \(127, 256\).*label map has shape \(128, 256\)"):
        run(Flaky(shape_off=True), out_dir=tmp_path, progress=False)


def test_missing_dataset_folder_via_cli(tmp_path, capsys):
    code = main(["run", "--method", "entropy", "--dataset", "lostandfound", "--data-root", str(tmp_path / "nope"), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "nope") in err


def test_incomplete_dataset_names_counts(tmp_path):
    from oodbench.data.synthetic import ensure_synthetic
    import shutil

    src = ensure_synthetic() / "lostandfound"
    copy = tmp_path / "laf"
    shutil.copytree(src, copy)
    victim = sorted((copy / "gtCoarse" / "test").rglob("*_labelIds.png"))[5]
    victim.unlink()
    with pytest.raises(DatasetError, match=victim.name.replace("_gtCoarse_labelIds.png", "")):
        run("entropy", data_root=copy, progress=False)


def test_corrupt_cached_checkpoint_is_reported_and_not_used(records):
    """The embedded models are oodbench's own and deterministic: a damaged cached copy is named in a warning and
    trained again (``ensure_model`` then writes it anew), never loaded."""
    ckpt = checkpoint_path("baseline")
    original = ckpt.read_bytes()
    try:
        ckpt.write_bytes(original[: len(original) // 2])
        with pytest.warns(UserWarning, match=r"baseline.*damaged \(its sha256 differs.*training it again"):
            assert _load_cached(ckpt) is None
    finally:
        ckpt.write_bytes(original)
    assert _load_cached(ckpt) is not None


def test_leave_one_out_protocol_and_calibrated_threshold(records):
    loo, _ = run("entmax_meta", progress=False, meta_protocol="loo")
    seg = loo["metrics"]["segments"]
    grouped = records[0]["entmax_meta"]["metrics"]["segments"]
    assert seg["protocol"] == "loo" and seg["num_segments"] == grouped["num_segments"]
    assert seg["scaling"] == "all" and grouped["scaling"] == "fold"  # the paper's protocol, its z-scoring too
    assert seg["fp_before"] == grouped["fp_before"] and seg["fp_after"] < seg["fp_before"]

    energy, _ = run("energy_meta", progress=False)
    seg = energy["metrics"]["segments"]
    assert seg["threshold_source"] == "calibrated" and seg["calibration"]["split"] == "val"
    assert seg["calibration"]["target_tpr"] == 0.95 and seg["num_segments"] > 0
