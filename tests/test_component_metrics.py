"""SegmentMeIfYouCan component metrics: hand-built cases and a per-component-mask reference."""
import numpy as np
import pytest
from scipy import ndimage

from oodbench.metrics.components import TAUS, ComponentMetricState, component_stats, instances

EIGHT = np.ones((3, 3), dtype=int)


def reference_frame(label, score, thr, min_pred, min_gt):
    """Straightforward per-component-mask implementation of the published definition."""
    pred_mask = (score > thr) & (label != 255)
    gt, ng = ndimage.label(label == 1, EIGHT)
    pred, npred = ndimage.label(pred_mask, EIGHT)
    for j in range(npred + 1):
        if (pred == j).sum() < min_pred:
            pred[pred == j] = 0
    label = label.copy()
    for i in range(ng + 1):
        if (gt == i).sum() < min_gt:
            label[gt == i] = 255
    roi = label < 255
    g, p = gt[roi], pred[roi]
    siou, ppv = [], []
    for i in np.unique(g[g > 0]):
        touching = np.unique(p[(g == i) & (p > 0)])
        in_p = np.isin(p, touching)
        inter = ((g == i) & in_p).sum()
        adjust = (in_p & (g > 0) & (g != i)).sum()
        siou.append(inter / (in_p.sum() + (g == i).sum() - inter - adjust))
    for j in np.unique(p[p > 0]):
        ppv.append(((p == j) & (g > 0)).sum() / (p == j).sum())
    return np.array(siou), np.array(ppv)


def run_state(frames, thr, min_pred=0, min_gt=0):
    state = ComponentMetricState(thr, min_pred, min_gt)
    for label, score in frames:
        state.update(label, score)
    return state.compute()


def square(h, w, y0, y1, x0, x1, value=1, base=0):
    a = np.full((h, w), base, dtype=np.uint8)
    a[y0:y1, x0:x1] = value
    return a


def test_perfect_prediction():
    label = square(20, 20, 5, 10, 5, 10)
    r = run_state([(label, label.astype(np.float32))], 0.5)
    assert r["siou"] == 1.0 and r["ppv"] == 1.0 and r["f1_mean"] == 1.0
    assert r["tp"] == [1] * 11 and r["fp"] == [0] * 11


def test_one_prediction_covering_two_objects_gets_adjusted_siou():
    label = np.zeros((10, 30), np.uint8)
    label[2:6, 2:6] = 1     # object a: 16 px
    label[2:6, 20:24] = 1   # object b: 16 px
    score = np.zeros(label.shape, np.float32)
    score[2:6, 2:24] = 1    # one prediction: 88 px covering both
    siou, _, ppv = component_stats(*instances(label, score, 0.5, 0, 0))[:3]
    # for a: |a ∩ P| = 16, |a ∪ P| = 88, other object's pixels under P (16) are removed: 16 / 72
    assert np.allclose(siou, [16 / 72, 16 / 72])
    assert np.allclose(ppv, [32 / 88])


def test_object_split_into_two_predictions():
    label = square(10, 20, 2, 8, 2, 14)           # 72 px
    score = np.zeros(label.shape, np.float32)
    score[2:8, 2:6] = 1                            # 24 px
    score[2:8, 10:14] = 1                          # 24 px, not touching the first
    siou, _, ppv = component_stats(*instances(label, score, 0.5, 0, 0))[:3]
    assert np.allclose(siou, [48 / 72]) and np.allclose(ppv, [1.0, 1.0])


def test_touching_objects_form_one_component_diagonally():
    label = np.zeros((10, 10), np.uint8)
    label[2:4, 2:4] = 1
    label[4:6, 4:6] = 1  # touches the first at a corner -> one 8-connected component
    r = run_state([(label, label.astype(np.float32))], 0.5)
    assert r["num_gt_components"] == 1 and r["siou"] == 1.0


