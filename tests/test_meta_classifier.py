"""Meta classifier protocols and the paper's FP/FN segment counts."""
import warnings

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import LeaveOneOut

import oodbench.segments.meta_classifier as mc
from oodbench.segments import SegmentCollector, count_errors, cross_val_proba, make_meta_classifier


def scene(h=20, w=20, d=0.0):
    """One FP segment, one TP segment, one missed ground-truth object; ``d`` varies the features."""
    probs = np.zeros((3, h, w))
    probs[0], probs[1], probs[2] = 0.9, 0.05, 0.05
    label = np.zeros((h, w), np.uint8)
    label[3:7, 3:7] = 1  # object A, found
    label[13:17, 13:17] = 1  # object B, missed
    label[0, :] = 255
    probs[:, 4:8, 4:8] = np.array([1 / 3 + d, 1 / 3 - d, 1 / 3])[:, None, None]  # TP, overlaps A
    probs[:, 2:5, 14:18] = np.array([1 / 3, 1 / 3 + d, 1 / 3 - d])[:, None, None]  # FP segment
    return probs, label


def test_counts_before_and_after_removal():
    probs, label = scene()
    col = SegmentCollector()
    col.update("a", probs, label)
    x, y, groups, num_gt, pairs = col.arrays()
    assert x.shape == (2, 43) and num_gt == 2 and pairs.shape == (1, 2)
    assert sorted(y.tolist()) == [0, 1]
    fp, tp = int(np.argmax(y)), int(np.argmin(y))
    none = count_errors(y, np.zeros(2, bool), num_gt, pairs)
    assert none == {"fp_before": 1, "fn_before": 1, "fp_after": 1, "fn_after": 1, "paper_code_fp_after": 0}
    drop_fp = count_errors(y, np.arange(2) == fp, num_gt, pairs)
    assert (drop_fp["fp_after"], drop_fp["fn_after"], drop_fp["paper_code_fp_after"]) == (0, 1, 0)
    drop_tp = count_errors(y, np.arange(2) == tp, num_gt, pairs)
    assert (drop_tp["fp_after"], drop_tp["fn_after"], drop_tp["paper_code_fp_after"]) == (1, 2, 1)
    # one image: no grouped fold can hold it out -> nothing removed, meta scores NaN
    res = col.compute()
    assert res["num_segments"] == 2 and res["num_gt_components"] == 2
    assert (res["fp_before"], res["fn_before"], res["fp_after"], res["fn_after"]) == (1, 1, 1, 1)
    assert np.isnan(res["meta_auroc"]) and res["protocol"] == "grouped"


def test_collector_merge_and_many_images():
    a, b, whole = SegmentCollector(), SegmentCollector(), SegmentCollector()
    for i in range(6):
        probs, label = scene(d=0.02 * i)
        (a if i < 3 else b).update(f"img{i}", probs, label)
        whole.update(f"img{i}", probs, label)
    a.merge(b)
    ra, rw = a.compute(n_splits=3), whole.compute(n_splits=3)
    assert ra.keys() == rw.keys()
    for k in ra:  # equal, NaN equal to NaN
        assert ra[k] == rw[k] or (isinstance(ra[k], float) and np.isnan(ra[k]) and np.isnan(rw[k]))
    assert rw["num_images"] == 6 and rw["fp_before"] == 6 and rw["fn_before"] == 6
    with pytest.raises(ValueError):
        a.merge(whole)



def test_folds_do_not_depend_on_the_order_images_arrive():
    """Shards merged in reverse and images added backwards give the same out-of-fold P(FP) per segment and the same
    counts: the collector keeps image-id order, and the folds are drawn over it."""
    items = {}
    for i in range(8):
        probs, label = scene(d=0.015 * i)
        one = SegmentCollector()
        one.update(f"img{i}", probs, label)
        items[f"img{i}"] = one.images[0]
    ordered, backwards, merged, tail = SegmentCollector(), SegmentCollector(), SegmentCollector(), SegmentCollector()
    for key in sorted(items):
        ordered.add(items[key])
    for key in sorted(items, reverse=True):
        backwards.add(items[key])
    for key in sorted(items)[:5]:
        merged.add(items[key])
    for key in sorted(items)[5:]:
        tail.add(items[key])
    merged = tail.merge(merged)
    reference = ordered.out_of_fold(n_splits=4, seed=3)
    assert np.isfinite(reference).all()
    for other in (backwards, merged):
        assert [im.image_id for im in other.images] == sorted(items)
        np.testing.assert_array_equal(other.out_of_fold(n_splits=4, seed=3), reference)
        assert other.compute(n_splits=4, seed=3) == ordered.compute(n_splits=4, seed=3)

