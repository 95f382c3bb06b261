"""Every named pixel-metric convention against an independent computation of its documented rule with
scikit-learn's curves, on seeded multi-frame cases (ties, all-equal scores, frames without OoD, ignore
pixels, float16 scores); merging halves, state_dict round trips, errors."""
import io
import math

import numpy as np
import pytest
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from oodbench.errors import ScoreError, UnknownNameError
from oodbench.metrics.conventions import convention_from_state_dict, create_convention, list_conventions
from oodbench.metrics.pixel import PixelMetricState

NAMES = ["canonical", "float16", "fpr95_interpolated", "fpr95_nearest", "fpr95_strict", "hist100", "per_image",
         "smiyc768", "trapezoid_ap"]
KINDS = ["float16", "ties", "equal", "signed16", "float32_16", "diagonal", "plateau"]
SEEDS = range(14)
TOL = 1e-9


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def make_frames(seed):
    """2-5 frames of one kind; frame 1 has no OoD pixel; some pixels ignored (NaN scores there).
    Every kind's scores are exact in the state (float16 values or coarse ties); all but signed16 lie in [0, 1]."""
    rng = np.random.default_rng(seed)
    kind = KINDS[seed % len(KINDS)]
    frames = []
    for f in range(int(rng.integers(2, 6))):
        shape = (int(rng.integers(3, 30)), int(rng.integers(3, 40)))
        labels = (rng.random(shape) < rng.choice([0.03, 0.15, 0.5])).astype(np.uint8)
        if f == 1:
            labels[labels == 1] = 0
        labels[rng.random(shape) < rng.choice([0.0, 0.25])] = 255
        if f == 0:
            labels.reshape(-1)[:2] = [0, 1]
        z = rng.normal(size=shape) + rng.uniform(0.5, 3) * (labels == 1)
        scores = {
            "float16": sigmoid(z).astype(np.float16),
            "ties": np.round(sigmoid(z) * 8) / 8,
            "equal": np.full(shape, 0.25),
            "signed16": (3 * z).astype(np.float16),
            "float32_16": sigmoid(z).astype(np.float16).astype(np.float32),
        }.get(kind)
        if kind == "signed16":
            scores.reshape(-1)[-3:] = [-0.0, 0.0, -0.0]  # equal scores: one threshold
        if kind == "diagonal":  # every level holds one OoD and one ID pixel: a collinear ROC run
            labels, scores = np.tile([1, 0], 40).astype(np.uint8), np.repeat(np.arange(40) / 64, 2)
        if kind == "plateau":  # TPR exactly 0.95 at several thresholds
            labels = np.array([1] * 19 + [0] * 6 + [1] + [0] * 4, np.uint8)
            scores = np.r_[np.full(19, 0.9), np.linspace(0.8, 0.55, 6), 0.5, np.full(4, 0.25)]
            scores = (scores - 0.01 * f).astype(np.float16)
        scores = scores.copy()
        scores[labels == 255] = np.nan  # ignored pixels must not matter
        frames.append((labels, scores))
    return kind, frames


def pooled(frames, skip_without_ood=False):
    ys, ss = [], []
    for labels, scores in frames:
        if skip_without_ood and not np.any(labels == 1):
            continue
        valid = labels != 255
        ys.append(labels[valid].astype(int).ravel())
        ss.append(np.asarray(scores, np.float64)[valid].ravel())
    return np.concatenate(ys), np.concatenate(ss)


def first_tpr_at_least(y, s):
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    return fpr[np.flatnonzero(tpr >= 0.95)[0]]


def canonical_reference(y, s):
    return {"auroc": roc_auc_score(y, s), "ap": average_precision_score(y, s), "fpr95": first_tpr_at_least(y, s)}


