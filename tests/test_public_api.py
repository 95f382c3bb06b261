"""The public API: names exported from ``oodbench`` and ``oodbench.metrics``, ``reset``, and the README's example,
executed exactly as written."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

import oodbench
from oodbench import metrics

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_python_blocks() -> list[str]:
    section = README.read_text().split("## Python API", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_readme_api_example_runs_as_written(tmp_path):
    (block,) = readme_python_blocks()
    out = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[3].startswith(f"{oodbench.__version__} ")
    pixel = eval(lines[0], {"nan": float("nan")})  # the printed dict of pixel_metrics
    rng = np.random.default_rng(0)  # the example's data, rebuilt here for an independent check
    labels = np.zeros((2, 64, 64), np.uint8)
    labels[:, 20:30, 20:30] = 1
    labels[:, :4] = 255
    scores = (rng.random((2, 64, 64)) + 0.5 * (labels == 1)).astype(np.float32)
    keep = labels != 255
    assert pixel["auroc"] == pytest.approx(roc_auc_score(labels[keep], scores[keep]), abs=1e-12)
    assert pixel["ap"] == pytest.approx(average_precision_score(labels[keep], scores[keep]), abs=1e-12)


def test_top_level_exports_resolve_lazily():
    code = ("import sys, oodbench; assert 'torch' not in sys.modules, 'import oodbench loads torch'; "
            "print(sorted(n for n in oodbench.__all__ if not callable(getattr(oodbench, n)) and n != '__version__'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    for name in ("create_model", "create_method", "list_methods", "load_dataset", "list_datasets", "pixel_metrics"):
        assert name in dir(oodbench)
    assert "entropy" in oodbench.list_methods("ent*") and "synthetic" in oodbench.list_datasets()
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        oodbench.nonexistent  # noqa: B018


def test_metrics_exports():
    assert {"pixel_metrics", "PixelMetricState", "ComponentMetricState", "component_metrics",
            "create_convention"} <= set(metrics.__all__)
    assert all(hasattr(metrics, n) for n in metrics.__all__)


def _data(seed: int):
    rng = np.random.default_rng(seed)
    labels = (rng.random((3, 40, 50)) < 0.08).astype(np.uint8)
    labels[:, :, :3] = 255
    return labels, rng.normal(size=labels.shape).astype(np.float32) + 2 * (labels == 1)


@pytest.mark.parametrize("make", [lambda: metrics.PixelMetricState(),
                                  lambda: metrics.ComponentMetricState.for_track(1.0, "obstacle"),
                                  lambda: metrics.create_convention("smiyc768"),
                                  lambda: metrics.create_convention("fpr95_interpolated"),
                                  lambda: metrics.create_convention("per_image")])
def test_reset_forgets_everything_and_keeps_settings(make):
    """After ``reset`` a state fed B equals a fresh state fed B (and not one fed A then B)."""
    (la, sa), (lb, sb) = _data(1), _data(2)
    used, fresh = make(), make()
    for label, score in zip(la, sa):
        used.update(label, np.clip(score / 6 + 0.5, 0, 1))
    used.reset()
    for state in (used, fresh):
        for label, score in zip(lb, sb):
            state.update(label, np.clip(score / 6 + 0.5, 0, 1))
    a, b = used.compute(), fresh.compute()
    np.testing.assert_equal(a, b)


def test_component_metrics_functional_equals_the_state():
    labels, scores = _data(3)
    state = metrics.ComponentMetricState.for_track(1.0, "obstacle")
    for label, score in zip(labels, scores):
        state.update(label, score)
    np.testing.assert_equal(metrics.component_metrics(labels, scores, 1.0, track="obstacle"), state.compute())
    one = metrics.component_metrics(labels[0], scores[0], 1.0, track="obstacle")
    assert one["num_gt_components"] == metrics.component_metrics(labels[:1], scores[:1], 1.0,
                                                                 track="obstacle")["num_gt_components"]
