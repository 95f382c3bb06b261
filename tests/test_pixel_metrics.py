"""Pixel metrics against scikit-learn: exact function to 1e-12, histogram state exact for float16
and within measured bounds for float32; merging, serialization, errors, thresholds."""
import math

import numpy as np
import pytest
import scipy.ndimage as ndi
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from oodbench.errors import ScoreError
from oodbench.metrics.pixel import PixelMetricState, _float_of_key, _monotone_keys, pixel_metrics

KEYS = ("auroc", "ap", "fpr95")
# Worst deviation of the bits=20 state from exact on realistic float32 maps (160 smooth 256x512 maps:
# probabilities, entropies, max-logits, exp scores; AP 0.03-0.86): AP 8.6e-4, AUROC 5.2e-6,
# FPR95 6.1e-4. bits=22: AP 2.1e-4, AUROC 1.4e-6, FPR95 1.8e-4.
FLOAT32_TOL = {"auroc": 2e-5, "ap": 2e-3, "fpr95": 2e-3}


def sklearn_metrics(labels, scores):
    valid = labels != 255
    y, s = labels[valid].astype(int), np.asarray(scores, dtype=np.float64)[valid]
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    return {"auroc": roc_auc_score(y, s), "ap": average_precision_score(y, s),
            "fpr95": fpr[np.argmax(tpr >= 0.95)], "num_pos": int(y.sum()), "num_neg": int((y == 0).sum())}


def assert_close(got, want, tol):
    assert (got["num_pos"], got["num_neg"]) == (want["num_pos"], want["num_neg"])
    for k in KEYS:
        t = tol[k] if isinstance(tol, dict) else tol
        assert abs(got[k] - want[k]) <= t, (k, got[k], want[k])


def state_of(labels, scores, bits=20):
    state = PixelMetricState(bits)
    state.update(labels, scores)
    return state


def random_case(seed):
    """Varied size, positive rate, ignore share, dtype and ties; both classes present."""
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 60)), int(rng.integers(2, 90)))
    labels = (rng.random(shape) < rng.choice([0.01, 0.1, 0.5, 0.9])).astype(np.uint8)
    labels[rng.random(shape) < rng.choice([0.0, 0.2, 0.6])] = 255
    flat = labels.reshape(-1)
    flat[:2] = [0, 1]
    kind = ["float64", "float32", "float16", "ties", "equal", "negative16"][seed % 6]
    z = rng.normal(size=shape) + rng.uniform(0, 3) * (labels == 1)
    scores = {
        "float64": z,
        "float32": z.astype(np.float32),
        "float16": (1 / (1 + np.exp(-z))).astype(np.float16),
        "ties": np.round(z * 2) / 8,
        "equal": np.full(shape, 0.25),
        "negative16": (z * 100 - 50).astype(np.float16),
    }[kind]
    scores[labels == 255] = np.nan if kind != "equal" else 7.0  # ignored pixels must not matter
    return labels, scores, kind


@pytest.mark.parametrize("seed", range(60))
def test_matches_sklearn(seed):
    labels, scores, kind = random_case(seed)
    want = sklearn_metrics(labels, scores)
    assert_close(pixel_metrics(labels, scores), want, 1e-12)
    if kind in ("float64", "float32"):  # the state is exact on scores cut to its 20-bit bins
        want = sklearn_metrics(labels, cut_to_bins(scores))
    assert_close(pixel_metrics(labels, scores, exact=False), want, 1e-12)
    assert_close(state_of(labels, scores).compute(), want, 1e-12)


def cut_to_bins(scores, bits=20):
    """Each float32 score moved to the lower edge of its state bin (-0.0 and tiny negatives to 0)."""
    b = np.ascontiguousarray(scores, dtype=np.float32).view(np.uint32)
    low = np.uint32((1 << (32 - bits)) - 1)
    cut = np.where(b >> 31 == 1, b | low, b & ~low).view(np.float32)
    cut[(cut <= 0) & (cut > -(2.0**-149) * (1 << (32 - bits)))] = 0
    return cut


