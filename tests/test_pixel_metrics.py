"""Pixel metrics against scikit-learn: the exact function to 1e-12; the bounded state to 1e-12 on the scores cut
to its bins (and exact on float16 and narrow float32 maps), within 1e-6 on realistic float32 maps; merging in
any order, serialization, memory bound, errors, thresholds."""
import math

import numpy as np
import pytest
import scipy.ndimage as ndi
from sklearn.metrics import roc_curve

from oodbench.errors import ScoreError
from oodbench.metrics.key_hist import KeyHistogram
from oodbench.metrics.score_keys import monotone_keys
from oodbench.metrics.pixel import PixelMetricState, pixel_metrics

from pixel_reference import KEYS, assert_close, same_state, sklearn_metrics

MiB = 2**20


class SmallHist(KeyHistogram):
    budget_bytes = 4 * MiB  # 262,143 fine bins once int64: coarse layouts on small maps
    narrow_limit = 5_000  # int64 counts from 5,000 pixels on


class SmallState(PixelMetricState):
    """The same state with a tiny budget, so that tests reach the coarse layouts of a huge split."""
    _histogram = SmallHist


def state_of(labels, scores, cls=PixelMetricState, **kw):
    state = cls(**kw)
    state.update(labels, scores)
    return state


def cut_to_bins(state, scores):
    """Each score moved to the lower edge of its bin in ``state`` (-0.0 has the key of +0.0), as float64 for
    scikit-learn."""
    keys = monotone_keys(np.ascontiguousarray(scores, dtype=np.float32).ravel()).astype(np.int64)
    r = np.minimum(16 + state._hist.extra_bits[keys >> 16], state.bits)
    cut = (keys >> (32 - r)) << (32 - r)
    bits = np.where(cut >= 0x80000000, cut ^ 0x80000000, cut ^ 0xFFFFFFFF).astype(np.uint32)
    with np.errstate(invalid="ignore"):  # NaN scores of ignored pixels
        out = bits.view(np.float32).astype(np.float64)
    return out.reshape(np.shape(scores))


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
    for cls in (PixelMetricState, SmallState):
        state = state_of(labels, scores, cls)
        got = state.compute()
        binned = sklearn_metrics(labels, cut_to_bins(state, scores)) if kind in ("float64", "float32") else want
        assert_close(got, binned, 1e-12)  # the state is exact on scores cut to its bins
        if got["resolution_bits"] == 32:  # exact for the scores as float32
            assert_close(got, sklearn_metrics(labels, scores.astype(np.float32)), 1e-12)
        if kind not in ("float64", "float32"):
            assert_close(got, want, 1e-12)
    cut = cut_to_bins(state_of(labels, scores), scores) if kind in ("float64", "float32") else scores
    assert_close(pixel_metrics(labels, scores, exact=False), sklearn_metrics(labels, cut), 1e-12)


def smooth(rng, shape, sigma):
    n = ndi.gaussian_filter(rng.standard_normal(shape), sigma)
    return n / n.std()


