"""Pixel-metric speed: PixelMetricState (update per frame + compute) against scikit-learn's roc_auc_score +
average_precision_score + roc_curve and against one plain pass over the scores (np.sum), all on the same pixels.

``python -m pytest tests/benchmarks/test_bench_pixel.py --benchmark-only`` runs 2e7 pixels (frames of 1024x2048,
float32 probability-like scores, ~1 % OoD, 5 % ignore; OODBENCH_BENCH_PIXELS overrides) and, marked slow, 1e8.
scikit-learn runs at both sizes (at 1e8 it takes about two minutes and 5 GB). Ratios of minimum times measured in the
same run are printed at the end; no test asserts a time. Every test checks its result against the exact metrics
(themselves checked against scikit-learn). Under --benchmark-disable (the normal suite) each runs once on 3e5 pixels.
"""
import os

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from oodbench.metrics.pixel import PixelMetricState, pixel_metrics

from pixel_reference import assert_close

FRAME = 1024 * 2048
SIZES = {"2e7": int(float(os.environ.get("OODBENCH_BENCH_PIXELS", "2e7"))), "1e8": 10**8}
SMALL = 300_000  # pixels per size under --benchmark-disable
# The state against the exact metrics on these maps: it keeps 29 key bits at 2e7 and 1e8 pixels (measured AP 7.3e-7,
# FPR95 <= 3.1e-7); the small maps of --benchmark-disable are closer still.
TOL = 1e-6
SIZE_PARAMS = ["2e7", pytest.param("1e8", marks=pytest.mark.slow)]
_MIN_TIMES: dict = {}
_SKLEARN: dict = {}  # scikit-learn's metrics per size, from test_sklearn


def make_frames(pixels, seed=0):
    """Frames of up to 1024x2048 pixels: OoD blocks (~1 %), the first 5 % ignored, sigmoid(z + 2 * OoD) scores."""
    rng = np.random.default_rng(seed)
    frames = []
    for start in range(0, pixels, FRAME):
        n = min(FRAME, pixels - start)
        labels = np.zeros(n, np.uint8)
        for b in rng.integers(0, n, 4):
            labels[b: b + n // 400] = 1
        labels[: n // 20] = 255
        z = rng.standard_normal(n, dtype=np.float32) + np.float32(2) * labels
        frames.append((labels, (1 / (1 + np.exp(-z))).astype(np.float32)))
    return frames


@pytest.fixture(scope="module", params=SIZE_PARAMS)
def sized(request):
    """(size name, frames, exact metrics of their pooled pixels); pytest runs all tests of one size together."""
    small = request.config.getoption("benchmark_disable", False)
    frames = make_frames(SMALL if small else SIZES[request.param])
    labels = np.concatenate([lab for lab, _ in frames])
    return request.param, frames, pixel_metrics(labels, np.concatenate([s for _, s in frames]))


def record(benchmark, name, size):
    if benchmark.stats is not None:  # None under --benchmark-disable
        _MIN_TIMES[(name, size)] = benchmark.stats.stats.min


def state_metrics(frames):
    state = PixelMetricState()
    for labels, scores in frames:
        state.update(labels, scores)
    return state.compute(), state.nbytes()


def state_updates(frames):
    state = PixelMetricState()
    for labels, scores in frames:
        state.update(labels, scores)
    return state


def sum_pass(frames):
    return sum(float(np.sum(scores)) for _, scores in frames)


def sklearn_metrics(frames):
    labels = np.concatenate([lab for lab, _ in frames])
    keep = labels != 255
    y, s = labels[keep].astype(np.int8), np.concatenate([s for _, s in frames])[keep]
    fpr, tpr, _ = roc_curve(y, s)
    return {"auroc": roc_auc_score(y, s), "ap": average_precision_score(y, s), "fpr95": fpr[np.argmax(tpr >= 0.95)],
            "num_pos": int(y.sum()), "num_neg": int(y.size - y.sum())}


def test_state_update_compute(benchmark, sized):
    size, frames, exact = sized
    rounds = 3 if size == "2e7" else 2
    got, nbytes = benchmark.pedantic(state_metrics, args=(frames,), rounds=rounds, iterations=1, warmup_rounds=1)
    assert_close(got, exact, TOL)
    assert nbytes < 64 * 2**20
    benchmark.extra_info.update(state_mib=round(nbytes / 2**20, 1), resolution_bits=got["resolution_bits"],
                                max_error=max(abs(got[k] - exact[k]) for k in ("auroc", "ap", "fpr95")))
    record(benchmark, "state", size)


def test_state_updates_only(benchmark, sized):
    size, frames, exact = sized
    state = benchmark.pedantic(state_updates, args=(frames,), rounds=3, iterations=1, warmup_rounds=1)
    assert_close(state.compute(), exact, TOL)
    record(benchmark, "updates", size)


def test_numpy_sum_pass(benchmark, sized):
    size, frames, _ = sized
    total = benchmark.pedantic(sum_pass, args=(frames,), rounds=10, iterations=1, warmup_rounds=1)
    assert np.isfinite(total)
    record(benchmark, "np.sum", size)


def test_sklearn(benchmark, sized):
    size, frames, exact = sized
    _SKLEARN[size] = benchmark.pedantic(sklearn_metrics, args=(frames,), rounds=1, iterations=1)
    assert_close(_SKLEARN[size], exact, 1e-10)
    record(benchmark, "sklearn", size)


def test_exact_function(benchmark, sized):
    size, frames, exact = sized
    if size != "2e7":
        pytest.skip("the exact function is compared with scikit-learn at 2e7")
    labels, scores = np.concatenate([lab for lab, _ in frames]), np.concatenate([s for _, s in frames])
    want = _SKLEARN.get(size) or sklearn_metrics(frames)  # the reference, not the fixture's own pixel_metrics
    assert_close(benchmark.pedantic(pixel_metrics, args=(labels, scores), rounds=1, iterations=1), want, 1e-10)
    record(benchmark, "exact", "2e7")


@pytest.fixture(scope="module", autouse=True)
def print_ratios(request):
    """At the end of the module: speed ratios of minimum times measured in this run (shown without -s too)."""
    yield
    lines = []
    for size, pixels in SIZES.items():
        t = {name: _MIN_TIMES.get((name, size)) for name in ("state", "updates", "np.sum")}
        if all(t.values()):
            lines.append(f"{pixels:.0e} pixels: state update+compute {t['state']:.3f} s = "
                         f"{t['state'] / t['np.sum']:.0f}x np.sum ({t['np.sum'] * 1e3:.1f} ms); "
                         f"updates only {t['updates']:.3f} s = {t['updates'] / t['np.sum']:.0f}x np.sum")
    for size, pixels in SIZES.items():
        sk, st, ex = (_MIN_TIMES.get((name, size)) for name in ("sklearn", "state", "exact"))
        if sk and st:
            lines.append(f"{pixels:.0e} pixels: scikit-learn {sk:.1f} s = {sk / st:.0f}x the state"
                         + (f", {sk / ex:.0f}x the exact function ({ex:.2f} s)" if ex else ""))
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        for line in lines:
            print("\n" + line, end="")
        print()