def realistic_map(seed, shape=(128, 256)):
    rng = np.random.default_rng(seed)
    ood = ndi.gaussian_filter(rng.standard_normal(shape), 6)
    ood = ood > np.quantile(ood, 1 - rng.uniform(0.002, 0.1))
    labels = ood.astype(np.uint8)
    labels[:10] = 255
    noise = ndi.gaussian_filter(rng.standard_normal(shape), 2)
    z = noise / noise.std() + rng.uniform(0.5, 3) * ood
    scores = [1 / (1 + np.exp(-z)), -(12 - 2 * z), np.exp(2 * z)][seed % 3]
    return labels, scores.astype(np.float32)


@pytest.mark.parametrize("seed", range(12))
def test_float32_realistic_maps(seed):
    labels, scores = realistic_map(seed)
    want = sklearn_metrics(labels, scores)
    assert_close(pixel_metrics(labels, scores), want, 1e-12)
    assert_close(state_of(labels, scores).compute(), want, FLOAT32_TOL)
    assert_close(state_of(labels, scores, bits=22).compute(), want, {k: v / 4 for k, v in FLOAT32_TOL.items()})


def test_hand_computed():
    labels = np.array([0, 0, 1, 1], np.uint8)
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    # thresholds 0.8 (tp 1), 0.4 (fp 1), 0.35 (tp 2, TPR 1 >= 0.95, FPR 1/2), 0.1
    want = {"auroc": 0.75, "ap": (1 + 2 / 3) / 2, "fpr95": 0.5, "num_pos": 2, "num_neg": 2}
    for exact in (True, False):
        assert_close(pixel_metrics(labels, scores, exact=exact), want, 1e-12)
    assert math.isclose(pixel_metrics(labels, scores)["ap"], 0.8333333, abs_tol=1e-7)
    state = state_of(labels, scores)
    t = state.threshold_at_tpr(0.95)
    assert np.float32(0.1) < t <= np.float32(0.35)
    assert 0.4 < state.threshold_at_tpr(0.5) <= np.float32(0.8)


@pytest.mark.parametrize("exact", [True, False])
def test_degenerate(exact):
    labels = np.zeros((4, 5), np.uint8)
    scores = np.linspace(0, 1, 20).reshape(4, 5)
    out = pixel_metrics(labels, scores, exact=exact)
    assert (out["num_pos"], out["num_neg"]) == (0, 20)
    assert all(math.isnan(out[k]) for k in KEYS)

    out = pixel_metrics(np.ones_like(labels), scores, exact=exact)
    assert (out["num_pos"], out["num_neg"]) == (20, 0)
    assert out["ap"] == 1.0 and math.isnan(out["auroc"]) and math.isnan(out["fpr95"])

    out = pixel_metrics(np.full_like(labels, 255), np.full(scores.shape, np.nan), exact=exact)
    assert (out["num_pos"], out["num_neg"]) == (0, 0)
    assert all(math.isnan(out[k]) for k in KEYS)

    empty = pixel_metrics(np.zeros(0, np.uint8), np.zeros(0, np.float32), exact=exact)
    assert (empty["num_pos"], empty["num_neg"]) == (0, 0)


def test_empty_state():
    state = PixelMetricState()
    out = state.compute()
    assert (out["num_pos"], out["num_neg"]) == (0, 0) and all(math.isnan(out[k]) for k in KEYS)
    assert math.isnan(state.threshold_at_tpr(0.95))