def test_predictions_on_ignore_do_not_count():
    label = square(10, 10, 0, 10, 0, 5, value=255)
    label[6:8, 6:8] = 1
    score = np.zeros(label.shape, np.float32)
    score[:, :5] = 1  # entirely on ignore
    score[6:8, 6:8] = 1
    r = run_state([(label, score)], 0.5)
    assert r["num_pred_components"] == 1 and r["ppv"] == 1.0 and r["fp"] == [0] * 11


def test_size_filters_drop_small_predictions_and_void_small_objects():
    label = np.zeros((30, 30), np.uint8)
    label[1:3, 1:3] = 1       # 4 px object < min_gt -> void
    label[10:20, 10:20] = 1   # 100 px object
    score = np.zeros(label.shape, np.float32)
    score[1:3, 1:3] = 1       # prediction only on the voided object: vanishes
    score[25:27, 25:27] = 1   # 4 px false prediction < min_pred: dropped
    score[10:20, 10:20] = 1
    r = run_state([(label, score)], 0.5, min_pred=5, min_gt=5)
    assert r["num_gt_components"] == 1 and r["num_pred_components"] == 1
    assert r["f1_mean"] == 1.0
    r0 = run_state([(label, score)], 0.5)
    assert r0["num_gt_components"] == 2 and r0["num_pred_components"] == 3


def test_frame_without_objects_and_empty_prediction():
    empty = np.zeros((8, 8), np.uint8)
    score = np.zeros((8, 8), np.float32)
    score[1:4, 1:4] = 1
    r = run_state([(empty, score)], 0.5)
    assert r["num_gt_components"] == 0 and r["fp"] == [1] * 11 and np.isnan(r["siou"])
    assert r["f1_mean"] == 0.0
    label = square(8, 8, 2, 5, 2, 5)
    r = run_state([(label, np.zeros((8, 8), np.float32)), (empty, np.zeros((8, 8), np.float32))], 0.5)
    assert r["siou"] == 0.0 and r["fn"] == [1] * 11 and np.isnan(r["ppv"]) and r["f1_mean"] == 0.0


def test_siou_exactly_0_6_fails_the_official_seventh_tau():
    label = square(1, 10, 0, 1, 0, 5)               # 5 px object
    score = np.zeros((1, 10), np.float32)
    score[0, 0:3] = 1                               # 3 px inside: sIoU = 3 / 5 = 0.6
    r = run_state([(label, score)], 0.5)
    assert abs(r["siou"] - 0.6) < 1e-15
    assert TAUS[7] > 0.6 and r["tp"][7] == 0 and r["tp"][6] == 1


def test_threshold_is_strictly_greater():
    label = square(6, 6, 1, 4, 1, 4)
    score = label.astype(np.float32) * 0.5
    assert run_state([(label, score)], 0.5)["num_pred_components"] == 0
    assert run_state([(label, score)], 0.49)["num_pred_components"] == 1
    # float16 maps compare at full precision: a threshold just below 0.3 is not rounded up to float16's 0.3
    half = (label * np.float16(0.3)).astype(np.float16)
    just_below = float(np.nextafter(float(np.float16(0.3)), -np.inf))
    assert run_state([(label, half)], just_below)["num_pred_components"] == 1
    assert run_state([(label, half)], float(np.float16(0.3)))["num_pred_components"] == 0


@pytest.mark.parametrize("seed", range(12))
def test_matches_per_component_reference_on_noisy_maps(seed):
    rng = np.random.default_rng(seed)
    h, w = 48, 64
    frames = []
    for _ in range(3):
        label = np.zeros((h, w), np.uint8)
        for _ in range(rng.integers(0, 5)):
            y, x, s = rng.integers(0, h - 8), rng.integers(0, w - 8), rng.integers(1, 9)
            label[y:y + s, x:x + s] = 1
        label[rng.random((h, w)) < 0.05] = 255
        score = ndimage.gaussian_filter(rng.random((h, w)), 1.0).astype(np.float32) + 0.3 * (label == 1)
        frames.append((label, score))
    thr, min_pred, min_gt = float(np.quantile(frames[0][1], 0.8)), int(rng.integers(0, 6)), int(rng.integers(0, 6))
    state = run_state(frames, thr, min_pred, min_gt)
    ref = [reference_frame(lab, sc, np.float32(thr), min_pred, min_gt) for lab, sc in frames]
    siou = np.concatenate([r[0] for r in ref])
    ppv = np.concatenate([r[1] for r in ref])
    assert state["num_gt_components"] == siou.size and state["num_pred_components"] == ppv.size
    if siou.size:
        assert abs(state["siou"] - siou.mean()) < 1e-12
    if ppv.size:
        assert abs(state["ppv"] - ppv.mean()) < 1e-12
    assert state["tp"] == [int((siou >= t).sum()) for t in TAUS]
    assert state["fp"] == [int((ppv < t).sum()) for t in TAUS]


