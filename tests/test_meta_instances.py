"""The meta stage's segments measured as an instance detector (Cityscapes / OoDIS rules), confidence = 1 - the meta
classifier's out-of-fold P(false positive): hand-built frames whose AP is worked out by hand in each test, the same
frames through cityscapesScripts' ``evaluateMatches``, the overlap table (kept instead of maps) against the maps it
was taken from, merging in any order, the score cache, and the record field of real runs."""
import json
import shutil

import numpy as np
import pytest

from oodbench.data import DATASETS
from oodbench.evaluation.runner import run
from oodbench.evaluation.score_cache import BadCacheEntry, ScoreCache, checksum
from oodbench.evaluation.states import EvaluationStates
from oodbench.leaderboard.validate import validate_record
from oodbench.metrics.instances import InstanceMetricState
from oodbench.segments.collector import (SegmentCollector, image_segments, instance_ground_truth,
                                         overlap_table)
from oodbench.segments.features import form_segments

from realdata import REALDATA, ROAD_ANOMALY, espnetv2_weights, needs
from test_instance_metrics import reference_ap

H, W = 60, 80


def box(a, y, x, h, w, value):
    a[y:y + h, x:x + w] = value
    return a


def probs(seed=0):
    p = np.random.default_rng(seed).random((3, H, W)) + 0.1
    return (p / p.sum(axis=0)).astype(np.float32)


def frame(image_id, label, score, truth=None, instance_label=None, seed=0):
    """One image's segments (``score >= 0.5`` off the label's ignored pixels) as the score pass forms them."""
    return image_segments(image_id, probs(seed), label, 0.5, score, truth=truth, instance_label=instance_label)


def meta_ap(images, proba):
    """metrics.segments.instances of these images with out-of-fold P(FP) ``proba``, as the runner computes it."""
    collector = SegmentCollector()
    for im in images:
        collector.add(im)
    return EvaluationStates(segments=collector).meta_instances(np.asarray(proba, float), 0.5)


def by_maps(gt, void, segments, confidence, annotated=False):
    """The same image through ``InstanceMetricState.add``: id maps, no table kept."""
    state = InstanceMetricState(0.5)
    state.add(gt, void, segments, np.asarray(confidence, float))
    return state.compute()


def same_ap(a, b):
    keys = ("ap", "ap50", "ap_per_overlap", "num_gt_instances", "num_pred_instances")
    return {k: a[k] for k in keys} == {k: b[k] for k in keys}


def two_boxes():
    """An OoD box (400 px, segment 1) and a false-positive segment elsewhere (100 px, segment 2)."""
    label = box(np.zeros((H, W), np.uint8), 10, 10, 20, 20, 1)
    label[55:] = 255
    score = box(box(np.zeros((H, W)), 10, 10, 20, 20, 1.0), 40, 50, 10, 10, 1.0)
    return label, score


def test_ranked_by_one_minus_p_false_positive():
    """P(FP) 0.5 for the match and 0.1 for the false positive: confidences 0.5 and 0.9, the FP ranked first.
    At >= 0.5: P 1/2, R 1; at 0.9: P 0, R 0; end (R 0, P 1): recall steps 0.5, 0.5, 0, AP 0.5 * 0.5 = 0.25 at
    every IoU threshold (the match is exact). The other way round the match leads: P 1 at R 1, AP 1."""
    label, score = two_boxes()
    im = frame("a", label, score)
    assert im.instances.pred_size.tolist() == [400, 100] and im.targets.tolist() == [0, 1]
    got = meta_ap([im], [0.5, 0.1])
    assert got["ap"] == pytest.approx(0.25) and got["ap50"] == pytest.approx(0.25)
    assert got["num_gt_instances"] == 1 and got["num_pred_instances"] == 2 and got["threshold"] == 0.5
    assert "1 - the meta classifier's out-of-fold P(false positive)" in got["rules"]
    assert meta_ap([im], [0.1, 0.5])["ap"] == pytest.approx(1.0)
    segments, _ = form_segments(score, label == 255, 0.5)
    assert same_ap(got, by_maps(label == 1, label == 255, segments, [0.5, 0.9]))


def test_void_comes_from_the_evaluated_labels():
    """Segment labels call the false positive's region in-distribution (as meta-ood's LostAndFound non-hazards);
    the evaluated labels ignore 60 of its 100 px: excused while 0.6 exceeds the IoU threshold (0.50, 0.55: AP 1),
    a false positive above the match from 0.60 on (AP 0.25): mean (2 + 8 * 0.25) / 10 = 0.4."""
    label, score = two_boxes()
    truth = box(label.copy(), 40, 50, 6, 10, 255)
    im = frame("a", label, score, truth=truth)
    assert im.instances.pred_void.tolist() == [0, 60] and im.targets.tolist() == [0, 1]
    got = meta_ap([im], [0.5, 0.1])
    assert list(got["ap_per_overlap"].values()) == pytest.approx([1.0, 1.0] + [0.25] * 8)
    assert got["ap"] == pytest.approx(0.4)
    segments, _ = form_segments(score, label == 255, 0.5)
    assert same_ap(got, by_maps(truth == 1, truth == 255, segments, [0.5, 0.9]))