def family_map(kind, seed, shape=(256, 512)):
    """Realistic float32 score maps: probabilities (smooth, noisy), normalized softmax entropy (many values
    near 0 and near 1), negated max-logit-like scores over a wide range, and a map squeezed into [0.90, 0.91]."""
    rng = np.random.default_rng(seed)
    ood = smooth(rng, shape, 8) > 2.0 - rng.uniform(0, 0.4)
    labels = ood.astype(np.uint8)
    labels[: shape[0] // 10] = 255
    z = smooth(rng, shape, 3) + 2.0 * ood
    if kind == "smooth":
        return labels, (1 / (1 + np.exp(-z))).astype(np.float32)
    if kind == "noisy":
        z = 0.7 * smooth(rng, shape, 1) + 0.7 * rng.standard_normal(shape) + 1.5 * ood
        return labels, (1 / (1 + np.exp(-z))).astype(np.float32)
    if kind == "entropy":
        scale = np.exp(0.8 * smooth(rng, shape, 4) + 1.6 - 2.5 * ood).astype(np.float32)
        logits = rng.standard_normal((19, *shape), dtype=np.float32) * scale * 3
        p = np.exp(logits - logits.max(0))
        p /= p.sum(0)
        return labels, (-(p * np.log(np.maximum(p, 1e-30))).sum(0) / np.float32(np.log(19))).astype(np.float32)
    if kind == "maxlogit":
        z = 4 * smooth(rng, shape, 2) + rng.standard_normal(shape) + 5 * ood
        return labels, (-(15 - z) * np.exp(0.3 * smooth(rng, shape, 30))).astype(np.float32)
    assert kind == "squeezed"
    return labels, (0.90 + 0.01 / (1 + np.exp(-z))).astype(np.float32)


FAMILIES = ("smooth", "noisy", "entropy", "maxlogit", "squeezed")
# Max-logit-like maps span both signs and ~40 binades; only their occupied pages take memory, so the dense range keeps
# 28-29 key bits (FPR95 measured within 8.8e-7 at 1e8 pixels, 0 at 2e7; it missed by 3.9e-6 with dense blocks).
WITHIN = 1e-6


@pytest.mark.parametrize("kind", FAMILIES)
def test_realistic_float32_maps_within_1e6(kind):
    """1024x2048 maps (2e6 pixels, 1-5 % OoD). Smaller splits can miss 1e-6 by one pixel's weight: FPR95 moves in
    steps of 1/num_neg, and AP's error (ties near the top of the ranking) grows as num_pos shrinks."""
    labels, scores = family_map(kind, 1, (1024, 2048))
    want = sklearn_metrics(labels, scores)
    assert_close(pixel_metrics(labels, scores), want, 1e-12)
    state = state_of(labels, scores)
    got = state.compute()
    assert_close(got, want, WITHIN)
    assert_close(got, sklearn_metrics(labels, cut_to_bins(state, scores)), 1e-12)
    if kind == "squeezed":  # [0.90, 0.91]: every float32 value apart
        assert got["resolution_bits"] == 32
        assert_close(got, want, 1e-12)
    half = scores.astype(np.float16)  # what SegmentMeIfYouCan stores: always exact
    assert_close(state_of(labels, half).compute(), pixel_metrics(labels, half), 1e-12)


@pytest.mark.parametrize("kind", FAMILIES)
def test_coarse_layouts_are_exact_on_their_bins(kind):
    """A tiny budget forces the coarse bins of a huge, wide split: still scikit-learn on the cut scores, and
    the record's resolution says how coarse; float16 stays exact."""
    labels, scores = family_map(kind, 7, (128, 256))
    state = state_of(labels, scores, SmallState)
    got = state.compute()
    assert_close(got, sklearn_metrics(labels, cut_to_bins(state, scores)), 1e-12)
    assert 16 <= got["resolution_bits"] <= 32 and state._hist.dtype == np.int64  # past the narrow limit
    half = scores.astype(np.float16)
    assert_close(state_of(labels, half, SmallState).compute(), sklearn_metrics(labels, half), 1e-12)


def test_bits_caps_the_resolution():
    labels, scores = family_map("smooth", 3, (64, 128))
    for bits in (12, 20, 24):
        state = state_of(labels, scores, bits=bits)
        got = state.compute()
        assert got["resolution_bits"] <= bits
        assert_close(got, sklearn_metrics(labels, cut_to_bins(state, scores)), 1e-12)
    with pytest.raises(ValueError, match="bits"):
        PixelMetricState(8)
    with pytest.raises(ValueError, match="bits"):
        PixelMetricState(33)


def test_hand_computed():
    labels = np.array([0, 0, 1, 1], np.uint8)
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    # thresholds 0.8 (tp 1), 0.4 (fp 1), 0.35 (tp 2, TPR 1 >= 0.95, FPR 1/2), 0.1
    want = {"auroc": 0.75, "ap": (1 + 2 / 3) / 2, "fpr95": 0.5, "num_pos": 2, "num_neg": 2}
    for exact in (True, False):
        assert_close(pixel_metrics(labels, scores, exact=exact), want, 1e-12)
    state = state_of(labels, scores)
    assert state.compute()["resolution_bits"] == 32
    assert state.threshold_at_tpr(0.95) == np.float32(0.35)
    assert state.threshold_at_tpr(0.5) == np.float32(0.8)


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

    out = pixel_metrics(np.array([0, 1, 0, 1, 255], np.uint8), np.full(5, 0.3), exact=exact)  # all equal
    assert (out["auroc"], out["ap"], out["fpr95"]) == (0.5, 0.5, 1.0)

    empty = pixel_metrics(np.zeros(0, np.uint8), np.zeros(0, np.float32), exact=exact)
    assert (empty["num_pos"], empty["num_neg"]) == (0, 0)


def test_empty_state():
    state = PixelMetricState()
    out = state.compute()
    assert (out["num_pos"], out["num_neg"]) == (0, 0) and all(math.isnan(out[k]) for k in KEYS)
    assert math.isnan(state.threshold_at_tpr(0.95)) and math.isnan(state.threshold_at_best_f1()[0])
    assert PixelMetricState.from_state_dict(state.state_dict()).compute()["num_neg"] == 0


@pytest.mark.parametrize("cls", [PixelMetricState, SmallState])
def test_merge_equals_pooled_in_any_order(cls):
    """Shards whose own layouts differ (narrow and wide score ranges) merge into the counts of one state."""
    rng = np.random.default_rng(0)
    images = [family_map(kind, seed, (48, 64)) for seed, kind in enumerate(FAMILIES * 2)]
    states = [state_of(lab, s, cls) for lab, s in images]
    pooled = state_of(np.concatenate([lab.ravel() for lab, _ in images]),
                      np.concatenate([s.ravel() for _, s in images]), cls)
    for _ in range(3):
        merged = cls()
        for i in rng.permutation(len(states)):
            assert merged.merge(states[i]) is merged
        same_state(merged, pooled)
        assert merged.compute() == pooled.compute()
    sequential = cls()
    for lab, s in reversed(images):
        sequential.update(lab, s)
    same_state(sequential, pooled)
    halves = [cls(), cls()]
    for i, st in enumerate(states):
        halves[i % 2].merge(st)
    assert halves[1].merge(halves[0]).compute() == pooled.compute()
    with pytest.raises(ValueError, match="bits"):
        cls(19).merge(pooled)
    with pytest.raises(ValueError, match="merge"):
        PixelMetricState().merge(SmallState())


@pytest.mark.parametrize("cls", [PixelMetricState, SmallState])
def test_state_dict_round_trip(cls):
    labels, scores = family_map("entropy", 3, (40, 60))
    state = state_of(labels, scores, cls)
    d = state.state_dict()
    assert d["index"].size <= np.unique(scores[labels != 255]).size and d["pos"].dtype == np.int64
    back = cls.from_state_dict(d)
    assert back.bits == 32
    same_state(back, state)
    assert back.compute() == state.compute() and back.curves() == state.curves()
    assert cls.from_state_dict(cls(12).state_dict()).bits == 12
    with pytest.raises(ValueError, match="state_dict"):
        cls.from_state_dict({**d, "index": d["index"] | 31})


def test_state_memory_is_bounded():
    """Scores over every finite float32 binade, both signs: the layout coarsens, memory stays under 64 MiB."""
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**32, 400_000, dtype=np.uint64).astype(np.uint32)
    scores = bits.view(np.float32)
    labels = (rng.random(scores.size) < 0.2).astype(np.uint8)
    labels[~np.isfinite(scores)] = 255
    state = state_of(labels, scores)

    def array_bytes(s):
        return sum(a.nbytes for a in vars(s._hist).values() if isinstance(a, np.ndarray))

    assert array_bytes(PixelMetricState()) < 2 * MiB
    assert array_bytes(state) == state.nbytes() < 64 * MiB and state._hist.level[0] < 16
    got = state.compute()
    assert_close(got, sklearn_metrics(labels, cut_to_bins(state, scores)), 1e-12)
    assert got["num_pos"] + got["num_neg"] == np.count_nonzero(labels != 255)
    wide = state_of(labels, scores, WideState)  # int64 counts past 2**31 pixels: one page per level-1 bin still fits
    assert wide._hist.dtype == np.int64 and (wide._hist.first_slot > 0).sum() > 65_000
    assert array_bytes(wide) == wide.nbytes() < 64 * MiB
    assert_close(wide.compute(), sklearn_metrics(labels, cut_to_bins(wide, scores)), 1e-12)


