"""Component metrics (label-indexed counting) vs a per-component-mask implementation of the same
definition: one full-image boolean mask per component, as the official SegmentMeIfYouCan code loops.

The benchmarks run on a seeded 1024x2048 noisy score map with over 1,000 predicted components
(``python -m pytest tests/benchmarks --benchmark-only``); the speed-up is printed and stored in the
reference benchmark's ``extra_info``. Under ``--benchmark-disable`` they skip before building the map;
``test_reference_agrees_exactly_on_small_map`` checks on a 256x512 map that both compute the same thing.
"""
import numpy as np
import pytest
from scipy import ndimage

from oodbench.metrics.components import TAUS, ComponentMetricState, component_stats, instances

EIGHT = np.ones((3, 3), dtype=int)
MIN_PRED, MIN_GT = 50, 10  # the obstacle track: small enough that a noisy map keeps > 1,000 predictions
FULL_EDGES = (7_000, 63_000)  # the default size bins
_TIMINGS = {}


def make_frame(h, w, seed=0):
    """Label with objects of all three sizes (scaled with the frame), ignore at the bottom, smooth noise
    scores with a random bump on each object; threshold at the 90 % quantile of the noise."""
    rng = np.random.default_rng(seed)
    s = h / 1024
    label = np.zeros((h, w), np.uint8)
    bump = np.zeros((h, w), np.float32)
    sides = [(12, 16), (20, 20), (30, 40), (40, 60), (50, 60), (70, 90), (90, 100), (120, 150), (200, 250), (300, 400)]
    for k in range(20):
        dy, dx = (max(2, int(v * s)) for v in sides[k % len(sides)])
        y, x = int(rng.integers(0, h * 7 // 8 - dy)), int(rng.integers(0, w - dx))
        label[y:y + dy, x:x + dx] = 1
        bump[y:y + dy, x:x + dx] = 2 * rng.random()
    label[h * 7 // 8:] = 255
    noise = ndimage.gaussian_filter(rng.standard_normal((h, w), dtype=np.float32), 3.0)
    noise /= noise.std()
    return label, noise + bump, float(np.quantile(noise, 0.9))


def per_component_masks(label, score, thr, min_pred, min_gt):
    """The published definition, one full-image (or full-ROI) boolean mask per component: size filters,
    then sIoU and area per gt component, and sIoU, PPV and area (in the ROI) per predicted component."""
    gt, ng = ndimage.label(label == 1, EIGHT)
    pred, npred = ndimage.label((score > thr) & (label != 255), EIGHT)
    for j in range(npred + 1):
        mask = pred == j
        if np.count_nonzero(mask) < min_pred:
            pred[mask] = 0
    roi = label != 255
    for i in range(ng + 1):
        mask = gt == i
        if np.count_nonzero(mask) < min_gt:
            roi &= ~mask
    g, p = gt[roi], pred[roi]
    out = {k: [] for k in ("siou_gt", "gt_area", "siou_pred", "ppv", "pred_area")}
    for i in np.unique(g[g > 0]):
        mine = g == i
        in_p = np.isin(p, np.unique(p[mine & (p > 0)]))
        inter = np.count_nonzero(mine & in_p)
        adjust = np.count_nonzero(in_p & (g > 0) & ~mine)
        out["siou_gt"].append(inter / (np.count_nonzero(in_p) + np.count_nonzero(mine) - inter - adjust))
        out["gt_area"].append(np.count_nonzero(mine))
    for j in np.unique(p[p > 0]):
        mine = p == j
        in_g = np.isin(g, np.unique(g[mine & (g > 0)]))
        inter = np.count_nonzero(mine & in_g)
        adjust = np.count_nonzero(in_g & (p > 0) & ~mine)
        out["siou_pred"].append(inter / (np.count_nonzero(in_g) + np.count_nonzero(mine) - inter - adjust))
        out["ppv"].append(np.count_nonzero(mine & (g > 0)) / np.count_nonzero(mine))
        out["pred_area"].append(np.count_nonzero(mine))
    return {k: np.array(v, dtype=np.float64) for k, v in out.items()}


def summarize(ref, edges):
    """The numbers ComponentMetricState.compute reports, from per-component arrays."""
    siou, ppv = ref["siou_gt"], ref["ppv"]
    tp = [int((siou >= t).sum()) for t in TAUS]
    fp = [int((ppv < t).sum()) for t in TAUS]
    out = {"siou": siou.mean() if siou.size else np.nan, "siou_pred": ref["siou_pred"].mean() if ppv.size else np.nan,
           "ppv": ppv.mean() if ppv.size else np.nan, "tp": tp, "fn": [siou.size - v for v in tp], "fp": fp,
           "num_gt_components": siou.size, "num_pred_components": ppv.size, "bins": {}}
    bg, bp = np.digitize(ref["gt_area"], edges), np.digitize(ref["pred_area"], edges)
    for k, name in enumerate(("small", "medium", "large")):
        s, q = siou[bg == k], ppv[bp == k]
        out["bins"][name] = {"num_gt_components": s.size, "num_pred_components": q.size,
                             "tp": [int((s >= t).sum()) for t in TAUS], "fp": [int((q < t).sum()) for t in TAUS],
                             "siou": s.mean() if s.size else np.nan, "ppv": q.mean() if q.size else np.nan}
    return out


def ours(label, score, thr, edges=FULL_EDGES):
    state = ComponentMetricState(thr, MIN_PRED, MIN_GT, size_edges=edges)
    state.update(label, score)
    return state.compute()


def reference(label, score, thr, edges=FULL_EDGES):
    return summarize(per_component_masks(label, score, np.float32(thr), MIN_PRED, MIN_GT), edges)


def assert_same(got, want):
    """Counts equal; means equal up to summation order (1e-12)."""
    for key in ("tp", "fn", "fp", "num_gt_components", "num_pred_components"):
        assert got[key] == want[key], key
    for key in ("siou", "siou_pred", "ppv"):
        assert got[key] == pytest.approx(want[key], rel=1e-12, nan_ok=True), key
    for name, b in want["bins"].items():
        g = got["size_bins"]["bins"][name]
        for key in ("num_gt_components", "num_pred_components", "tp", "fp"):
            assert g[key] == b[key], (name, key)
        for key in ("siou", "ppv"):
            assert g[key] == pytest.approx(b[key], rel=1e-12, nan_ok=True), (name, key)


def test_reference_agrees_exactly_on_small_map():
    """Per-component values identical, every count identical, all three size bins populated."""
    label, score, thr = make_frame(256, 512)
    edges = tuple(e // 16 for e in FULL_EDGES)  # the default bins scaled with the frame area
    ref = per_component_masks(label, score, np.float32(thr), MIN_PRED, MIN_GT)
    got = component_stats(*instances(label, score, thr, MIN_PRED, MIN_GT))
    for key, value in zip(("siou_gt", "siou_pred", "ppv", "gt_area", "pred_area"), got):
        assert np.array_equal(value, ref[key]), key
    want = summarize(ref, edges)
    assert want["num_pred_components"] > 50
    assert all(b["num_gt_components"] > 0 for b in want["bins"].values())
    assert_same(ours(label, score, thr, edges), want)


@pytest.fixture(scope="module")
def full_frame(request):
    if request.config.getoption("benchmark_disable", False):
        pytest.skip("benchmarks disabled: the 1024x2048 map and the per-component reference take seconds")
    label, score, thr = make_frame(1024, 2048)
    n_pred = ours(label, score, thr)["num_pred_components"]
    assert n_pred > 1000, n_pred
    return label, score, thr


def test_bench_components_label_indexed(benchmark, full_frame):
    result = benchmark.pedantic(ours, args=full_frame, rounds=5, iterations=1, warmup_rounds=1)
    _TIMINGS["ours"] = (benchmark.stats.stats.mean, result)
    assert result["num_pred_components"] > 1000


def test_bench_components_per_component_masks(benchmark, full_frame):
    want = benchmark.pedantic(reference, args=full_frame, rounds=1, iterations=1)
    got = _TIMINGS["ours"][1] if "ours" in _TIMINGS else ours(*full_frame)
    assert_same(got, want)
    if "ours" in _TIMINGS:
        ratio = benchmark.stats.stats.mean / _TIMINGS["ours"][0]
        benchmark.extra_info["speedup_vs_label_indexed"] = round(ratio, 1)
        print(f"\nper-component masks {benchmark.stats.stats.mean:.2f} s, label-indexed "
              f"{_TIMINGS['ours'][0] * 1e3:.1f} ms: {ratio:.0f}x, {got['num_pred_components']} predicted components")
