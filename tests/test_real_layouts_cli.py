"""Every real on-disk layout through `oodbench run` and `oodbench evaluate` on the command line: both give
scikit-learn's pooled pixel metrics on the loader's pixels, and interchangeable records."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from oodbench.cli import main
from oodbench.data import DATASETS
from oodbench.methods import METHODS

from layout_files import random_rgb, write_png
from red_method import Red
from real_layouts import (FS_STEMS, H, W, label_map, write_fs_laf, write_huggingface, write_laf, write_preprocessed,
                          write_roadanomaly, write_smiyc, write_static)

LAF_STEMS = {"04_Maurener_Weg_8_000000_000030": [2, 33], "02_Hanns_Klemm_Str_44_000001_000100": [17],
             "13_Elly_Beinhorn_Str_000003_000140": []}


def _laf(tmp_path: Path, mapping: str):
    root = write_laf(tmp_path / "lost_and_found", "test", LAF_STEMS, h=H, w=W)
    return "lostandfound", "test", root, {"mapping": mapping, "expected": 3}


def _folder(tmp_path: Path):
    root = tmp_path / "mine"
    for i in range(3):
        write_png(root / "images" / f"scene_{i}.png", random_rgb(i, H, W))
        write_png(root / "labels" / f"scene_{i}.png", label_map((0, 1, 255)))
    return "folder", "test", root, {"expected": 3}


def _fs_laf_release(tmp_path: Path):
    root, laf = write_fs_laf(tmp_path / "fishyscapes_lostandfound", tmp_path / "lost_and_found")
    return "fishyscapes_laf", "val", root, {"laf_root": str(laf), "expected": len(FS_STEMS)}


LAYOUTS = {
    "lostandfound-smiyc": lambda t: _laf(t, "smiyc"),
    "lostandfound-metaood": lambda t: _laf(t, "metaood"),
    "roadanomaly": lambda t: ("roadanomaly", "test", write_roadanomaly(t / "ra" / "RoadAnomaly_jpg").parent,
                              {"expected": 3}),
    "smiyc_roadanomaly21": lambda t: ("smiyc_roadanomaly21", "validation", write_smiyc(t / "smiyc"), {"expected": 2}),
    "smiyc_roadobstacle21": lambda t: ("smiyc_roadobstacle21", "validation", write_smiyc(t / "smiyc"),
                                       {"expected": 2}),
    "fishyscapes_laf-release": _fs_laf_release,
    "fishyscapes_laf-preprocessed": lambda t: (
        "fishyscapes_laf", "val", write_preprocessed(t / "fs" / "LostAndFound", ["0000", "0001", "0002"]).parent,
        {"expected": 3}),
    "fishyscapes_static-v2": lambda t: (
        "fishyscapes_static", "val", write_static(t / "fs_static", t / "cityscapes")[0],
        {"cityscapes_root": str(t / "cityscapes"), "version": "v2", "expected": 2}),
    "folder": _folder,
    "huggingface": lambda t: ("huggingface", "test", None,
                              {"path": str(write_huggingface(t / "hf")), "label_column": "mask",
                               "mapping": "roadanomaly", "expected": 3}),
}


def _cli(command: str, out: Path, dataset: str, split: str, root, options: dict, *extra: str) -> dict:
    args = [command, *extra, "--dataset", dataset, "--split", split, "--out", str(out), "--quiet"]
    if root is not None:
        args += ["--data-root", str(root)]
    for key, value in options.items():
        args += ["--option", f"{key}={value}"]
    assert main(args) == 0
    (path,) = out.glob("*.json")
    return json.loads(path.read_text())


def _sklearn(labels: list[np.ndarray], scores: list[np.ndarray]) -> dict:
    lab = np.concatenate([x.ravel() for x in labels])
    sc = np.concatenate([x.ravel() for x in scores]).astype(np.float64)
    keep = lab != 255
    y, s = (lab[keep] == 1).astype(int), sc[keep]
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    return {"auroc": roc_auc_score(y, s), "ap": average_precision_score(y, s), "fpr95": fpr[np.argmax(tpr >= 0.95)],
            "num_pos": int(y.sum()), "num_neg": int((1 - y).sum())}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_run_and_evaluate_on_every_real_layout(layout, tmp_path, monkeypatch):
    monkeypatch.setitem(METHODS._items, Red.name, Red)
    dataset, split, root, options = LAYOUTS[layout](tmp_path)
    ran = _cli("run", tmp_path / "run", dataset, split, root, options, "--method", Red.name)

    ds = DATASETS.create(dataset, root=root, split=split, **options)
    samples = [ds[i] for i in range(len(ds))]
    scores_dir = tmp_path / "scores"
    scores_dir.mkdir()
    scores = []
    for s in samples:
        scores.append(Red().predict(s.image[None]).scores[0])
        np.save(scores_dir / f"{s.id}.npy", scores[-1])
    evaluated = _cli("evaluate", tmp_path / "evaluate", dataset, split, root, options,
                     "--scores", str(scores_dir), "--name", Red.name)

    want = _sklearn([s.label for s in samples], scores)
    assert want["num_pos"] > 0 and want["num_neg"] > 0
    for record in (ran, evaluated):
        got = record["metrics"]["pixel"]
        assert got["num_pos"] == want["num_pos"] and got["num_neg"] == want["num_neg"]
        for key in ("auroc", "ap", "fpr95"):  # k/255 scores fall in distinct histogram bins: exact
            assert got[key] == pytest.approx(want[key], abs=1e-12), key
    assert evaluated["metrics"]["pixel"] == ran["metrics"]["pixel"]
    assert evaluated["dataset"] == ran["dataset"]
    assert ran["dataset"]["name"] == dataset and ran["dataset"]["split"] == split
    assert ran["dataset"]["num_images"] == options["expected"] and len(ran["dataset"]["fingerprint"]) == 64
    assert evaluated["method"]["name"] == ran["method"]["name"] == Red.name