def test_merge_equals_single_pass():
    rng = np.random.default_rng(0)
    frames = [((rng.random((20, 20)) < 0.1).astype(np.uint8), rng.random((20, 20)).astype(np.float32)) for _ in range(4)]
    whole = ComponentMetricState(0.7, 0, 0)
    parts = [ComponentMetricState(0.7, 0, 0), ComponentMetricState(0.7, 0, 0)]
    for k, (label, score) in enumerate(frames):
        whole.update(label, score)
        parts[k % 2].update(label, score)
    merged, single = parts[0].merge(parts[1]).compute(), whole.compute()
    for key in ("tp", "fn", "fp", "num_gt_components", "num_pred_components", "f1"):
        assert merged[key] == single[key]
    for key in ("siou", "siou_pred", "ppv"):
        assert merged[key] == pytest.approx(single[key], rel=1e-12)
    with pytest.raises(ValueError):
        whole.merge(ComponentMetricState(0.5, 0, 0))


def test_track_presets():
    assert ComponentMetricState.for_track(0.5, "obstacle").min_pred == 50
    assert ComponentMetricState.for_track(0.5).min_gt == 100
    with pytest.raises(ValueError, match="unknown track"):
        ComponentMetricState.for_track(0.5, "road")


# --- size bins -------------------------------------------------------------------------------------------

def test_size_bins_default_edges_with_objects_at_the_bin_limits():
    """Objects of 6,999 / 7,000 / 62,999 / 63,000 px on a 1024x2048 frame; two false positives."""
    label = np.zeros((1024, 2048), np.uint8)
    score = np.zeros(label.shape, np.float32)
    label[10:80, 10:110] = 1
    label[79, 109] = 0                 # A: 6,999 px, small, predicted exactly
    score[10:80, 10:110] = label[10:80, 10:110]
    label[10:80, 200:300] = 1          # B: 7,000 px, medium, missed
    label[200:410, 10:310] = 1
    label[409, 309] = 0                # C: 62,999 px, medium, top half predicted: sIoU 31,500 / 62,999
    score[200:305, 10:310] = 1
    label[200:410, 400:700] = 1        # D: 63,000 px, large, predicted exactly
    score[200:410, 400:700] = 1
    score[10:30, 400:430] = 1          # false positive of 600 px: small
    score[500:750, 10:310] = 1         # false positive of 75,000 px: large
    state = ComponentMetricState.for_track(0.5)
    state.update(label, score)
    r = state.compute()
    sb = r["size_bins"]
    assert sb["edges"] == [7000, 63000] and sb["names"] == ["small", "medium", "large"]
    small, medium, large = (sb["bins"][k] for k in ("small", "medium", "large"))
    assert (small["min_area"], small["max_area"], large["min_area"], large["max_area"]) == (0, 7000, 63000, None)
    assert small["num_gt_components"] == 1 and small["siou"] == 1.0
    assert small["tp"] == [1] * 11 and small["fn"] == [0] * 11
    assert small["num_pred_components"] == 2 and small["ppv"] == 0.5 and small["fp"] == [1] * 11
    assert small["f1_mean"] == pytest.approx(2 / 3)
    assert medium["num_gt_components"] == 2 and medium["siou"] == pytest.approx(31500 / 62999 / 2)
    assert medium["tp"] == [1] * 6 + [0] * 5 and medium["fn"] == [1] * 6 + [2] * 5
    assert medium["num_pred_components"] == 1 and medium["ppv"] == 1.0 and medium["fp"] == [0] * 11
    assert list(medium["f1"].values()) == pytest.approx([2 / 3] * 6 + [0.0] * 5)
    assert medium["f1_mean"] == pytest.approx(4 / 11)
    assert large["num_gt_components"] == 1 and large["tp"] == [1] * 11
    assert large["num_pred_components"] == 2 and large["fp"] == [1] * 11 and large["f1_mean"] == pytest.approx(2 / 3)
    for key in ("tp", "fn", "fp"):  # the bins partition the totals
        assert [sum(v) for v in zip(small[key], medium[key], large[key])] == r[key]


