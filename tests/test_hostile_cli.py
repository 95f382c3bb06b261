"""Hostile input at the CLI's edge (issue 17): output locations and names are checked before any work, options a
dataset does not declare and values outside a flag's range are refused, degenerate splits never give a rankable
record, and a damaged embedded-model cache is trained again. Each case: exit code 2 (or the documented result), a
message naming the value and the fix, no traceback, nothing already written changed."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from oodbench.cli import main


def _tree(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _refused(capsys, argv, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and all(n in err for n in needles), err
    return err


def _folder_split(tmp_path, labels):
    """A folder dataset (0/1/255 label PNGs) with a score map per frame."""
    lab, sco = tmp_path / "labels", tmp_path / "scores"
    lab.mkdir(parents=True)
    sco.mkdir(parents=True)
    for i, label in enumerate(labels):
        Image.fromarray(label).save(lab / f"f{i}.png")
        np.save(sco / f"f{i}.npy", np.random.default_rng(i).random(label.shape).astype(np.float32))
    return lab, sco


def test_output_and_name_are_checked_before_any_work(tmp_path, capsys, monkeypatch):
    import oodbench.evaluation.runner as runner

    called = []
    monkeypatch.setattr(runner, "prepare", lambda *a, **k: called.append(1))
    blocker = tmp_path / "records.json"
    blocker.write_text("{}")
    _refused(capsys, ["run", "--method", "entropy", "--out", str(blocker), "--quiet"], str(blocker), "not a folder")
    lab, sco = _folder_split(tmp_path, [np.zeros((4, 6), np.uint8)])
    for name in ("a/b", "two\nlines", " padded"):
        _refused(capsys, ["evaluate", "--labels", str(lab), "--scores", str(sco), "--name", name, "--out",
                          str(tmp_path / "r")], "--name", "file name")
    _refused(capsys, ["evaluate", "--labels", str(lab), "--scores", str(sco), "--name", "x", "--out", str(blocker)],
             "not a folder")
    assert called == [] and blocker.read_text() == "{}" and not (tmp_path / "r").exists()


def test_options_a_dataset_does_not_declare_are_refused(tmp_path, capsys):
    _refused(capsys, ["run", "--method", "entropy", "--option", "mapp=metaood", "--quiet"],
             "dataset 'synthetic' has no option 'mapp'", "mapping, seed, expected")
    _refused(capsys, ["run", "--method", "entropy", "--dataset", "lostandfound", "--data-root", str(tmp_path),
                      "--option", "colour=red", "--quiet"], "'lostandfound' has no option 'colour'", "mapping")
    _refused(capsys, ["data", "check", "roadanomaly", "--data-root", str(tmp_path), "--option", "x=1"],
             "'roadanomaly' has no option 'x'", "expected")


@pytest.mark.parametrize("argv, needle", [
    (["run", "--method", "entropy", "--seed", "-1"], "argument --seed: -1 is below 0, the smallest value it takes"),
    (["run", "--method", "entropy", "--batch-size", "0"], "argument --batch-size: 0 is below 1"),
    (["run", "--method", "entropy", "--bootstrap", "-5"], "argument --bootstrap: -5 is below 0"),
    (["show", "--method", "entropy", "--id", "x", "--seed", "x"], "argument --seed: 'x' is not a whole number"),
])
def test_flag_values_outside_their_range_are_refused(argv, needle, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and needle in capsys.readouterr().err


def test_flags_that_would_be_ignored_are_refused(capsys):
    _refused(capsys, ["run", "--method", "entropy", "--no-components", "--threshold", "0.5", "--quiet"],
             "--threshold", "--no-components skips them")
    _refused(capsys, ["run", "--method", "entropy", "--no-components", "--track", "obstacle", "--quiet"], "--track")


def test_a_shard_count_beyond_the_images_is_refused(capsys, tmp_path):
    _refused(capsys, ["run", "--method", "entropy", "--shard", "0/1000000000000", "--quiet", "--out", str(tmp_path)],
             "--shard 0/1000000000000", "has 60 images, so N can be at most 60")


def test_degenerate_splits_never_give_a_rankable_record(tmp_path, capsys):
    lab, sco = _folder_split(tmp_path / "ood", [np.ones((4, 6), np.uint8), np.ones((3, 5), np.uint8)])
    out = tmp_path / "records"
    assert main(["evaluate", "--labels", str(lab), "--scores", str(sco), "--name", "all_ood", "--out", str(out),
                 "--quiet", "--no-components"]) == 0
    (path,) = out.glob("*.json")
    pixel = json.loads(path.read_text())["metrics"]["pixel"]
    assert pixel["ap"] is None and pixel["auroc"] is None and pixel["fpr95"] is None  # not AP 1.0
    assert pixel["num_neg"] == 0 and "no in-distribution pixels" in pixel["undefined"]

    lab, sco = _folder_split(tmp_path / "ign", [np.full((4, 6), 255, np.uint8)])
    _refused(capsys, ["evaluate", "--labels", str(lab), "--scores", str(sco), "--name", "ignored", "--out", str(out),
                      "--quiet"], "every pixel is ignored", "nothing to evaluate")
    assert [p.name for p in out.glob("*.json")] == [path.name]


def test_a_damaged_embedded_model_cache_is_trained_again(tmp_path, monkeypatch):
    from oodbench.training import embedded

    monkeypatch.setenv("OODBENCH_HOME", str(tmp_path))
    path = embedded.checkpoint_path("baseline")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    path.with_suffix(".json").write_text("{not json")
    with pytest.warns(UserWarning, match=r"cached embedded model is damaged .*training it again"):
        assert embedded._load_cached(path) is None
    path.with_suffix(".json").write_text(json.dumps({"sha256": "0" * 64}))
    with pytest.warns(UserWarning, match=r"sha256 differs"):
        assert embedded._load_cached(path) is None


def test_records_keep_no_local_paths(tmp_path):
    """A record shared in a leaderboard names the data by name, split and fingerprint; the command line it keeps
    has path options cut to their last component."""
    from oodbench.leaderboard.record import redact_paths

    argv = ["run", "--method", "msp", "--data-root", "/home/me/secret/RoadAnomaly", "--checkpoint=/opt/w/x.pth",
            "--out", "records/", "--seed", "3"]
    assert redact_paths(argv) == ["run", "--method", "msp", "--data-root", "RoadAnomaly", "--checkpoint=x.pth",
                                  "--out", "records", "--seed", "3"]
    lab, sco = _folder_split(tmp_path / "d", [np.eye(4, 6, dtype=np.uint8)])
    out = tmp_path / "records"
    assert main(["evaluate", "--labels", str(lab), "--scores", str(sco), "--name", "m", "--out", str(out),
                 "--quiet"]) == 0
    (path,) = out.glob("*.json")
    assert "data_root" not in json.loads(path.read_text())["dataset"]


def test_a_given_threshold_outside_the_scores_warns(tmp_path, capsys):
    """Normalized entropy lies in [0, 1]: a threshold of 5 forms no component, -1 one covering each frame."""
    import warnings

    lab, sco = _folder_split(tmp_path, [np.eye(4, 6, dtype=np.uint8), np.eye(5, 7, dtype=np.uint8)])
    argv = ["evaluate", "--labels", str(lab), "--scores", str(sco), "--name", "m", "--out", str(tmp_path / "r"),
            "--quiet", "--threshold"]
    for threshold, side in (("5", "above every"), ("-1", "below every")):
        with pytest.warns(UserWarning, match=rf"--threshold {threshold} lies {side} score of folder/test"):
            assert main([*argv, threshold]) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main([*argv, "0.5"]) == 0


def test_a_refused_pickle_global_is_named(tmp_path, capsys):
    """Checkpoints and training states load with weights_only: what would have been unpickled is named."""
    import argparse

    import torch

    from oodbench.errors import CheckpointError
    from oodbench.training.train_state import load_state

    from real_layouts import write_roadanomaly

    path = tmp_path / "state.pt"
    torch.save({"model": {}, "epoch": 1, "args": argparse.Namespace(lr=1)}, path)
    data = write_roadanomaly(tmp_path / "ra")
    _refused(capsys, ["run", "--method", "msp", "--dataset", "roadanomaly", "--data-root", str(data), "--option",
                      "expected=3", "--checkpoint", str(path), "--quiet"],
             "state.pt: refused to load", "GLOBAL argparse.Namespace", "re-save the file as a plain state dict")
    with pytest.raises(CheckpointError, match=r"state.pt: refused to load.*GLOBAL argparse.Namespace"):
        load_state(path)