def reference(name, frames):
    """The convention's documented rule on scikit-learn's curves."""
    if name == "per_image":
        rows, skipped = [], 0
        for labels, scores in frames:
            y, s = pooled([(labels, scores)])
            if len(np.unique(y)) < 2:
                skipped += 1
                continue
            precision, recall, _ = precision_recall_curve(y, s)
            rows.append((roc_auc_score(y, s), auc(recall, precision), first_tpr_at_least(y, s)))
        return dict(zip(("auroc", "ap", "fpr95"), np.mean(rows, axis=0)), num_frames_skipped=skipped)
    if name == "hist100":
        return hist100_reference(frames)
    if name == "smiyc768":
        return smiyc_reference(frames, store_float16=True)
    y, s = pooled(frames, skip_without_ood=name == "fpr95_interpolated")
    if name == "float16":
        return canonical_reference(y, s.astype(np.float16).astype(np.float64))
    if name == "canonical":
        return canonical_reference(y, s)
    if name == "trapezoid_ap":
        precision, recall, _ = precision_recall_curve(y, s)
        return {"ap": auc(recall, precision)}
    if name == "fpr95_nearest":  # PEBAL: points up to the first full recall, nearest 0.95, ties to the lower threshold
        fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
        fpr, tpr = fpr[1:], tpr[1:]
        last = np.flatnonzero(tpr == 1)[0]
        distance = np.abs(tpr[: last + 1] - 0.95)
        return {"fpr95": fpr[np.flatnonzero(distance == distance.min())[-1]]}
    fpr, tpr, _ = roc_curve(y, s)  # RbA, DenseHybrid, Mask2Anomaly: the default drop_intermediate=True
    if name == "fpr95_strict":
        return {"fpr95": fpr[np.flatnonzero(tpr > 0.95)[0]]}
    assert name == "fpr95_interpolated"
    skipped = sum(not np.any(labels == 1) for labels, _ in frames)
    return {"auroc": auc(fpr, tpr), "ap": average_precision_score(y, s), "fpr95": np.interp(0.95, tpr, fpr),
            "num_frames_skipped": skipped}


def meta_ood_rescale(counts, total):
    return (counts / np.sum(counts) * total).astype("uint32")


def hist100_reference(frames):
    """meta-ood: np.histogram into 100 bins per class; AUROC and FPR (TPR nearest 0.95) on the data list
    of counts scaled to 1e5 per class; AP of counts scaled to 1e7 in total (as sample weights)."""
    edges = np.linspace(0, 1, 101)
    y, s = pooled(frames)
    c_in, c_out = np.histogram(s[y == 0], bins=edges)[0], np.histogram(s[y == 1], bins=edges)[0]
    bin_scores = np.arange(1, 101) / 100
    x_in, x_out = (np.repeat(bin_scores, meta_ood_rescale(c, 1e5)) for c in (c_in, c_out))
    fpr, tpr, _ = roc_curve(np.r_[np.zeros(x_in.size), np.ones(x_out.size)], np.r_[x_in, x_out])
    ratio_in = np.sum(c_in) / (np.sum(c_in) + np.sum(c_out))
    w = np.r_[meta_ood_rescale(c_in, 1e7 * ratio_in), meta_ood_rescale(c_out, 1e7 * (1 - ratio_in))]
    ap = average_precision_score(np.r_[np.zeros(100), np.ones(100)], np.r_[bin_scores, bin_scores], sample_weight=w)
    return {"auroc": auc(fpr, tpr), "ap": ap, "fpr95": fpr[np.argmin(np.abs(tpr - 0.95))]}


def smiyc_bins(labels, scores, store_float16):
    """One frame as SegmentMeIfYouCan bins it: edges vmin - eps, vmax + eps (eps = max(1 % of the range, 0.01))
    and 384 quantiles per class; counts per bin."""
    valid = labels != 255
    s = np.asarray(scores)[valid]
    s = s.astype(np.float16) if store_float16 else s.astype(np.float64)
    pos, neg = s[labels[valid] == 1], s[labels[valid] == 0]
    vmin, vmax = float(s.min()), float(s.max())
    eps = max(0.01 * (vmax - vmin), 0.01)
    edges = np.unique(np.concatenate([[vmin - eps, vmax + eps]] + [np.quantile(p, np.linspace(0, 1, min(384, p.size)))
                                                 for p in (pos, neg) if p.size]))
    return edges[:-1], np.histogram(pos, bins=edges)[0], np.histogram(neg, bins=edges)[0]


def smiyc_reference(frames, store_float16):
    """Pooled bins as weighted samples at their lower edges through scikit-learn (valid while no two
    frames share the top threshold, which the callers ensure)."""
    lower, tp, fp = (np.concatenate(a) for a in zip(*(smiyc_bins(lab, s, store_float16) for lab, s in frames)))
    tops = [smiyc_bins(lab, s, store_float16)[0][-1] for lab, s in frames]
    assert len(set(tops)) == len(tops), "frames share the top threshold; the partial point is tested apart"
    y, s, w = np.r_[np.ones(lower.size), np.zeros(lower.size)], np.r_[lower, lower], np.r_[tp, fp]
    fpr, tpr, _ = roc_curve(y, s, sample_weight=w, drop_intermediate=False)
    return {"auroc": roc_auc_score(y, s, sample_weight=w), "ap": average_precision_score(y, s, sample_weight=w),
            "fpr95": fpr[np.flatnonzero(tpr >= 0.95)[0]]}