def test_predicted_area_counts_only_the_region_of_interest():
    label = np.zeros((20, 20), np.uint8)
    label[5:7, 5:7] = 1                # 4 px object < min_gt: voided, its pixels leave the ROI
    score = np.zeros(label.shape, np.float32)
    score[2:12, 2:12] = 1              # 100 px prediction, 96 px of it in the ROI
    state = ComponentMetricState(0.5, 0, 5, size_edges=(97,))
    state.update(label, score)
    bins = state.compute()["size_bins"]["bins"]
    assert list(bins) == ["bin0", "bin1"]
    assert bins["bin0"]["num_pred_components"] == 1 and bins["bin0"]["ppv"] == 0.0
    assert bins["bin1"]["num_pred_components"] == 0 and np.isnan(bins["bin1"]["ppv"])
    assert np.isnan(bins["bin0"]["f1_mean"])  # no gt component in the bin: F1 undefined, not 0


def test_size_bin_parameters_are_checked_and_carried():
    with pytest.raises(ValueError, match="increasing"):
        ComponentMetricState(0.5, size_edges=(100, 100))
    with pytest.raises(ValueError, match="names"):
        ComponentMetricState(0.5, size_edges=(100,), size_names=("a", "b", "c"))
    state = ComponentMetricState.for_track(0.5, "obstacle", size_edges=(10, 20, 30), size_names=("a", "b", "c", "d"))
    assert state.min_pred == 50 and state.compute()["size_bins"]["names"] == ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match="size bins"):
        ComponentMetricState(0.5).merge(ComponentMetricState(0.5, size_edges=(10, 20)))


def test_size_bins_merge_equals_single_pass():
    rng = np.random.default_rng(1)
    frames = [(ndimage.binary_dilation(rng.random((40, 40)) < 0.02, iterations=rng.integers(1, 4)).astype(np.uint8),
               rng.random((40, 40)).astype(np.float32)) for _ in range(4)]
    whole, a, b = (ComponentMetricState(0.6, 0, 0, size_edges=(10, 40)) for _ in range(3))
    for k, (label, score) in enumerate(frames):
        whole.update(label, score)
        (a if k < 2 else b).update(label, score)
    merged, single = a.merge(b).compute()["size_bins"], whole.compute()["size_bins"]
    for name in single["names"]:
        m, s = merged["bins"][name], single["bins"][name]
        for key in ("num_gt_components", "num_pred_components", "tp", "fn", "fp"):
            assert m[key] == s[key]
        assert m["siou"] == pytest.approx(s["siou"], nan_ok=True) and m["ppv"] == pytest.approx(s["ppv"], nan_ok=True)
    assert sum(single["bins"][n]["num_gt_components"] for n in single["names"]) > 3


def test_update_returns_the_frame_sums():
    label = square(20, 20, 5, 10, 5, 10)
    state = ComponentMetricState(0.5, 0, 0)
    frame = state.update(label, label.astype(np.float32))
    assert frame.setting == (0.5, 0, 0) and frame.num_gt == 1 and frame.num_pred == 1
    assert frame.tp.tolist() == [1] * 11 and frame.vector().shape == (5 + 3 * 11,)