def test_merge_equals_pooled_in_any_order():
    rng = np.random.default_rng(0)
    images = [realistic_map(seed, (32, 48)) for seed in range(6)]
    states = [state_of(lab, s) for lab, s in images]
    pooled = state_of(np.concatenate([lab.ravel() for lab, _ in images]),
                      np.concatenate([s.ravel() for _, s in images]))
    for _ in range(3):
        order = rng.permutation(len(states))
        merged = PixelMetricState()
        for i in order:
            assert merged.merge(states[i]) is merged
        np.testing.assert_array_equal(merged._pos, pooled._pos)
        np.testing.assert_array_equal(merged._neg, pooled._neg)
        assert merged.compute() == pooled.compute()
    halves = [PixelMetricState(), PixelMetricState()]
    for i, st in enumerate(states):
        halves[i % 2].merge(st)
    assert halves[1].merge(halves[0]).compute() == pooled.compute()
    with pytest.raises(ValueError, match="bits"):
        PixelMetricState(19).merge(pooled)


def test_state_dict_round_trip():
    labels, scores = realistic_map(3, (40, 60))
    state = state_of(labels, scores)
    d = state.state_dict()
    assert set(d) == {"bits", "index", "pos", "neg"}
    assert d["index"].size <= np.unique(scores[labels != 255]).size
    back = PixelMetricState.from_state_dict(d)
    assert back.bits == 20
    np.testing.assert_array_equal(back._pos, state._pos)
    np.testing.assert_array_equal(back._neg, state._neg)
    assert back.compute() == state.compute()
    assert PixelMetricState.from_state_dict(PixelMetricState(12).state_dict()).bits == 12


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_scores_raise(exact, bad):
    labels = np.zeros((3, 4), np.uint8)
    labels[0, 0] = 1
    scores = np.ones((3, 4), np.float32)
    scores[1, 2] = bad
    scores[2, 3] = bad
    with pytest.raises(ScoreError, match=r"2 non-ignored pixel\(s\).*\(1, 2\)"):
        pixel_metrics(labels, scores, exact=exact)
    labels[1, 2] = labels[2, 3] = 255
    assert pixel_metrics(labels, scores, exact=exact)["num_neg"] == 9


def test_failed_update_leaves_state_unchanged():
    state = state_of(np.array([0, 1], np.uint8), np.array([0.2, 0.9]))
    before = state.compute()
    for labels, scores in [([0, 1], [0.1, np.nan]), ([0, 2], [0.1, 0.2]), ([0, 1], [0.1])]:
        with pytest.raises((ScoreError, ValueError)):
            state.update(np.array(labels, np.uint8), np.array(scores))
    assert state.compute() == before


def test_beyond_float32_range():
    labels, scores = np.array([0, 1], np.uint8), np.array([0.0, 1e300])
    assert pixel_metrics(labels, scores)["auroc"] == 1.0
    with pytest.raises(ScoreError, match="float32"):
        pixel_metrics(labels, scores, exact=False)


@pytest.mark.parametrize("exact", [True, False])
def test_shape_and_label_errors(exact):
    with pytest.raises(ScoreError, match=r"\(4, 5\).*\(5, 4\)"):
        pixel_metrics(np.zeros((4, 5), np.uint8), np.zeros((5, 4)), exact=exact)
    labels = np.array([0, 1, 2, 7, 7, 255], np.uint8)
    with pytest.raises(ValueError, match=r"3 pixel\(s\) with values \[2, 7\]"):
        pixel_metrics(labels, np.zeros(6), exact=exact)


def test_ignore_index_and_label_dtypes():
    labels = np.array([0, 1, 254, 0, 1], np.int64)
    scores = np.array([0.1, 0.9, np.nan, 0.3, 0.2])
    want = pixel_metrics(np.array([0, 1, 0, 1]), scores[[0, 1, 3, 4]])
    for exact in (True, False):
        assert pixel_metrics(labels, scores, ignore_index=254, exact=exact) == want


def test_signed_zero_and_negative_scores_tie_like_sklearn():
    labels = np.array([0, 1, 0, 1, 0, 1], np.uint8)
    scores = np.array([-0.0, 0.0, -2.5, -2.5, 3.0, 0.0], np.float32)
    want = sklearn_metrics(labels, scores)
    assert_close(pixel_metrics(labels, scores), want, 1e-12)
    assert_close(state_of(labels, scores).compute(), want, 1e-12)