def state_over(name, frames, **kwargs):
    state = create_convention(name, **kwargs)
    for labels, scores in frames:
        state.update(labels, scores)
    return state


def assert_matches(got, want):
    for key, value in want.items():
        assert abs(got[key] - value) <= TOL, (key, got[key], value)


def smiyc_frames(frames):
    """Scores shifted below 0.5 and one pixel per frame given its own maximum in (0.5, 1): distinct tops."""
    top = max(np.nanmax(np.asarray(s, np.float64)[lab != 255]) for lab, s in frames)
    out = []
    for f, (labels, scores) in enumerate(frames):
        scores = np.asarray(scores, np.float64) - top - 0.5
        scores.reshape(-1)[np.flatnonzero(labels.reshape(-1) != 255)[0]] = 0.5 + 0.04 * f
        out.append((labels, scores))
    return out


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", [n for n in NAMES if n not in ("hist100", "smiyc768")])
def test_matches_reference(name, seed):
    kind, frames = make_frames(seed)
    got = state_over(name, frames).compute()
    assert got["convention"] == name and isinstance(got["description"], str) and got["description"]
    assert_matches(got, reference(name, frames))


@pytest.mark.parametrize("seed", [s for s in SEEDS if KINDS[s % len(KINDS)] != "signed16"])
def test_hist100_matches_meta_ood(seed):
    _, frames = make_frames(seed)
    assert_matches(state_over("hist100", frames).compute(), hist100_reference(frames))


def test_hist100_bins_edges_like_np_histogram():
    edges = np.linspace(0, 1, 101)
    values = np.r_[edges, np.nextafter(edges, 2), np.nextafter(edges, -1), edges.astype(np.float32)].clip(0, 1)
    labels = np.arange(values.size) % 2
    state = state_over("hist100", [(labels.astype(np.uint8), values)])
    assert np.array_equal(state._pos, np.histogram(values[labels == 1], bins=edges)[0])
    assert np.array_equal(state._neg, np.histogram(values[labels == 0], bins=edges)[0])


@pytest.mark.parametrize("seed", SEEDS)
def test_smiyc768_matches_pooled_bins(seed):
    _, frames = make_frames(seed)
    frames = smiyc_frames(frames)
    assert_matches(state_over("smiyc768", frames).compute(), smiyc_reference(frames, store_float16=True))


def test_smiyc768_quantile_bins_on_large_float64_frames():
    rng = np.random.default_rng(7)
    frames = []
    for f in range(3):
        labels = (rng.random((60, 80)) < 0.2).astype(np.uint8)
        frames.append((labels, sigmoid(rng.normal(size=labels.shape) + 1.5 * labels) * 0.9 + 0.001 * f))
    got = state_over("smiyc768", frames, store_float16=False).compute()
    assert_matches(got, smiyc_reference(frames, store_float16=False))
    assert 0 < abs(got["ap"] - reference("canonical", frames)["ap"]) < 0.02  # binned: close to exact, not equal


def test_smiyc768_outer_edges_give_the_top_score_its_own_bin():
    """Scores beyond [0, 1] (a max-logit map): labels [1, 0, 0], scores [5, -3, 2]. Range edges -3.08 and 5.08
    (eps = 0.08) with quantiles 5 and -3, 2 give bins [-3.08, -3), [-3, 2), [2, 5), [5, 5.08]: the OoD pixel alone
    on top, AP = AUROC = 1, FPR95 = 0. Unit edges 0 and 1 leave [2, 5] as the closed top bin holding both 5 and 2:
    the curve goes (0, 0) -> (tp 1, fp 1) -> (1, 2), so AP = 1/2, AUROC = 3/4, FPR95 = 1/2."""
    frame = [(np.array([1, 0, 0], np.uint8), np.array([5.0, -3.0, 2.0]))]
    assert_matches(state_over("smiyc768", frame, store_float16=False).compute(), {"ap": 1.0, "auroc": 1.0, "fpr95": 0.0})
    assert_matches(state_over("smiyc768", frame, store_float16=False, outer_edges="unit").compute(),
                   {"ap": 0.5, "auroc": 0.75, "fpr95": 0.5})
    with pytest.raises(ValueError, match="outer_edges"):
        create_convention("smiyc768", outer_edges="clip")


