"""Pixel metrics per score-map family: the state (update per frame + compute) and ``pixel_metrics`` against
scikit-learn's roc_auc_score + average_precision_score + roc_curve, a plain ``np.sum`` pass and a compiled pass that
only reads labels and scores, all on the same pixels, for float32 and float16 maps.

``python -m pytest tests/benchmarks/test_bench_pixel_families.py --benchmark-only`` runs 1e7 and 2e7 pixels (frames of
1024x2048, 15 % random ignore, ~1 % OoD in blocks; OODBENCH_BENCH_FAMILY_SIZES="1e7,2e7" overrides) and prints one
table of ratios of minimum times measured in this run. No test asserts a time; each checks its metrics against
scikit-learn's (exact for float16, within 1e-6 for float32). Under --benchmark-disable each runs once on 3e5 pixels.
"""
import os

import numba
import numpy as np
import pytest
from numba import njit, prange

from oodbench.metrics.pixel import PixelMetricState, pixel_metrics

from pixel_reference import assert_close, sklearn_metrics

SIZES = [int(float(s)) for s in os.environ.get("OODBENCH_BENCH_FAMILY_SIZES", "1e7,2e7").split(",")]
SMALL = 300_000
FAMILIES = {  # z: standard normal + 2 on OoD pixels
    "probability": lambda z: 1 / (1 + np.exp(-z)),  # sigmoid
    "max logit": lambda z: -8 + 3 * z,  # both signs
    "energy": lambda z: np.logaddexp(3 * z, np.logaddexp(0.5 * z + 1, 2.9)),  # log-sum-exp of three logits
    "normalized entropy": lambda z: np.clip(0.3 + 0.15 * z, 0, 1),
}
DTYPES = {"float32": np.float32, "float16": np.float16}
_TIMES: dict = {}
_REFERENCE: dict = {}
_FRAMES: dict = {}


def frames(family: str, dtype: str, pixels: int) -> list:
    """The split of one family (one at a time is kept: 2e7 pixels of float32 are 80 MB)."""
    key = (family, dtype, pixels)
    if key not in _FRAMES:
        _FRAMES.clear()
        rng = np.random.default_rng(0)
        out, frame = [], 1024 * 2048
        for start in range(0, pixels, frame):
            n = min(frame, pixels - start)
            labels = np.zeros(n, np.uint8)
            for b in rng.integers(0, n, 8):
                labels[b: b + n // 800] = 1
            labels[rng.random(n) < 0.15] = 255
            z = rng.standard_normal(n) + 2 * (labels == 1)
            out.append((labels, FAMILIES[family](z).astype(DTYPES[dtype])))
        _FRAMES[key] = out
    return _FRAMES[key]


@njit(parallel=True, cache=True, nogil=True)
def _read_pass(scores, labels):
    """The floor: one compiled pass (both cores) that reads every label and score and adds the labelled scores
    (float16 maps are read as their uint16 bit patterns: numba has no float16)."""
    threads = numba.get_num_threads()
    step = (scores.size + threads - 1) // threads
    sums = np.zeros(threads)
    for t in prange(threads):
        acc = 0.0
        for i in range(t * step, min(scores.size, (t + 1) * step)):
            acc += np.float64(scores[i]) * (labels[i] <= 1)
        sums[t] = acc
    return sums.sum()


def run_state(split):
    state = PixelMetricState()
    for labels, scores in split:
        state.update(labels, scores)
    return state.compute()


def run_function(split):
    labels, scores = split[0] if len(split) == 1 else (np.concatenate([l for l, _ in split]),
                                                       np.concatenate([s for _, s in split]))
    return pixel_metrics(labels, scores)


@pytest.fixture(params=[pytest.param((f, d, s), id=f"{f.replace(' ', '_')}-{d}-{s:.0e}")
                        for s in SIZES for f in FAMILIES for d in DTYPES])
def case(request):
    family, dtype, size = request.param
    pixels = SMALL if request.config.getoption("benchmark_disable", False) else size
    split = frames(family, dtype, pixels)
    key = (family, dtype, pixels)
    if key not in _REFERENCE:
        labels = np.concatenate([l for l, _ in split])
        scores = np.concatenate([s for _, s in split])
        import time
        start = time.perf_counter()
        _REFERENCE[key] = sklearn_metrics(labels, scores)
        _TIMES[key + ("scikit-learn",)] = time.perf_counter() - start
    return key, split, _REFERENCE[key]


def timed(benchmark, key, name, fn, *args, rounds=3):
    result = benchmark.pedantic(fn, args=args, rounds=rounds, iterations=1, warmup_rounds=1)
    if benchmark.stats is not None:
        _TIMES[key + (name,)] = benchmark.stats.stats.min
    return result


def test_state(benchmark, case):
    key, split, want = case
    got = timed(benchmark, key, "state", run_state, split)
    assert_close(got, want, 1e-12 if key[1] == "float16" else 1e-6)
    if key[1] == "float16":
        assert got["resolution_bits"] == 32


def test_function(benchmark, case):
    key, split, want = case
    got = timed(benchmark, key, "pixel_metrics", run_function, split)
    assert_close(got, want, 1e-12 if key[1] == "float16" else 1e-10)


def test_np_sum(benchmark, case):
    key, split, _ = case
    assert np.isfinite(timed(benchmark, key, "np.sum", lambda s: sum(float(np.sum(x, dtype=np.float64))
                                                                       for _, x in s), split, rounds=5))


def test_read_pass(benchmark, case):
    key, split, _ = case
    def read(s):
        return sum(_read_pass(x.view(np.uint16) if x.dtype == np.float16 else x, l) for l, x in s)

    assert np.isfinite(timed(benchmark, key, "read pass", read, split, rounds=5))


@pytest.fixture(scope="module", autouse=True)
def print_table(request):
    """At the end: per family and dtype, the times and the ratios of minimum times measured in this run."""
    yield
    rows = sorted({k[:3] for k in _TIMES}, key=lambda k: (k[2], list(FAMILIES).index(k[0]), k[1]))
    lines = ["| pixels | family | dtype | scikit-learn | state | x sklearn | x np.sum | x read pass | pixel_metrics "
             "| x sklearn |", "|---|---|---|---|---|---|---|---|---|---|"]
    for key in rows:
        t = {name: _TIMES.get(key + (name,)) for name in ("scikit-learn", "state", "np.sum", "read pass",
                                                           "pixel_metrics")}
        if not (t["state"] and t["scikit-learn"] and t["np.sum"] and t["read pass"] and t["pixel_metrics"]):
            continue
        lines.append(f"| {key[2]:.0e} | {key[0]} | {key[1]} | {t['scikit-learn']:.2f} s | {t['state'] * 1e3:.1f} ms "
                     f"| {t['scikit-learn'] / t['state']:.0f}x | {t['state'] / t['np.sum']:.1f}x "
                     f"| {t['state'] / t['read pass']:.1f}x | {t['pixel_metrics'] * 1e3:.1f} ms "
                     f"| {t['scikit-learn'] / t['pixel_metrics']:.0f}x |")
    if len(lines) > 2:
        capture = request.config.pluginmanager.getplugin("capturemanager")
        with capture.global_and_fixture_disabled():
            print("\n" + "\n".join(lines))
