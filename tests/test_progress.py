"""Progress bars where work is long (leave-one-out meta classifier, `data check`, deep fingerprints): on stderr, one
update per segment fit / frame, off with progress=False (--quiet), and the results unchanged by them."""
import shutil

import numpy as np
import pytest
import tqdm.auto
from layout_files import write_red_scenes
from red_method import Red

import oodbench.data.check as check
import oodbench.segments.meta_classifier as mc
from oodbench.cli import main
from oodbench.data.base import DATASETS, hashing_progress
from oodbench.data.synthetic import ensure_synthetic
from oodbench.segments import SegmentCollector, cross_val_proba
from oodbench.segments.collector import ImageSegments

LOO = "meta classifier (leave-one-out)"


@pytest.fixture()
def bars(monkeypatch):
    """Every enabled tqdm bar the code under test closes: (desc, total, updates counted)."""
    closed = []

    class Counting(tqdm.auto.tqdm):
        def close(self):
            if not self.disable and not getattr(self, "_counted", False):
                self._counted = True
                closed.append((self.desc, self.total, self.n))  # n: updates, however made
            super().close()

    for module in (mc, check, tqdm.auto):
        monkeypatch.setattr(module, "tqdm", Counting)
    return closed


def _segments(n_images=6, per=7, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_images * per, 5))
    y = rng.integers(0, 2, n_images * per)
    x[:, 0] += 2 * y
    return x, y, np.repeat(np.arange(n_images), per)


def test_loo_counts_one_fit_per_segment(bars, capsys):
    x, y, groups = _segments()
    quiet = cross_val_proba(x, y, groups, protocol="loo")
    assert capsys.readouterr().err == "" and bars == []
    for n_jobs in (1, 2):
        np.testing.assert_array_equal(cross_val_proba(x, y, groups, protocol="loo", progress=True, n_jobs=n_jobs),
                                      quiet)
    assert bars == [(LOO, y.size, y.size)] * 2
    err = capsys.readouterr().err
    assert LOO in err and f"{y.size}/{y.size}" in err
    np.testing.assert_array_equal(cross_val_proba(x, y, groups, progress=True), cross_val_proba(x, y, groups))
    assert len(bars) == 2 and capsys.readouterr().err == ""  # five grouped folds: no bar


def test_collector_loo_progress_leaves_counts_unchanged(bars):
    x, y, groups = _segments(n_images=5, per=6, seed=1)
    collector = SegmentCollector()
    for i in range(5):
        rows = groups == i
        collector.add(ImageSegments(f"im{i}", x[rows], y[rows].astype(np.int8), 1,
                                    np.array([[0, 0]], np.int64)))
    quiet = collector.compute(protocol="loo")
    shown = collector.compute(protocol="loo", progress=True)
    assert shown.keys() == quiet.keys()
    assert all(shown[k] == quiet[k] or (shown[k] != shown[k] and quiet[k] != quiet[k]) for k in quiet)
    preds = collector.image_predictions(protocol="loo", progress=True)
    assert np.concatenate([p for p, _ in preds.values()]).size == y.size
    assert bars == [(LOO, y.size, y.size)] * 2


@pytest.fixture()
def laf_copy(tmp_path):
    copy = tmp_path / "laf"
    shutil.copytree(ensure_synthetic() / "lostandfound", copy)
    return copy


def test_data_check_counts_every_frame_read_and_hashed(bars, laf_copy, capsys):
    argv = ["data", "check", "synthetic", "--data-root", str(laf_copy), "--deep"]
    assert main(argv + ["--quiet"]) == 0
    quiet = capsys.readouterr()
    assert quiet.err == "" and bars == []
    assert main(argv) == 0
    shown = capsys.readouterr()
    assert shown.out == quiet.out  # the same report, fingerprints included
    assert bars == [("checking synthetic/val", 30, 30), ("hashing synthetic/val", 30, 30),
                    ("checking synthetic/test", 60, 60), ("hashing synthetic/test", 60, 60)]
    assert "checking synthetic/test" in shown.err and "60/60" in shown.err


def test_shallow_fingerprint_shows_no_bar(bars, laf_copy):
    ds = DATASETS.create("synthetic", root=laf_copy, split="val")
    with hashing_progress():
        shallow, deep = ds.fingerprint(), ds.fingerprint(deep=True)
    assert bars == [("hashing synthetic/val", 30, 30)]
    assert (shallow, deep) == (ds.fingerprint(), ds.fingerprint(deep=True))  # outside the block: no bar, same hash
    assert len(bars) == 1


def test_run_deep_fingerprint_counts_every_frame(bars, tmp_path, capsys):
    from oodbench.evaluation.runner import run  # imported here: torch only for this test

    root = write_red_scenes(tmp_path / "red", 40, np.s_[20:28, 25:33], count=4)
    options = dict(dataset="folder", data_root=root, deep_fingerprint=True, score_cache=False, components=False)
    quiet, _ = run(Red(), progress=False, **options)
    assert bars == []
    shown, _ = run(Red(), progress=True, **options)
    assert ("hashing folder/test", 4, 4) in bars
    assert shown["dataset"]["fingerprint"] == quiet["dataset"]["fingerprint"]
    assert shown["metrics"] == quiet["metrics"] and "hashing folder/test" in capsys.readouterr().err
