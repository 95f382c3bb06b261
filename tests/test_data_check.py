"""`oodbench data check`: every problem of a broken copy is reported, not just the first."""
import shutil

import numpy as np
import pytest
from PIL import Image

from oodbench.cli import main
from oodbench.data.synthetic import ensure_synthetic


@pytest.fixture()
def laf_copy(tmp_path):
    copy = tmp_path / "laf"
    shutil.copytree(ensure_synthetic() / "lostandfound", copy)
    return copy


def test_intact_copy_is_ok(laf_copy, capsys):
    assert main(["data", "check", "synthetic", "--data-root", str(laf_copy)]) == 0
    out = capsys.readouterr().out
    assert "val: OK (30 samples)" in out and "test: OK (60 samples)" in out and "result: OK" in out


def test_lostandfound_loader_with_expected_counts(laf_copy, capsys):
    args = ["data", "check", "lostandfound", "--data-root", str(laf_copy), "--split", "test", "--deep"]
    assert main(args) == 1  # the card's 1203 test frames
    assert "found 60 test frames, expected 1203" in capsys.readouterr().out
    assert main(args + ["--option", "expected=60"]) == 0
    assert "test: OK (60 samples) fingerprint" in capsys.readouterr().out


def test_broken_copy_reports_every_problem(laf_copy, capsys):
    test_labels = sorted((laf_copy / "gtCoarse" / "test").rglob("*_labelIds.png"))
    val_labels = sorted((laf_copy / "gtCoarse" / "train").rglob("*_labelIds.png"))
    deleted = test_labels[5]
    deleted.unlink()
    stray = laf_copy / "leftImg8bit" / "test" / deleted.parent.name / "99_Stray_0_000000_000000_leftImg8bit.png"
    shutil.copy(next((laf_copy / "leftImg8bit" / "test").rglob("*.png")), stray)
    for victim in (val_labels[3], val_labels[7]):
        lab = np.array(Image.open(victim))
        lab[0, 0] = 250
        Image.fromarray(lab).save(victim)
    small = val_labels[11]
    Image.fromarray(np.array(Image.open(small))[:-1]).save(small)

    assert main(["data", "check", "synthetic", "--data-root", str(laf_copy)]) == 1
    out = capsys.readouterr().out
    assert "val: 3 problem(s) (30 samples)" in out
    assert "test: 1 problem(s)" in out and "result: PROBLEMS FOUND" in out
    stem = deleted.name.replace("_gtCoarse_labelIds.png", "")
    assert "2 images have no label file" in out and stem in out and stray.name in out  # deleted label, stray image
    for victim in (val_labels[3], val_labels[7]):
        assert f"{victim}: label values [250]" in out
    assert f"{small}: label size 256x127 differs from image" in out


def test_split_count_mismatch_still_reads_samples(laf_copy, capsys):
    victims = sorted((laf_copy / "gtCoarse" / "test").rglob("*_labelIds.png"))
    img = sorted((laf_copy / "leftImg8bit" / "test").rglob("*.png"))
    victims[0].unlink()
    img[0].unlink()
    lab = np.array(Image.open(victims[1]))
    lab[0, 0] = 250
    Image.fromarray(lab).save(victims[1])
    assert main(["data", "check", "synthetic", "--data-root", str(laf_copy), "--split", "test"]) == 1
    out = capsys.readouterr().out
    assert "found 59 test frames, expected 60" in out and f"{victims[1]}: label values [250]" in out


def test_checksums_from_card(laf_copy, monkeypatch, capsys):
    import hashlib

    from oodbench.data import check

    good = sorted(laf_copy.rglob("*.png"))[0]
    rel = str(good.relative_to(laf_copy))
    card = {"splits": {"test": {"count": 60}},
            "checksums": {rel: hashlib.sha256(good.read_bytes()).hexdigest(), "missing.zip": "0" * 64}}
    monkeypatch.setattr(check, "list_cards", lambda: ["synthetic"])
    monkeypatch.setattr(check, "load_card", lambda name: card)
    assert main(["data", "check", "synthetic", "--data-root", str(laf_copy)]) == 1
    out = capsys.readouterr().out
    assert "test: OK" in out and "missing.zip: missing" in out and rel + ":" not in out
    good.write_bytes(good.read_bytes() + b"x")
    main(["data", "check", "synthetic", "--data-root", str(laf_copy), "--split", "val"])
    assert f"{good}: sha256" in capsys.readouterr().out


def test_list_datasets_shows_cards(capsys):
    assert main(["list", "datasets"]) == 0
    out = capsys.readouterr().out
    assert "oodbench synthetic road-anomaly benchmark" in out and "val 30, test 60" in out
    assert main(["list", "datasets", "synth*", "--json"]) == 0
    import json

    assert json.loads(capsys.readouterr().out) == {"datasets": ["synthetic", "synthetic_cityscapes", "synthetic_coco"]}
