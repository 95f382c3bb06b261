"""Instance AP by the Cityscapes instance-level rules (OoDIS), on hand-built images whose AP is worked out by hand
in each test (precision/recall at each distinct confidence, recall steps by a centred difference)."""
import numpy as np
import pytest

from oodbench.metrics.instances import OVERLAPS, InstanceMetricState

H, W = 60, 80


def box(ids, y, x, h, w, value):
    ids[y:y + h, x:x + w] = value
    return ids


def state_of(gt, pred, confidence, void=None):
    state = InstanceMetricState(threshold=0.5)
    state.add(gt, np.zeros(gt.shape, bool) if void is None else void, pred, np.asarray(confidence, float))
    return state.compute()


def empty():
    return np.zeros((H, W), np.int32)


def test_one_exact_match_is_ap_one():
    gt = box(empty(), 10, 10, 20, 20, 1)
    got = state_of(gt, gt.copy(), [0.9])
    assert got["ap"] == got["ap50"] == 1.0 and got["num_gt_instances"] == got["num_pred_instances"] == 1


def test_a_more_confident_false_positive():
    """Ranked by confidence: the FP (0.9) first, then the match (0.5). At confidence >= 0.5: P 1/2, R 1; at 0.9:
    P 0, R 0; the end point (R 0, P 1). Steps 0.5 * (r[i-1] - r[i+1]) = 0.5, 0.5, 0: AP = 0.5 * 0.5 = 0.25."""
    gt = box(empty(), 10, 10, 20, 20, 1)
    pred = box(box(empty(), 10, 10, 20, 20, 1), 40, 50, 10, 10, 2)
    got = state_of(gt, pred, [0.5, 0.9])
    assert got["ap50"] == pytest.approx(0.25) and got["ap"] == pytest.approx(0.25)
    swapped = state_of(gt, pred, [0.9, 0.5])  # the match first: P 1 at 0.9, P 1/2 at 0.5 -> AP 1
    assert swapped["ap"] == pytest.approx(1.0)


def test_a_match_below_iou_one_half_is_a_miss_and_a_false_positive():
    gt = box(empty(), 10, 10, 20, 20, 1)  # 400 px
    pred = box(empty(), 10, 25, 20, 15, 1)  # 300 px, 100 of them on the instance: IoU 100 / 600
    assert state_of(gt, pred, [0.8])["ap"] == 0.0


def test_partial_overlap_counts_up_to_its_iou():
    """IoU 300 / 400 = 0.75: matched for thresholds 0.50..0.70 (5 of 10), missed (plus a false positive) above."""
    gt = box(empty(), 10, 10, 20, 20, 1)
    pred = box(empty(), 10, 10, 15, 20, 1)
    got = state_of(gt, pred, [0.7])
    per = list(got["ap_per_overlap"].values())
    assert per == [1.0] * 5 + [0.0] * 5 and got["ap"] == pytest.approx(0.5)


def test_void_overlap_excuses_a_false_positive_above_the_threshold():
    """An extra prediction with 60 of its 100 px on void pixels is excused while that share exceeds the threshold
    (0.50, 0.55: AP 1) and a false positive from 0.60 on (the more confident one: AP 0.25 as above):
    mean (2 + 8 * 0.25) / 10 = 0.4."""
    gt = box(empty(), 10, 10, 20, 20, 1)
    pred = box(box(empty(), 10, 10, 20, 20, 1), 40, 50, 10, 10, 2)
    void = np.zeros((H, W), bool)
    void[40:46, 50:60] = True
    got = state_of(gt, pred, [0.5, 0.9], void)
    per = list(got["ap_per_overlap"].values())
    assert per[:2] == pytest.approx([1.0, 1.0]) and per[2:] == pytest.approx([0.25] * 8)
    assert got["ap"] == pytest.approx(0.4)


def test_regions_under_ten_pixels():
    """A 9-px instance is ignored (no miss); a 9-px prediction elsewhere is a false positive (conf 0.9) at every
    threshold; a 12-px prediction with 9 px on the small instance (conf 0.95) is excused while 9/12 = 0.75 exceeds
    the threshold. 0.50..0.70: the match (0.5) and one FP above it: AP 0.25. 0.75..0.95: two FPs above it:
    P 1/3 at R 1, then R 0: AP 0.5 * 1/3 = 1/6. Mean (5 * 0.25 + 5 / 6) / 10."""
    gt = box(box(empty(), 10, 10, 20, 20, 1), 50, 70, 3, 3, 2)
    pred = box(box(box(empty(), 10, 10, 20, 20, 1), 40, 40, 3, 3, 2), 50, 70, 3, 4, 3)
    got = state_of(gt, pred, [0.5, 0.9, 0.95])
    assert list(got["ap_per_overlap"].values()) == pytest.approx([0.25] * 5 + [1 / 6] * 5)
    assert got["ap"] == pytest.approx((5 * 0.25 + 5 / 6) / 10)
    assert got["num_gt_instances"] == 1 and got["num_pred_instances"] == 3


def test_no_ground_truth_is_undefined_and_no_prediction_is_zero():
    assert np.isnan(state_of(empty(), box(empty(), 1, 1, 5, 5, 1), [0.5])["ap"])
    assert state_of(box(empty(), 1, 1, 5, 5, 1), empty(), np.zeros(0))["ap"] == 0.0


