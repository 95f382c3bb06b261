"""Pixel-metric speed: histogram state and exact function vs scikit-learn and a plain memory pass.

OODBENCH_BENCH_PIXELS sets the pixel count (default 2e6, fast enough to run as a correctness test
under --benchmark-disable). Each benchmark also checks its result against scikit-learn.
"""
import os

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from oodbench.metrics.pixel import PixelMetricState, pixel_metrics

PIXELS = int(float(os.environ.get("OODBENCH_BENCH_PIXELS", "2e6")))
FRAME = 1024 * 2048
FLOAT32_TOL = {"auroc": 2e-5, "ap": 2e-3, "fpr95": 2e-3}  # measured bound of the bits=20 state
ROUNDS = 1 if PIXELS > 5e7 else 3


@pytest.fixture(scope="module")
def frames():
    """Frames of 1024x2048 (the last one shorter): ~1 % OoD in blocks, 5 % ignore, float32 scores."""
    rng = np.random.default_rng(0)
    out = []
    for start in range(0, PIXELS, FRAME):
        n = min(FRAME, PIXELS - start)
        labels = np.zeros(n, np.uint8)
        for b in rng.integers(0, n, 4):
            labels[b : b + n // 400] = 1
        labels[: n // 20] = 255
        z = rng.standard_normal(n, dtype=np.float32) + 2.0 * labels
        out.append((labels, 1 / (1 + np.exp(-z))))
    return out


@pytest.fixture(scope="module")
def pooled(frames):
    labels = np.concatenate([lab for lab, _ in frames])
    scores = np.concatenate([s for _, s in frames])
    valid = labels != 255
    return labels, scores, labels[valid].astype(np.int8), scores[valid]


def sklearn_metrics(y, s):
    fpr, tpr, _ = roc_curve(y, s)
    return {"auroc": roc_auc_score(y, s), "ap": average_precision_score(y, s),
            "fpr95": fpr[np.argmax(tpr >= 0.95)]}


@pytest.fixture(scope="module")
def reference(pooled):
    """Exact metrics: the exact function, itself checked against scikit-learn in the sklearn benchmark."""
    labels, scores, _, _ = pooled
    return pixel_metrics(labels, scores)


def check(got, want, tol):
    for k in ("auroc", "ap", "fpr95"):
        t = tol[k] if isinstance(tol, dict) else tol
        assert abs(got[k] - want[k]) <= t, (k, got[k], want[k])


def test_state_update_compute(benchmark, frames, reference):
    def run():
        state = PixelMetricState()
        for labels, scores in frames:
            state.update(labels, scores)
        return state.compute()

    check(benchmark.pedantic(run, rounds=ROUNDS, iterations=1), reference, FLOAT32_TOL)


def test_exact_function(benchmark, pooled, reference):
    labels, scores, _, _ = pooled
    check(benchmark.pedantic(pixel_metrics, (labels, scores), rounds=ROUNDS, iterations=1), reference, 0.0)


def test_sklearn_baseline(benchmark, pooled, reference):
    _, _, y, s = pooled
    check(benchmark.pedantic(sklearn_metrics, (y, s), rounds=1, iterations=1), reference, 1e-10)


def test_numpy_sum_memory_pass(benchmark, frames):
    total = benchmark.pedantic(lambda: sum(float(np.sum(s)) for _, s in frames), rounds=ROUNDS, iterations=1)
    assert np.isfinite(total)
