"""The embedded synthetic benchmark: determinism, counts, label values, anomaly placement and kinds, atomic reuse."""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from scipy.ndimage import binary_dilation, label as components

from oodbench.data import DATASETS
from oodbench.data import synthetic as syn
from oodbench.data import synthetic_scenes as scenes
from oodbench.data.base import read_label
from oodbench.data.cards import load_card
from oodbench.errors import DatasetError

SMALL = {"cityscapes/train": 3, "coco/train": 2, "lostandfound/test": 4}


@pytest.fixture(scope="module")
def bench():
    return syn.ensure_synthetic(seed=0)


def test_determinism(tmp_path, bench):
    a = syn.generate_synthetic(tmp_path / "a", seed=0, counts=SMALL, workers=1)
    b = syn.generate_synthetic(tmp_path / "b", seed=0, counts=SMALL, workers=2)
    c = syn.generate_synthetic(tmp_path / "c", seed=1, counts=SMALL)
    assert a["files_sha256"] == b["files_sha256"] != c["files_sha256"]
    for p in (tmp_path / "a").rglob("*.png"):  # every frame has its own seed: a small tree is a prefix of the full one
        assert p.read_bytes() == (bench / p.relative_to(tmp_path / "a")).read_bytes()


def test_manifest_and_card(bench):
    manifest = json.loads((bench / "manifest.json").read_text())
    assert manifest["version"] == syn.SYNTHETIC_VERSION and manifest["seed"] == 0
    assert manifest["counts"] == syn.COUNTS == load_card("synthetic")["counts"]
    assert manifest["files_sha256"] == syn.tree_hash(bench)
    card = load_card("synthetic")
    assert card["version"] == syn.SYNTHETIC_VERSION and card["image_size"] == [scenes.H, scenes.W]
    assert {k: v["count"] for k, v in card["splits"].items()} == {"val": 30, "test": 60}


def test_registered_datasets(bench):
    sizes = {("synthetic", "val"): 30, ("synthetic", "test"): 60, ("synthetic_cityscapes", "train"): 240,
             ("synthetic_cityscapes", "val"): 30, ("synthetic_coco", "train"): 120}
    for (name, split), n in sizes.items():
        ds = DATASETS.create(name, split=split)
        assert len(ds) == n and ds.name == name and ds.split == split
        sample = ds[0]
        assert sample.image.shape == (scenes.H, scenes.W, 3) and sample.label.shape == (scenes.H, scenes.W)
        assert sample.meta["dataset"] == name
    assert DATASETS.create("synthetic", root=bench, split="val").ids[0] == "01_Synth_Str_1_000000_000010"
    assert DATASETS.create("synthetic_cityscapes", split="val").ids[0] == "synthheim_000000_000019"
    with pytest.raises(DatasetError, match="valid splits: val, test"):
        DATASETS.create("synthetic", split="train")


def test_label_values(bench):
    for ds in (DATASETS.create("synthetic_cityscapes", split="train"), DATASETS.create("synthetic_cityscapes", split="val")):
        seen = set()
        for s in ds:
            seen |= set(np.unique(s.label).tolist())
        assert seen == {0, 1, 2, 5, 8, 10, 11, 13}
    for s in DATASETS.create("synthetic_coco"):
        assert set(np.unique(s.label).tolist()) == {0, 254}
    for split in ("val", "test"):
        for s in DATASETS.create("synthetic", split=split, mapping="smiyc"):
            assert set(np.unique(s.label).tolist()) <= {0, 1, 255} and (s.label == 0).any()


def test_anomalies_on_road(bench):
    native = [read_label(p) for p in sorted((bench / "lostandfound" / "gtCoarse").rglob("*_labelIds.png"))]
    assert len(native) == 90
    sizes, empty = [], 0
    for ids in native:
        assert set(np.unique(ids).tolist()) <= {0, 1, 33, *range(2, 31)}
        obj = ids >= 2
        empty += not obj.any()
        assert (ids[binary_dilation(obj)] >= 1).all(), "an anomaly touches a pixel outside the road region"
        lab, n = components(obj)
        sizes += [int(max(np.ptp(np.nonzero(lab == k)[0]), np.ptp(np.nonzero(lab == k)[1]))) + 1 for k in range(1, n + 1)]
    assert empty == 90 // syn.NO_ANOMALY_EVERY
    assert min(sizes) <= 10 and max(sizes) >= 20
    assert any((ids == scenes.NON_HAZARD_ID).any() for ids in native)
    smiyc, meta = (DATASETS.create("synthetic", split="test", mapping=m) for m in ("smiyc", "metaood"))
    ood_s = sum(int((s.label == 1).sum()) for s in smiyc)
    ood_m = sum(int((s.label == 1).sum()) for s in meta)
    assert 0 < ood_m < ood_s


def test_anomaly_kinds_absent_elsewhere(bench):
    kinds = json.loads((bench / "manifest.json").read_text())["kinds"]
    anomalies = set(kinds["lostandfound"])
    assert anomalies == set(scenes.ANOMALY_SHAPES) | set(scenes.ANOMALY_TEXTURES)
    assert not anomalies & (set(kinds["cityscapes"]) | set(kinds["coco"]))
    assert set(kinds["coco"]) == set(scenes.PROXY_SHAPES) | set(scenes.PROXY_TEXTURES)
    assert not set(kinds["coco"]) & set(kinds["cityscapes"])
    assert not set(scenes.ANOMALY_COLOURS) & set(scenes.PROXY_COLOURS)


def test_ensure_reuses_repairs_and_survives_races(tmp_path, monkeypatch, bench):
    stamp = (bench / "manifest.json").stat().st_mtime_ns
    assert syn.ensure_synthetic(0) == bench and (bench / "manifest.json").stat().st_mtime_ns == stamp
    monkeypatch.setenv("OODBENCH_HOME", str(tmp_path))
    monkeypatch.setattr(syn, "COUNTS", SMALL)
    roots = []
    threads = [threading.Thread(target=lambda: roots.append(syn.ensure_synthetic(3))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(roots)) == 1 and len(roots) == 3
    root = roots[0]
    assert json.loads((root / "manifest.json").read_text())["counts"] == SMALL
    assert [p.name for p in root.parent.iterdir()] == [root.name]  # no temp or trash folders left behind
    (root / "manifest.json").unlink()
    (root / "cityscapes").rename(root / "half-written")
    assert syn.ensure_synthetic(3) == root and (root / "cityscapes").is_dir() and not (root / "half-written").exists()