class WideHist(KeyHistogram):
    narrow_limit = 1_000  # int64 counts from 1,000 pixels on, at the real budget


class WideState(PixelMetricState):
    _histogram = WideHist


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
    state = state_of(*family_map("noisy", 0, (128, 128)))
    before, d = state.compute(), state.state_dict()
    assert before["num_pos"] > 0
    for labels, scores in [([0, 1], [0.1, np.nan]), ([0, 2], [0.1, 0.2]), ([0, 1], [0.1]),
                           ([1, 0, 0], [0.5, 1e-30, -np.inf])]:
        with pytest.raises((ScoreError, ValueError)):
            state.update(np.array(labels, np.uint8), np.array(scores))
    assert state.compute() == before
    same_state(state, PixelMetricState.from_state_dict(d))


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
    assert pixel_metrics(labels, scores, ignore_index=254) == want
    for lab in (labels, labels.astype(np.uint8), labels.astype(np.int16)):
        got = pixel_metrics(lab, scores, ignore_index=254, exact=False)
        assert {k: got[k] for k in want} == want and got["resolution_bits"] == 32


def test_signed_zero_and_negative_scores_tie_like_sklearn():
    labels = np.array([0, 1, 0, 1, 0, 1, 1], np.uint8)
    scores = np.array([-0.0, 0.0, -2.5, -2.5, 3.0, 0.0, -1e-42], np.float32)
    want = sklearn_metrics(labels, scores)
    assert_close(pixel_metrics(labels, scores), want, 1e-12)
    for cls in (PixelMetricState, SmallState):
        assert_close(state_of(labels, scores, cls).compute(), want, 1e-12)
    t = state_of(labels, scores).threshold_at_tpr(0.5)  # the bin of zero: its edge is -0.0, score >= t takes both
    assert t == 0.0 and str(t) == "-0.0" and np.sum(scores[labels == 1] >= t) == 2