def test_smiyc768_partial_point_when_frames_share_the_top_threshold():
    """Two frames whose top bins share the threshold 0.5: the reference keeps the first sorted entry as a
    point of its own, so AP and AUROC depend on which frame np.argsort puts first (exact: both 0.75)."""
    a = (np.array([1, 0], np.uint8), np.array([0.5, 0.25]))  # entries (0.5: tp 1, fp 0), (0.25: 0, 1), (0: 0, 0)
    b = (np.array([1, 1, 0], np.uint8), np.array([0.5, 0.5, 0.5]))  # entries (0.5: tp 2, fp 1), (0: 0, 0)
    expected = {"a": {"ap": 1 / 3 + 2 / 3 * 3 / 4, "auroc": 5 / 6},
                "b": {"ap": 2 / 3 * 2 / 3 + 1 / 3 * 3 / 4, "auroc": 2 / 3}}
    for order in ("ab", "ba"):
        frames = [a if c == "a" else b for c in order]
        thresholds = np.concatenate([[0.5, 0.25, 0.0] if c == "a" else [0.5, 0.0] for c in order])  # unit edges
        first = np.argsort(thresholds)[::-1][0]
        first_frame = order[0] if first < (3 if order[0] == "a" else 2) else order[1]
        got = state_over("smiyc768", frames, outer_edges="unit").compute()
        assert_matches(got, {**expected[first_frame], "fpr95": 0.5})
    assert_matches(reference("canonical", [a, b]), {"ap": 0.75, "auroc": 0.75})


@pytest.mark.parametrize("name", NAMES)
def test_merge_of_halves_equals_one_state(name):
    frames = make_frames(0)[1] + make_frames(8)[1]
    half = len(frames) // 2
    merged = state_over(name, frames[:half]).merge(state_over(name, frames[half:]))
    assert_same(merged.compute(), state_over(name, frames).compute())


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name):
    _, frames = make_frames(5)
    state = state_over(name, frames)
    buffer = io.BytesIO()
    np.savez(buffer, **state.state_dict())
    buffer.seek(0)
    loaded = dict(np.load(buffer))
    assert_same(convention_from_state_dict(loaded).compute(), state.compute())
    again = type(state).from_state_dict(state.state_dict())
    again.update(*frames[0])
    state.update(*frames[0])
    assert_same(again.compute(), state.compute())


def assert_same(got, want):
    assert got.keys() == want.keys()
    for key in want:
        both_nan = isinstance(want[key], float) and math.isnan(want[key]) and math.isnan(got[key])
        assert got[key] == want[key] or both_nan, key


@pytest.mark.parametrize("name", NAMES)
def test_degenerate_splits(name):
    negatives_only = [(np.zeros((4, 5), np.uint8), np.linspace(0, 1, 20).reshape(4, 5))]
    out = state_over(name, negatives_only).compute()
    assert all(math.isnan(out[k]) for k in ("auroc", "ap", "fpr95") if k in out)
    out = state_over(name, [(np.ones((4, 5), np.uint8), np.linspace(0, 1, 20).reshape(4, 5))]).compute()
    assert all(math.isnan(out[k]) for k in ("auroc", "fpr95") if k in out)
    assert "ap" not in out or abs(out["ap"] - 1.0) < 1e-12 or (name == "per_image" and math.isnan(out["ap"]))
    out = create_convention(name).compute()
    assert all(math.isnan(out[k]) for k in ("auroc", "ap", "fpr95") if k in out)


def test_frames_without_both_classes_are_counted():
    both = (np.array([[0, 1], [0, 255]], np.uint8), np.array([[0.1, 0.9], [0.3, np.nan]]))
    no_ood = (np.zeros((2, 2), np.uint8), np.ones((2, 2)))
    all_ignored = (np.full((3, 3), 255, np.uint8), np.zeros((3, 3)))
    frames = [both, no_ood, both, all_ignored]
    out = state_over("per_image", frames).compute()
    assert (out["num_frames"], out["num_frames_skipped"]) == (len(frames), 2)
    out = state_over("fpr95_interpolated", frames).compute()
    assert (out["num_frames"], out["num_frames_skipped"]) == (len(frames), 2)
    assert_matches(out, {"auroc": 1.0, "ap": 1.0, "fpr95": 0.0, "num_pos": 2, "num_neg": 4})


def test_conventions_move_the_numbers():
    rng = np.random.default_rng(1)
    labels = (rng.random((80, 120)) < 0.05).astype(np.uint8)
    scores = sigmoid(rng.normal(size=labels.shape) + 2 * labels)
    frames = [(labels[:40], scores[:40]), (labels[40:], scores[40:])]
    base = state_over("canonical", frames).compute()
    for name in ("trapezoid_ap", "hist100", "per_image", "float16", "smiyc768"):
        assert state_over(name, frames).compute()["ap"] != base["ap"], name


