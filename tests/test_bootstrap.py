"""Bootstrap over images: agreement with a naive bootstrap, collapse, reproducibility, merging."""
import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_curve

from oodbench.errors import ScoreError
from oodbench.metrics.bootstrap import METHOD, BootstrapCollector
from oodbench.metrics.components import ComponentMetricState
from oodbench.metrics.pixel import pixel_metrics

THR = 0.8


def make_frames(n=7, seed=0):
    """Small frames: rectangles of OoD, an ignore band, float32 scores with ties and signed zeros; one
    frame without OoD."""
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n):
        label = np.zeros((24, 32), np.uint8)
        if k != 3:
            y, x = rng.integers(0, 16, 2)
            label[y:y + rng.integers(2, 8), x:x + rng.integers(2, 12)] = 1
        label[:2] = 255
        score = (rng.random((24, 32)) * 0.9 + 0.4 * (label == 1)).astype(np.float32)
        score[5, :4] = [0.0, -0.0, 0.0, -0.0]
        score[6, :8] = 0.5
        frames.append((label, score))
    return frames


def collect(frames, ids=None):
    state, boot = ComponentMetricState(THR, 0, 0), BootstrapCollector()
    for k, (label, score) in enumerate(frames):
        boot.update(label, score, components=state.update(label, score), image_id=None if ids is None else ids[k])
    return boot


def naive_values(frames, n_resamples, seed):
    """Independent bootstrap: pool the chosen images' pixels, scikit-learn on float16-cast scores; components
    by a fresh state over the chosen images."""
    rng = np.random.default_rng(seed)
    out = {"ap": [], "fpr95": [], "f1_mean": []}
    for _ in range(n_resamples):
        idx = rng.integers(0, len(frames), len(frames))
        labels = np.concatenate([frames[i][0].ravel() for i in idx])
        scores = np.concatenate([frames[i][1].ravel() for i in idx]).astype(np.float16).astype(np.float64)
        y, s = labels[labels != 255], scores[labels != 255]
        out["ap"].append(average_precision_score(y, s))
        fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
        out["fpr95"].append(fpr[np.argmax(tpr >= 0.95)])
        state = ComponentMetricState(THR, 0, 0)
        for i in idx:
            state.update(*frames[i])
        out["f1_mean"].append(state.compute()["f1_mean"])
    return {k: np.array(v) for k, v in out.items()}


def test_agrees_with_a_naive_bootstrap():
    frames = make_frames()
    values = collect(frames).resample_values(150, seed=7)
    naive = naive_values(frames, 150, seed=7)
    np.testing.assert_allclose(values["ap"], naive["ap"], rtol=0, atol=1e-12)
    assert np.array_equal(values["fpr95"], naive["fpr95"])
    assert np.array_equal(values["f1_mean"], naive["f1_mean"])
    r = collect(frames).compute(150, seed=7, confidence=0.9)
    for name in ("ap", "fpr95", "f1_mean"):
        low, high = np.percentile(naive[name], [5, 95])
        assert r["metrics"][name]["low"] == pytest.approx(low, abs=1e-12)
        assert r["metrics"][name]["high"] == pytest.approx(high, abs=1e-12)
        assert r["metrics"][name]["std_error"] == pytest.approx(np.std(naive[name], ddof=1), abs=1e-12)
    assert (r["method"], r["n_resamples"], r["seed"], r["confidence"]) == (METHOD, 150, 7, 0.9)
    assert "float16" in r["pixel_scores"] and r["num_images"] == 7 and r["component_setting"] == (THR, 0, 0)


def test_one_image_repeated_collapses_to_the_point_value():
    label, score = make_frames(1, seed=3)[0]
    boot = collect([(label, score)] * 10)
    r = boot.compute(200, seed=0)["metrics"]
    for name in ("ap", "fpr95", "auroc"):
        m = r[name]
        assert m["low"] == m["high"] == m["float16_estimate"] and m["std_error"] < 1e-12
        assert m["float16_estimate"] == pytest.approx(pixel_metrics(label, score.astype(np.float16))[name], abs=1e-12)
    state = ComponentMetricState(THR, 0, 0)
    state.update(label, score)
    assert r["f1_mean"]["low"] == r["f1_mean"]["high"] == state.compute()["f1_mean"]  # integer counts: exact
    for name in ("siou", "ppv"):  # float sums scaled by multiplicities: equal up to rounding
        assert r[name]["low"] == pytest.approx(state.compute()[name], abs=1e-12)
        assert r[name]["high"] == pytest.approx(state.compute()[name], abs=1e-12)


def test_reproducible_for_a_seed_and_changing_with_it():
    boot = collect(make_frames())
    a, b, c = boot.compute(100, seed=1), boot.compute(100, seed=1), boot.compute(100, seed=2)
    assert a == b
    assert a["metrics"]["ap"] != c["metrics"]["ap"] and a["seed"] == 1 and c["seed"] == 2
    with pytest.raises(TypeError, match="seed"):
        boot.compute(100, seed=None)


def test_merge_of_two_collectors_equals_one():
    frames = make_frames()
    one = collect(frames).compute(100, seed=3)
    a, b = collect(frames[:4]), collect(frames[4:])
    assert a.merge(b).compute(100, seed=3) == one
    rebuilt = BootstrapCollector.from_state_dict(collect(frames).state_dict())
    assert rebuilt.compute(100, seed=3) == one
    ids = [f"frame_{k:02d}" for k in range(len(frames))]  # with image ids, shard order does not matter
    first = collect(frames[:4], ids[:4]).merge(collect(frames[4:], ids[4:])).compute(100, seed=3)
    swapped = collect(frames[4:], ids[4:]).merge(collect(frames[:4], ids[:4])).compute(100, seed=3)
    assert first == swapped and first["image_order"] == "sorted by image_id"
    assert first["metrics"] == one["metrics"]


def test_undefined_resamples_are_counted_not_averaged():
    frames = make_frames()
    boot = collect([frames[3], frames[0]])  # frame 3 has no OoD pixel: resamples of it alone have no AP
    m = boot.compute(200, seed=0)["metrics"]["ap"]
    assert 0 < m["n_undefined"] < 200 and np.isfinite(m["low"]) and np.isfinite(m["high"])


def test_inputs_are_checked():
    label, score = make_frames(1)[0]
    boot = BootstrapCollector()
    bad = score.copy()
    bad[10, 10] = np.nan
    with pytest.raises(ScoreError, match="NaN"):
        boot.update(label, bad)
    boot.update(label, score)
    frame = ComponentMetricState(THR, 0, 0).update(label, score)
    with pytest.raises(ValueError, match="every image"):
        boot.update(label, score, components=frame)
    with_comp = collect([(label, score)])
    other = ComponentMetricState(0.5, 0, 0).update(label, score)
    with pytest.raises(ValueError, match="do not match"):
        with_comp.update(label, score, components=other)
    with pytest.raises(ValueError, match="component sums"):
        with_comp.merge(boot)
    with pytest.raises(ValueError, match="no images"):
        BootstrapCollector().compute(10)
