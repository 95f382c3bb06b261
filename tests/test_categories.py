"""Per-category results: a dataset that names frame categories (Road Anomaly, from its frame names) gets pixel and
component metrics per category in the record, each equal to the metrics of that category's frames alone."""
import numpy as np
import pytest
from layout_files import write_red_scenes
from red_method import Red
from real_layouts import write_roadanomaly
from sklearn.metrics import average_precision_score, roc_auc_score

from oodbench.data.base import DATASETS
from oodbench.evaluation.runner import run
from oodbench.metrics.components import ComponentMetricState

NAMES = ["animals01_calves", "animals02_zebras", "cones01_street", "vehicle01_tractor"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_roadanomaly(tmp_path_factory.mktemp("ra"), names=NAMES)


def frames_of(root, category):
    ds = DATASETS.create("roadanomaly", root=root, expected=len(NAMES))
    return [s for s in ds if s.meta.get("category") == category]


@pytest.mark.parametrize("threshold", ["0.5", "oracle"])
def test_record_holds_each_categorys_own_metrics(root, threshold):
    record, _ = run(Red(), dataset="roadanomaly", data_root=root, dataset_options={"expected": len(NAMES)},
                    score_cache=False, progress=False, threshold=threshold, track="obstacle")
    categories = record["metrics"]["categories"]
    assert {c: v["num_images"] for c, v in categories.items()} == {"animals": 2, "cones": 1, "vehicle": 1}
    t = record["metrics"]["components"]["threshold"]
    for category, got in categories.items():
        samples = frames_of(root, category)
        labels = np.concatenate([s.label.ravel() for s in samples])
        scores = np.concatenate([s.image[..., 0].ravel() for s in samples]).astype(np.float32) / 255
        keep = labels != 255
        assert got["pixel"]["auroc"] == pytest.approx(roc_auc_score(labels[keep], scores[keep]), abs=1e-9)
        assert got["pixel"]["ap"] == pytest.approx(average_precision_score(labels[keep], scores[keep]), abs=1e-9)
        assert got["pixel"]["num_pos"] == int((labels == 1).sum())
        state = ComponentMetricState.for_track(t, "obstacle")
        for s in samples:
            state.update(s.label, s.image[..., 0].astype(np.float32) / 255)
        want = {k: (None if v != v else v) for k, v in state.compute().items() if isinstance(v, (int, float))}
        assert want["num_gt_components"] == len(samples)  # one box per frame: the comparison has substance
        for key in ("siou", "ppv", "f1_mean", "num_gt_components", "num_pred_components"):
            assert got["components"][key] == pytest.approx(want[key]), key


def test_datasets_without_categories_have_none(tmp_path):
    root = write_red_scenes(tmp_path / "red", 40, np.s_[20:28, 25:33], count=3)
    record, _ = run(Red(), dataset="folder", data_root=root, score_cache=False, progress=False, components=False)
    assert "categories" not in record["metrics"]


def test_road_anomaly_categories_come_from_frame_names(root):
    ds = DATASETS.create("roadanomaly", root=root, expected=len(NAMES))
    assert [ds.category(i) for i in ds.ids] == ["animals", "animals", "cones", "vehicle"]
    assert ds[2].meta["category"] == "cones"