def test_dataset_instance_labels_split_touching_objects():
    """Two touching 20x20 objects, one segment on the left one. As one OoD component (800 px) the segment's IoU is
    0.5, not above it: a miss and a false positive, AP 0. With the instance ids it matches the left object and the
    right one is a miss: P 1 at R 1/2, recall steps 0.25 + 0.25, AP 0.5."""
    label = box(np.zeros((H, W), np.uint8), 10, 10, 20, 40, 1)
    ids = box(box(np.zeros((H, W), np.int32), 10, 10, 20, 20, 1), 10, 30, 20, 20, 2)
    score = box(np.zeros((H, W)), 10, 10, 20, 20, 1.0)
    assert meta_ap([frame("a", label, score)], [0.2])["ap"] == 0.0
    got = meta_ap([frame("a", label, score, instance_label=ids)], [0.2])
    assert got["ap"] == pytest.approx(0.5) and got["num_gt_instances"] == 2
    assert got["ground_truth"].startswith("dataset instance labels on 1 of 1 images")


def random_frame(rng, k):
    """Blocky segments and objects, extra void in the evaluated labels, segment score ties broken by the map."""
    blocks = lambda p: np.kron(rng.random((H // 5, W // 5)) < p, np.ones((5, 5), bool))  # noqa: E731
    label = np.where(blocks(0.2), 1, 0).astype(np.uint8)
    label[:4] = 255
    truth = np.where((label == 0) & (rng.random((H, W)) < 0.3), 255, label).astype(np.uint8)
    score = np.where(blocks(0.25) | (label == 1) & (rng.random((H, W)) < 0.7), 0.9, 0.1)
    return frame(f"f{k}", label, score, truth=truth, seed=k), label, truth, score


@pytest.mark.parametrize("seed", range(3))
def test_equals_cityscapes_scripts_on_random_frames(seed):
    """The tables the score pass keeps, ranked by 1 - P(FP), give cityscapesScripts' AP on the maps themselves."""
    rng = np.random.default_rng(seed)
    frames = [random_frame(rng, k) for k in range(4)]
    images = [f[0] for f in frames]
    proba = np.round(rng.random(sum(im.targets.size for im in images)), 1)  # ties between confidences too
    got = meta_ap(images, proba)
    cases, start = [], 0
    for im, label, truth, score in frames:
        segments, n = form_segments(score, label == 255, 0.5)
        gt, _ = instance_ground_truth(truth)
        table = overlap_table(gt, truth == 255, segments)
        for field in ("gt_size", "pred_size", "pred_void", "pairs", "inter"):
            np.testing.assert_array_equal(getattr(im.instances, field), getattr(table, field))
        cases.append((gt, truth == 255, segments, 1.0 - proba[start:start + n]))
        start += n
    assert got["num_pred_instances"] == start > 0
    np.testing.assert_allclose(list(got["ap_per_overlap"].values()), reference_ap(cases), atol=1e-12)


def test_shards_merge_in_any_order():
    """Each image keeps its P(FP) (by image id); shards merged in either order, and images added in any order,
    give the same result as one pass."""
    rng = np.random.default_rng(7)
    images = [random_frame(rng, k)[0] for k in range(5)]
    p = {im.image_id: np.round(rng.random(im.targets.size), 2) for im in images}

    def states(part):
        collector = SegmentCollector()
        for im in part:
            collector.add(im)
        return EvaluationStates(segments=collector)

    def result(s):
        return s.meta_instances(np.concatenate([p[im.image_id] for im in s.segments.images]), 0.5)

    one = result(states(images))
    assert one["num_pred_instances"] > 0 and 0 < one["ap50"] <= 1
    assert result(states(images[3:]).merge(states(images[:3]))) == one
    assert result(states(images[::-1])) == one
    state = InstanceMetricState(0.5)
    with pytest.raises(ValueError, match="predictions"):
        state.merge(InstanceMetricState(0.5, predictions="something else"))


def test_untested_segments_leave_it_undefined():
    """One image: grouped cross-validation can test nothing (NaN P(FP)), so no segment has a confidence."""
    label, score = two_boxes()
    got = meta_ap([frame("a", label, score)], [np.nan, np.nan])
    assert np.isnan(got["ap"]) and np.isnan(got["ap50"]) and "tested 0 of 2 segments" in got["undefined"]


def test_the_cache_keeps_the_table_and_refuses_one_that_does_not_fit(tmp_path):
    label, score = two_boxes()
    im = frame("a", label, score, truth=box(label.copy(), 40, 50, 6, 10, 255))
    cache, image = ScoreCache("k" * 64, tmp_path), np.zeros((H, W, 3), np.uint8)
    cache.put("a", cache.stored("a", score), image, im, 0.5)
    back = cache.get("a", image, 0.5)[1].instances
    for field in ("gt_size", "pred_size", "pred_void", "pairs", "inter", "annotated"):
        np.testing.assert_array_equal(getattr(back, field), getattr(im.instances, field))
    path = cache.folder / "a.npz"
    with np.load(path) as z:
        arrays = {name: z[name] for name in z.files if name != "checksum"}
    arrays["instances_pred_size"] = arrays["instances_pred_size"][:1]  # one segment short
    np.savez(path, checksum=np.array(checksum(arrays)), **arrays)
    with pytest.raises(BadCacheEntry, match="overlap table does not fit its 2 segments"):
        cache.get("a", image, 0.5)


def recomputed_from_maps(record, dataset, cache_root=None):
    """The record's meta instance AP again, the map way: every frame's cached map, its segments formed anew
    (``form_segments``), its ground truth, and InstanceMetricState.add with 1 - the same cross-validation's P(FP)."""
    seg = record["metrics"]["segments"]
    cache = ScoreCache(record["scores"]["cache"], None if cache_root is None else cache_root)
    collector, maps = SegmentCollector(), []
    for sample in dataset:
        score, segments = cache.get(sample.id, sample.image, seg["segment_threshold"])
        collector.add(segments)
        segment_map, n = form_segments(score, sample.labels_for_segments == 255, seg["segment_threshold"])
        assert n == segments.targets.size
        maps.append((sample, segment_map))
    proba = collector.out_of_fold(seg["protocol"], seg["n_splits"], record["seed"])
    state = InstanceMetricState(seg["segment_threshold"])
    for (sample, segment_map), p in zip(maps, collector.per_image(proba)):
        gt, _ = instance_ground_truth(sample.label, sample.instance_label)
        state.add(gt, sample.label == 255, segment_map, 1.0 - p)
    return state.compute()


def test_embedded_entmax_meta_records_meta_instance_ap(tmp_path):
    """Eight frames of the embedded benchmark: the record carries metrics.segments.instances (schema-valid), whose
    AP the cached maps give again the map way."""
    from oodbench.data.synthetic import ensure_synthetic

    src = ensure_synthetic() / "lostandfound"
    root = tmp_path / "laf"
    for image in sorted(src.glob("leftImg8bit/test/*/*.png"))[:8]:
        stem = image.name.replace("_leftImg8bit.png", "")
        for f in (image, *src.glob(f"gtCoarse/test/*/{stem}_*")):
            (root / f.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, root / f.relative_to(src))
    record, path = run("entmax_meta", data_root=root, dataset_options={"expected": 8}, progress=False,
                       cache_root=tmp_path / "cache", out_dir=tmp_path / "records")
    validate_record(json.loads(path.read_text()), str(path))
    got, seg = record["metrics"]["segments"]["instances"], record["metrics"]["segments"]
    assert got["threshold"] == seg["segment_threshold"] == 0.7
    assert got["num_pred_instances"] == seg["num_segments"] > 0 and got["num_gt_instances"] > 0
    assert 0 <= got["ap"] <= 1 and 0 <= got["ap50"] <= 1 and "out-of-fold P(false positive)" in got["rules"]
    dataset = DATASETS.create("synthetic", root=root, split="test", expected=8)
    assert same_ap(got, recomputed_from_maps(record, dataset, tmp_path / "cache"))


WEIGHTS = espnetv2_weights(2.0)


@pytest.mark.slow
@needs(ROAD_ANOMALY, WEIGHTS)
def test_road_anomaly_meta_instances_equal_the_map_way():
    """All 60 real Road Anomaly frames (ESPNetv2, maxlogit_meta; instance labels on 46): the record's meta instance
    AP equals the map way's on the cached maps (the session's score cache, shared with the other real runs)."""
    record, _ = run("maxlogit_meta", dataset="roadanomaly", data_root=REALDATA, network="espnetv2_cityscapes",
                    checkpoint=WEIGHTS, batch_size=1, progress=False)
    got = record["metrics"]["segments"]["instances"]
    assert got["ground_truth"].startswith("dataset instance labels on 46 of 60 images")
    dataset = DATASETS.create("roadanomaly", root=REALDATA, split="test")
    assert same_ap(got, recomputed_from_maps(record, dataset))