def test_float16_is_exact_where_a_20_bit_state_is_not():
    rng = np.random.default_rng(2)
    labels = (rng.random((50, 70)) < 0.1).astype(np.uint8)
    scores = sigmoid(rng.normal(size=labels.shape) + 2 * labels) * 0.01 + 0.3  # a narrow band
    frames = [(labels, scores)]
    assert_matches(state_over("float16", frames).compute(), reference("float16", frames))
    coarse = state_over("canonical", frames, bits=20).compute()
    assert abs(coarse["ap"] - reference("canonical", frames)["ap"]) > 1e-6
    assert coarse["resolution_bits"] == 20 and state_over("fpr95_strict", frames, bits=20).compute()["resolution_bits"] == 20
    assert state_over("canonical", frames).compute()["resolution_bits"] == 32  # a narrow band keeps every value


def test_canonical_equals_the_runner_state():
    """By default ``canonical`` keeps all 32 key bits, as the record's own pixel state does: same numbers."""
    rng = np.random.default_rng(3)
    labels = (rng.random((60, 80)) < 0.1).astype(np.uint8)
    frames = [(labels, sigmoid(rng.normal(size=labels.shape) + 2 * labels).astype(np.float32))]
    got, state = state_over("canonical", frames).compute(), PixelMetricState()
    state.update(*frames[0])
    want = state.compute()
    assert all(abs(got[k] - want[k]) <= 1e-12 for k in ("auroc", "ap", "fpr95"))  # sums in another order
    assert_matches(got, reference("canonical", frames))


def test_registry_names_and_unknown_name():
    assert list_conventions() == NAMES
    assert list_conventions("fpr95_*") == ["fpr95_interpolated", "fpr95_nearest", "fpr95_strict"]
    with pytest.raises(UnknownNameError, match="fpr95_strict"):
        create_convention("fpr95_strikt")


def test_errors_name_the_fix():
    labels = np.array([0, 1, 0], np.uint8)
    with pytest.raises(ScoreError, match=r"np\.clip"):
        create_convention("hist100").update(labels, np.array([0.2, 1.5, -0.1]))
    for name in ("float16", "smiyc768"):
        with pytest.raises(ScoreError, match="float16"):
            create_convention(name).update(labels, np.array([0.0, 1e6, 1.0]))
    for name in NAMES:
        with pytest.raises(ScoreError, match="NaN"):
            create_convention(name).update(labels, np.array([0.0, np.nan, 1.0]))
        create_convention(name).update(np.array([255, 1, 0], np.uint8), np.array([np.nan, 0.5, 0.25]))
    with pytest.raises(ValueError, match="merge"):
        create_convention("canonical").merge(create_convention("canonical", bits=22))
    with pytest.raises(ValueError, match="merge"):
        create_convention("canonical").merge(create_convention("trapezoid_ap"))


def test_pooled_conventions_of_a_run_read_the_record_state():
    """In a run's states, pooled conventions binned like the pixel state share its counts (no second histogram);
    their numbers equal standalone states', also after pickling and merging shards. fpr95_interpolated, which
    skips frames, keeps its own."""
    import pickle

    from oodbench.data.base import Sample
    from oodbench.evaluation.score_pass import Scored
    from oodbench.evaluation.states import EvaluationStates

    names = ("canonical", "trapezoid_ap", "fpr95_interpolated", "float16")
    frames = make_frames(3)[1] + make_frames(4)[1]

    def fed(part):
        states = EvaluationStates(conventions={n: create_convention(n) for n in names})
        for k, (labels, scores) in enumerate(part):
            states.consume(Scored(Sample(f"f{k}", None, labels), np.asarray(scores, np.float32)))
        return states

    states = fed(frames)
    assert states.shared == {"canonical", "trapezoid_ap"}
    assert all(states.conventions[n]._hist is states.pixel for n in states.shared)
    assert states.pixel._total == sum(int(np.sum(lab != 255)) for lab, _ in frames)  # counted once
    merged = pickle.loads(pickle.dumps(fed(frames[:3]))).merge(pickle.loads(pickle.dumps(fed(frames[3:]))))
    for name in names:
        want = state_over(name, [(lab, np.asarray(s, np.float32)) for lab, s in frames]).compute()
        for got in (states.conventions[name].compute(), merged.conventions[name].compute()):
            assert got.keys() == want.keys()
            assert all(got[k] == want[k] or abs(got[k] - want[k]) <= TOL for k in want), (name, got, want)
