"""The float16 path of PixelMetricState (the score cache's maps): exact against scikit-learn, identical to counting
the same values as float32, mergeable with float32 counts in any order, and refusing bad input unchanged."""
import pickle

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from oodbench.errors import LabelError, ScoreError
from oodbench.metrics.pixel import PixelMetricState, pixel_metrics

FAMILIES = {
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "maxlogit": lambda z: -8 + 3 * z,
    "entropy": lambda z: np.clip(0.3 + 0.15 * z, 0, 1),
    "signed_zeros": lambda z: np.where(z > 0, 0.0, -0.0) + np.round(z) * 0.25,
}


def frames(family, n=3, shape=(60, 90), seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        labels = (rng.random(shape) < 0.05).astype(np.uint8)
        labels[rng.random(shape) < 0.15] = 255
        z = rng.standard_normal(shape) + 1.5 * (labels == 1)
        out.append((labels, FAMILIES[family](z).astype(np.float16)))
    return out


def fed(pairs, bits=32, cast=None):
    state = PixelMetricState(bits)
    for labels, scores in pairs:
        state.update(labels, scores if cast is None else scores.astype(cast))
    return state


@pytest.mark.parametrize("family", FAMILIES)
def test_exact_against_sklearn_and_equal_to_float32_counting(family):
    pairs = frames(family)
    got = fed(pairs).compute()
    labels = np.concatenate([l.ravel() for l, _ in pairs])
    scores = np.concatenate([s.ravel() for _, s in pairs]).astype(np.float64)
    keep = labels != 255
    assert got["auroc"] == pytest.approx(roc_auc_score(labels[keep], scores[keep]), abs=1e-12)
    assert got["ap"] == pytest.approx(average_precision_score(labels[keep], scores[keep]), abs=1e-12)
    assert got["resolution_bits"] == 32
    assert got == fed(pairs, cast=np.float32).compute()
    functional = pixel_metrics(np.stack([l for l, _ in pairs]), np.stack([s for _, s in pairs]))
    assert functional == {k: got[k] for k in ("auroc", "ap", "fpr95", "num_pos", "num_neg")}


@pytest.mark.parametrize("bits", [12, 19, 32])
def test_mixed_float16_and_float32_updates_merge_in_any_order(bits):
    a, b = frames("maxlogit", seed=1), frames("sigmoid", seed=2)
    b32 = [(l, s.astype(np.float32) + np.float32(1e-3)) for l, s in b]  # float32 values no float16 holds
    want = fed(a + b32, bits, cast=np.float32)
    orders = [a + b32, b32 + a, [b32[0], a[0], b32[1], a[1], a[2], b32[2]]]
    for pairs in orders:
        assert fed(pairs, bits).compute() == want.compute()
    halves = fed(a, bits).merge(fed(b32, bits))
    assert halves.compute() == want.compute()
    assert fed(b32, bits).merge(fed(a, bits)).compute() == want.compute()
    assert fed(a, bits).merge(fed(a, bits)).compute() == fed(a + a, bits).compute()
    assert fed(a, bits).threshold_at_tpr(0.95) == fed(a, bits, cast=np.float32).threshold_at_tpr(0.95)
    assert fed(a, bits).curves() == fed(a, bits, cast=np.float32).curves()


def test_state_dict_and_pickle_carry_the_float16_counts():
    state = fed(frames("entropy"))
    want = state.compute()
    assert PixelMetricState.from_state_dict(state.state_dict()).compute() == want
    assert pickle.loads(pickle.dumps(fed(frames("entropy")))).compute() == want
    state.update(*frames("entropy", n=1, seed=5)[0])
    state.reset()
    assert state.compute()["num_pos"] == 0 and state._total == 0


def test_bad_input_is_refused_and_changes_nothing():
    pairs = frames("sigmoid")
    state = fed(pairs)
    before = state.compute()
    labels, scores = pairs[0]
    nan = scores.copy()
    nan[labels == 0] = np.nan
    with pytest.raises(ScoreError, match="NaN/inf"):
        state.update(labels, nan)
    wrong = labels.copy()
    wrong[0, 0] = 7
    with pytest.raises(LabelError, match=r"\[7\]"):
        state.update(wrong, scores)
    assert state.compute() == before
    ignored = scores.copy()
    ignored[labels == 255] = np.inf  # ignored pixels may hold anything
    state.update(labels, ignored)
    assert state.compute()["num_pos"] == before["num_pos"] + int((labels == 1).sum())


@pytest.mark.parametrize("ignore_index", [255, 9, 1000])
def test_other_label_encodings(ignore_index):
    """int64 labels and another ignore value take the general label check, then the same float16 counts."""
    labels, scores = frames("maxlogit", n=1)[0]
    other = np.where(labels == 255, ignore_index, labels.astype(np.int64))
    state = PixelMetricState()
    state.update(other, scores, ignore_index=ignore_index)
    assert state.compute() == fed([(labels, scores)]).compute()