def test_monotone_key():
    rng = np.random.default_rng(0)
    special = np.array([-np.finfo(np.float32).max, -1.0, -1e-40, -0.0, 0.0, 1e-45, 1e-40, 1.0,
                        np.finfo(np.float32).max], np.float32)
    spread = rng.normal(size=2000) * 10.0 ** rng.integers(-40, 38, 2000)
    values = np.unique(np.concatenate([special, spread.astype(np.float32)]))
    keys = _monotone_keys(np.ascontiguousarray(values), 0)
    assert np.all(np.diff(keys) > 0)  # np.unique keeps one zero
    assert [_float_of_key(int(k)) for k in keys] == values.tolist()


@pytest.mark.parametrize("seed", range(8))
def test_threshold_at_tpr(seed):
    rng = np.random.default_rng(seed)
    labels = (rng.random(3000) < 0.2).astype(np.uint8)
    z = rng.normal(size=3000) + labels
    sign = 1 if seed % 2 else -1  # negative scores exercise the other half of the key
    for scores in (np.float16(sign) * (1 / (1 + np.exp(-z))).astype(np.float16), z.astype(np.float32)):
        state = state_of(labels, scores)
        pos = scores[labels == 1].astype(np.float32)
        fpr, tpr_curve, thr = roc_curve(labels, scores.astype(np.float64), drop_intermediate=False)
        for tpr in (0.05, 0.5, 0.9, 0.95, 1.0):
            t = state.threshold_at_tpr(tpr)
            assert np.mean(pos >= t) >= tpr
            boundary = pos[pos >= t].min()
            if scores.dtype == np.float16:  # bins are exact: the step just above misses tpr
                assert np.mean(pos > boundary) < tpr
                assert boundary == thr[np.argmax(tpr_curve >= tpr)]
            else:  # same bin as the exact threshold
                exact_t = thr[np.argmax(tpr_curve >= tpr)]
                assert t <= exact_t and abs(exact_t - t) <= abs(exact_t) * 2.0 ** -10
    with pytest.raises(ValueError):
        state.threshold_at_tpr(0.0)


def test_state_memory_is_bounded():
    state = PixelMetricState()
    assert state._pos.nbytes + state._neg.nbytes == 16 * 2**20
    with pytest.raises(ValueError, match="bits"):
        PixelMetricState(30)


def test_thinned_curves_lie_on_sklearn_curves():
    from sklearn.metrics import precision_recall_curve, roc_curve

    rng = np.random.default_rng(7)
    y = (rng.random(100_000) < 0.05).astype(np.uint8)
    s = (rng.normal(size=y.size) + 2 * y).astype(np.float16)  # exact in the state
    state = PixelMetricState()
    state.update(y, s)
    c = state.curves(max_points=50)
    fpr, tpr, _ = roc_curve(y, s.astype(np.float64), drop_intermediate=False)
    on_roc = {(round(a, 6), round(b, 6)) for a, b in zip(fpr, tpr)}
    assert all((a, b) in on_roc for a, b in zip(c["roc"]["fpr"], c["roc"]["tpr"]))
    precision, recall, _ = precision_recall_curve(y, s.astype(np.float64))
    on_pr = {(round(a, 6), round(b, 6)) for a, b in zip(recall, precision)}
    assert all((a, b) in on_pr for a, b in zip(c["pr"]["recall"], c["pr"]["precision"]))
    assert 40 <= len(c["roc"]["fpr"]) <= 51 and c["roc"]["fpr"][-1] == c["roc"]["tpr"][-1] == 1.0
    assert np.trapezoid(c["roc"]["tpr"], c["roc"]["fpr"]) == pytest.approx(state.compute()["auroc"], abs=2e-3)
    assert PixelMetricState().curves()["roc"] == {"fpr": [], "tpr": []}
