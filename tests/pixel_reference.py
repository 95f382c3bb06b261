"""Pixel metrics computed independently with scikit-learn, and the comparisons the pixel-state tests share."""
from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

KEYS = ("auroc", "ap", "fpr95")


def sklearn_metrics(labels, scores) -> dict:
    """AUROC, AP and FPR at the first TPR >= 95 % over the pixels labelled 0 or 1 (255 ignored)."""
    labels, scores = np.ravel(labels), np.ravel(np.asarray(scores, dtype=np.float64))
    valid = labels != 255
    y, s = (labels[valid] == 1).astype(int), scores[valid]
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    return {"auroc": roc_auc_score(y, s), "ap": average_precision_score(y, s),
            "fpr95": fpr[np.argmax(tpr >= 0.95)], "num_pos": int(y.sum()), "num_neg": int((y == 0).sum())}


def assert_close(got: dict, want: dict, tol) -> None:
    """Equal pixel counts, and each metric within ``tol`` (a number, or one per metric)."""
    assert (got["num_pos"], got["num_neg"]) == (want["num_pos"], want["num_neg"])
    for k in KEYS:
        t = tol[k] if isinstance(tol, dict) else tol
        assert abs(got[k] - want[k]) <= t, (k, got[k], want[k])


def same_state(a, b) -> None:
    """Equal bin counts, hence equal numbers (NaN where undefined)."""
    da, db = a.state_dict(), b.state_dict()
    assert set(da) == set(db)
    for key in da:
        np.testing.assert_array_equal(da[key], db[key])
    ca, cb = a.compute(), b.compute()
    assert ca.keys() == cb.keys()
    assert all(ca[k] == cb[k] or (math.isnan(ca[k]) and math.isnan(cb[k])) for k in ca)