def test_collector_zero_segments_and_one_class():
    col = SegmentCollector()
    probs = np.zeros((3, 10, 10))
    probs[0], probs[1], probs[2] = 0.9, 0.05, 0.05
    label = np.zeros((10, 10), np.uint8)
    label[2:4, 2:4] = 1
    col.update("x", probs, label)
    col.update("y", probs, label)
    res = col.compute()
    assert res["num_segments"] == 0 and res["fn_before"] == res["fn_after"] == 2
    assert np.isnan(res["meta_auroc"]) and np.isnan(res["meta_accuracy"])
    one = SegmentCollector()  # only false positives: constant predictions, no AUROC
    fp_probs, _ = scene()
    for i in range(3):
        one.update(str(i), fp_probs, np.zeros((20, 20), np.uint8))
    res = one.compute()
    assert res["fp_before"] == 6 and res["fp_after"] == 0 and res["meta_accuracy"] == 1.0
    assert np.isnan(res["meta_auroc"]) and res["paper_code_fp_after"] == 0


def synthetic(n_groups=20, per=15, seed=0, sep=3.0):
    rng = np.random.default_rng(seed)
    n = n_groups * per
    y = rng.integers(0, 2, n)
    x = rng.standard_normal((n, 10))
    x[:, 0] += sep * y
    return x, y, np.repeat(np.arange(n_groups), per)


def test_grouped_folds_keep_images_apart(monkeypatch):
    x, y, groups = synthetic()
    x[:, 9] = groups  # the spy reads the image back from the features
    seen = []
    real = mc._fit_predict

    def spy(x_train, y_train, x_test, seed, scaling):
        seen.append((set(x_train[:, 9]), set(x_test[:, 9])))
        return real(x_train, y_train, x_test, seed, scaling)

    monkeypatch.setattr(mc, "_fit_predict", spy)
    p = cross_val_proba(x, y, groups, n_splits=5, seed=3)
    assert len(seen) == 5 and np.isfinite(p).all()
    for train, test in seen:
        assert not train & test
    assert set().union(*(t for _, t in seen)) == set(range(20))


def test_grouped_is_deterministic_and_separates():
    x, y, groups = synthetic()
    p1 = cross_val_proba(x, y, groups, seed=7)
    p2 = cross_val_proba(x, y, groups, seed=7, n_jobs=2)
    np.testing.assert_array_equal(p1, p2)
    assert roc_auc_score(y, p1) > 0.95


def test_fewer_groups_than_splits_and_single_class_folds():
    x, y, groups = synthetic(n_groups=3, per=10)
    assert np.isfinite(cross_val_proba(x, y, groups, n_splits=5)).all()
    y = np.zeros(40, int)
    y[:5] = 1  # only image 0 has false positives
    groups = np.repeat(np.arange(4), 10)
    x = np.random.default_rng(0).standard_normal((40, 4))
    p = cross_val_proba(x, y, groups, n_splits=4)
    assert (p[:10] == 0.0).all()  # its training folds hold class 0 only
    assert np.isnan(cross_val_proba(x, y, np.zeros(40), n_splits=4)).all()  # one image


def test_loo_with_fold_scaling_matches_manual_loop():
    x, y, groups = synthetic(n_groups=4, per=10, sep=1.0)
    got = cross_val_proba(x, y, groups, protocol="loo", scaling="fold")
    want = np.zeros(len(y))
    for train, test in LeaveOneOut().split(x):
        model = make_meta_classifier(0).fit(x[train], y[train])
        want[test] = model.predict_proba(x[test])[:, 1]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_paper_scaling_matches_manual_loop():
    """Leave-one-out is the paper's protocol as a whole: z-scored over all segments unless told otherwise."""
    from sklearn.linear_model import LogisticRegression
    x, y, groups = synthetic(n_groups=3, per=8, sep=1.0)
    got = cross_val_proba(x, y, None, protocol="loo", scaling="all")
    z = (x - x.mean(0)) / (x.std(0) + 1e-10)
    want = np.zeros(len(y))
    for train, test in LeaveOneOut().split(z):
        lr = LogisticRegression(solver="liblinear", random_state=0).fit(z[train], y[train])
        want[test] = lr.predict_proba(z[test])[:, 1]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(cross_val_proba(x, y, None, protocol="loo"), got)
    assert not np.array_equal(cross_val_proba(x, y, None, protocol="loo", scaling="fold"), got)
    assert np.array_equal(cross_val_proba(x, y, groups, n_splits=3),
                          cross_val_proba(x, y, groups, n_splits=3, scaling="fold"))


def test_pipeline_and_no_warnings():
    pipe = make_meta_classifier()
    lr = pipe.steps[-1][1]
    assert lr.solver == "liblinear" and lr.C == 1.0 and pipe.steps[0][0] == "standardscaler"
    x, y, groups = synthetic(n_groups=4, per=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cross_val_proba(x, y, groups)
        cross_val_proba(x, y, groups, protocol="loo")
    with pytest.raises(ValueError):
        cross_val_proba(x, y, groups, protocol="kfold")