def test_monotone_keys():
    rng = np.random.default_rng(0)
    special = np.array([-np.finfo(np.float32).max, -1.0, -1e-40, -0.0, 0.0, 1e-45, 1e-40, 1.0,
                        np.finfo(np.float32).max], np.float32)
    spread = rng.normal(size=2000) * 10.0 ** rng.integers(-40, 38, 2000)
    values = np.unique(np.concatenate([special, spread.astype(np.float32)]))
    keys = monotone_keys(np.ascontiguousarray(values)).astype(np.int64)
    assert np.all(np.diff(keys) > 0)  # np.unique keeps one zero
    back = np.where(keys >= 2**31, keys ^ 2**31, keys ^ 0xFFFFFFFF).astype(np.uint32).view(np.float32)
    np.testing.assert_array_equal(back, values)


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
            if scores.dtype == np.float16 or state.compute()["resolution_bits"] == 32:  # exact bins
                assert np.mean(pos > boundary) < tpr
                assert boundary == thr[np.argmax(tpr_curve >= tpr)]
            else:  # same bin as the exact threshold
                exact_t = thr[np.argmax(tpr_curve >= tpr)]
                assert t <= exact_t and abs(exact_t - t) <= abs(exact_t) * 2.0 ** -10
    with pytest.raises(ValueError):
        state.threshold_at_tpr(0.0)