def test_from_score_maps_merge_in_any_order():
    rng = np.random.default_rng(0)
    frames = []
    for k in range(4):
        label = np.zeros((H, W), np.uint8)
        label[10 + k:30, 10:30 + k] = 1
        label[:3] = 255
        score = rng.random((H, W)) * 0.4 + 0.55 * (label == 1) + 0.5 * (rng.random((H, W)) > 0.995)
        frames.append((label, score))
    one = InstanceMetricState(0.5)
    for label, score in frames:
        one.update(label, score)
    halves = [InstanceMetricState(0.5), InstanceMetricState(0.5)]
    for k, (label, score) in enumerate(frames[::-1]):
        halves[k % 2].update(label, score)
    merged = halves[1].merge(halves[0]).compute()
    assert merged == one.compute() and len(one.compute()["ap_per_overlap"]) == len(OVERLAPS)
    assert 0 < one.compute()["ap50"] <= 1


def reference_ap(cases, min_region=10):
    """cityscapesScripts' own ``evaluateMatches`` on the same images, its match lists built as ``assignGt2Preds``
    builds them from masks (one class)."""
    ev = pytest.importorskip("cityscapesscripts.evaluation.evalInstanceLevelSemanticLabeling",
                             reason="cityscapesscripts is not installed (extra dev)")
    matches = {}
    for n, (gt, void, pred, confidence) in enumerate(cases):
        gts = [{"instID": 1000 + g, "pixelCount": int((gt == g).sum()), "medDist": -1, "distConf": 0.0,
                "matchedPred": []} for g in range(1, gt.max() + 1)]
        preds = []
        for p in range(1, pred.max() + 1):
            mask = pred == p
            if not mask.any():
                continue
            entry = {"pixelCount": int(mask.sum()), "confidence": float(confidence[p - 1]),
                     "voidIntersection": int((mask & void).sum()), "matchedGt": []}
            for g in gts:
                inter = int((mask & (gt == g["instID"] - 1000)).sum())
                if inter:
                    entry["matchedGt"].append({**g, "intersection": inter})
                    g["matchedPred"].append({**entry, "intersection": inter})
            preds.append(entry)
        matches[f"img{n}"] = {"groundTruth": {"anomaly": gts}, "prediction": {"anomaly": preds}}
    args = ev.CArgs()
    args.overlaps, args.minRegionSizes = OVERLAPS, np.array([min_region])
    args.distanceThs, args.distanceConfs = np.array([float("inf")]), np.array([-float("inf")])
    args.distanceAvailable, args.instLabels = False, ["anomaly"]
    return ev.evaluateMatches(matches, args)[0, 0]


def random_case(rng):
    gt, pred = empty(), empty()
    for g in range(1, rng.integers(1, 5)):
        y, x = rng.integers(0, H - 12), rng.integers(0, W - 12)
        box(gt, y, x, rng.integers(2, 12), rng.integers(2, 12), g)
    for p in range(1, rng.integers(1, 6)):
        y, x = rng.integers(0, H - 14), rng.integers(0, W - 14)
        box(pred, y, x, rng.integers(2, 14), rng.integers(2, 14), p)
    void = rng.random((H, W)) < 0.3
    confidence = np.round(rng.random(pred.max() + 1), 1)  # ties between confidences too
    return gt, void, pred, confidence


@pytest.mark.parametrize("seed", range(6))
def test_equals_cityscapes_scripts_on_random_cases(seed):
    rng = np.random.default_rng(seed)
    cases = [random_case(rng) for _ in range(5)]
    want = reference_ap(cases)
    state = InstanceMetricState(0.5)
    for gt, void, pred, confidence in cases:
        state.add(gt, void, pred, confidence)
    got = np.array(list(state.compute()["ap_per_overlap"].values()))
    np.testing.assert_allclose(got, want, atol=1e-12, equal_nan=True)


def test_dataset_instance_labels_split_touching_objects():
    """Two touching 20x20 objects are one OoD component (800 px): a prediction of one of them has IoU 0.5, not above
    it, so without instance labels it is a miss and a false positive (AP 0). With the dataset's instance ids it
    matches one object and the other is a miss: P 1 at R 1/2, recall steps 0.25 + 0.25, AP 0.5."""
    label = np.zeros((H, W), np.uint8)
    label[10:30, 10:50] = 1
    ids = box(box(empty(), 10, 10, 20, 20, 1), 10, 30, 20, 20, 2)
    score = np.where(ids == 1, 0.9, 0.1)
    plain, annotated = InstanceMetricState(0.5), InstanceMetricState(0.5)
    plain.update(label, score)
    annotated.update(label, score, ids)
    assert plain.compute()["ap"] == 0.0
    got = annotated.compute()
    assert got["ap"] == pytest.approx(0.5) and got["num_gt_instances"] == 2
    assert got["ground_truth"].startswith("dataset instance labels on 1 of 1 images")


def test_road_anomaly_instance_labels_reach_the_record(tmp_path):
    from red_method import Red
    from real_layouts import RA_NAMES, write_roadanomaly

    from oodbench.data.base import DATASETS
    from oodbench.evaluation.runner import run

    root = write_roadanomaly(tmp_path / "ra")
    sample = DATASETS.create("roadanomaly", root=root, expected=len(RA_NAMES))[0]
    assert set(np.unique(sample.instance_label)) == {0, 7}
    assert np.array_equal(sample.instance_label > 0, sample.label == 1)
    record, _ = run(Red(), dataset="roadanomaly", data_root=root, dataset_options={"expected": len(RA_NAMES)},
                    score_cache=False, progress=False, track="obstacle")
    assert record["metrics"]["instances"]["ground_truth"].startswith(f"dataset instance labels on {len(RA_NAMES)} of")
