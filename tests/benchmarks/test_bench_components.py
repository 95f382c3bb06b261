"""Component metrics (label-indexed counting) vs a per-component-mask implementation of the same
definition, on a noisy score map with many predicted components.

Default size is small so CI runs it as a correctness test (``--benchmark-disable``); set
OODBENCH_BENCH_COMPONENT_SHAPE=1024x2048 for the issue's target size."""
import os

import numpy as np
import pytest
from scipy import ndimage

from oodbench.metrics.components import ComponentMetricState

H, W = (int(v) for v in os.environ.get("OODBENCH_BENCH_COMPONENT_SHAPE", "256x512").split("x"))


def per_component_masks(label, score, thr):
    gt, _ = ndimage.label(label == 1, np.ones((3, 3)))
    pred, _ = ndimage.label((score > thr) & (label != 255), np.ones((3, 3)))
    roi = label != 255
    g, p = gt[roi], pred[roi]
    siou, ppv = [], []
    for i in np.unique(g[g > 0]):
        in_p = np.isin(p, np.unique(p[(g == i) & (p > 0)]))
        inter = ((g == i) & in_p).sum()
        siou.append(inter / (in_p.sum() + (g == i).sum() - inter - (in_p & (g > 0) & (g != i)).sum()))
    for j in np.unique(p[p > 0]):
        ppv.append(((p == j) & (g > 0)).sum() / (p == j).sum())
    return np.mean(siou), np.mean(ppv), len(ppv)


@pytest.fixture(scope="module")
def noisy_frame():
    rng = np.random.default_rng(0)
    label = np.zeros((H, W), np.uint8)
    for _ in range(max(4, H * W // 40000)):
        y, x = rng.integers(0, H - 40), rng.integers(0, W - 40)
        label[y:y + rng.integers(5, 40), x:x + rng.integers(5, 40)] = 1
    label[: H // 3] = 255
    score = ndimage.gaussian_filter(rng.random((H, W)), 1.2).astype(np.float32) + 0.2 * (label == 1)
    thr = float(np.quantile(score, 0.93))
    return label, score, thr


def _ours(label, score, thr):
    state = ComponentMetricState(thr, 0, 0)
    state.update(label, score)
    r = state.compute()
    return r["siou"], r["ppv"], r["num_pred_components"]


def test_bench_components_label_indexed(benchmark, noisy_frame):
    label, score, thr = noisy_frame
    siou, ppv, n = benchmark(_ours, label, score, thr)
    ref = per_component_masks(label, score, thr)
    assert n == ref[2] and n > 100 and abs(siou - ref[0]) < 1e-12 and abs(ppv - ref[1]) < 1e-12


def test_bench_components_per_component_masks(benchmark, noisy_frame):
    label, score, thr = noisy_frame
    benchmark.pedantic(per_component_masks, args=(label, score, thr), rounds=1, iterations=1)