def test_thinned_curves_lie_on_sklearn_curves():
    from sklearn.metrics import precision_recall_curve

    rng = np.random.default_rng(7)
    y = (rng.random(100_000) < 0.05).astype(np.uint8)
    s = (rng.normal(size=y.size) + 2 * y).astype(np.float16)  # exact in the state
    state = state_of(y, s)
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


def test_an_image_refused_at_the_narrow_limit_changes_nothing():
    """An image with a NaN that would take the state past int32 counts is refused before the switch to int64."""
    labels, scores = family_map("noisy", 0, (64, 64))
    state = state_of(labels[:32], scores[:32], SmallState)  # 2,048 pixels of 5,000
    before = state.state_dict()
    bad = scores.copy()
    bad[40, 3] = np.nan
    with pytest.raises(ScoreError, match=r"\(40, 3\)"):
        state.update(labels, bad)
    assert state._hist.dtype == np.int32
    same_state(state, SmallState.from_state_dict(before))
    state.update(labels, scores)  # the same image without the NaN: now int64
    assert state._hist.dtype == np.int64


def test_an_empty_page_of_minus_zero_changes_no_threshold():
    """A refused image can leave a page for -0.0 behind; thresholds and edges depend on counts only."""
    labels = np.array([1, 1, 0, 0, 0], np.uint8)
    scores = np.array([0.0, 0.0, 1.0, -1e-42, -2.0], np.float32)
    plain, refused = state_of(labels, scores), state_of(labels, scores)
    with pytest.raises(ScoreError):
        refused.update(np.array([0, 0], np.uint8), np.array([-0.0, np.nan], np.float32))
    assert refused.threshold_at_tpr(0.95) == plain.threshold_at_tpr(0.95)
    np.testing.assert_array_equal(refused.descending_bins()[0], plain.descending_bins()[0])
    same_state(refused, plain)


def test_state_dict_with_bins_of_nan_scores_is_refused():
    d = {"bits": np.array(32), "index": np.array([(0xFFC00000 << 5) | 16]), "pos": np.array([0]), "neg": np.array([1])}
    with pytest.raises(ValueError, match="NaN/inf"):
        PixelMetricState.from_state_dict(d)
    state = state_of(*family_map("smooth", 0, (16, 32)))
    with pytest.raises(ValueError, match="NaN/inf"):
        state.merge(_raw_state(d))
    assert state._hist.dtype == np.int32  # a refused merge widens nothing


def _raw_state(d):
    """A state holding ``d``'s bins without the checks of from_state_dict (as a corrupt pickle would)."""
    state = PixelMetricState(int(d["bits"]))
    state._hist.entries = lambda: (np.array([0xFFC0]), np.array([0]), np.array([16]), np.array([0]), np.array([1]))
    return state


def test_a_pickled_state_carries_only_its_nonzero_bins_and_keeps_counting():
    """Count arrays are reserved at the budget's size, but a state sent between processes (torchrun's all-gather
    pickles it) carries only its nonzero bins, and the copy goes on counting like the original."""
    import pickle

    (la, sa), (lb, sb) = family_map("smooth", 0, (64, 128)), family_map("maxlogit", 1, (64, 128))
    state = state_of(la, sa)
    assert state.nbytes() > 60 * MiB  # reserved, not touched
    blob = pickle.dumps(state)
    assert len(blob) < 4 * MiB
    copy = pickle.loads(blob)
    assert copy.compute() == state.compute()
    for s in (state, copy):
        s.update(lb, sb)  # new level-1 bins: the copy grows its arrays again
    same_state(copy, state)
    same_state(copy, state_of(np.concatenate([la, lb]), np.concatenate([sa, sb])))
