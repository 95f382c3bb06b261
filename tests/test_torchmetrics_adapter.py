"""``PixelOoDMetric`` (extra ``torchmetrics``) against scikit-learn: epoch accumulation, reset, and two processes
whose all-gathered states give the metrics of all pixels (skips where torchmetrics does not install)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

pytest.importorskip("torchmetrics", reason="torchmetrics is not installed: pip install 'oodbench[torchmetrics]'")
from oodbench.metrics.torchmetrics_adapter import PixelOoDMetric  # noqa: E402


def batches(seed: int, n: int = 4):
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, 2, 30, 40)) < 0.1).astype(np.int64)
    labels[..., :2] = 255
    scores = rng.normal(size=labels.shape).astype(np.float32) + 1.5 * (labels == 1)
    return torch.from_numpy(labels), torch.from_numpy(scores)


def sklearn_metrics(labels: torch.Tensor, scores: torch.Tensor) -> dict[str, float]:
    keep = labels.numpy() != 255
    y, s = labels.numpy()[keep], scores.numpy()[keep]
    return {"auroc": roc_auc_score(y, s), "ap": average_precision_score(y, s)}


def test_epoch_accumulates_and_reset_forgets():
    labels, scores = batches(0)
    metric = PixelOoDMetric()
    for lab, sco in zip(labels, scores):
        assert metric(sco, lab) is None
    got = metric.compute()
    want = sklearn_metrics(labels, scores)
    assert got["auroc"].item() == pytest.approx(want["auroc"], abs=1e-12)
    assert got["ap"].item() == pytest.approx(want["ap"], abs=1e-12)
    metric.reset()
    other_labels, other_scores = batches(1, 2)
    for lab, sco in zip(other_labels, other_scores):
        metric.update(sco, lab)
    assert metric.compute()["ap"].item() == pytest.approx(sklearn_metrics(other_labels, other_scores)["ap"], abs=1e-12)


def _worker(rank: int, world: int, init_file: str, out: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    labels, scores = batches(0)
    metric = PixelOoDMetric()
    for lab, sco in zip(labels[rank::world], scores[rank::world]):
        metric.update(sco, lab)
    result = metric.compute()
    local = metric.pixels.compute()
    torch.save({"synced": {k: v.item() for k, v in result.items()}, "local_ap": local["ap"]}, f"{out}.{rank}")
    torch.distributed.destroy_process_group()


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")
def test_two_processes_gather_and_merge(tmp_path):
    world = 2
    torch.multiprocessing.spawn(_worker, args=(world, str(tmp_path / "init"), str(tmp_path / "result")),
                                nprocs=world, join=True)
    labels, scores = batches(0)
    want = sklearn_metrics(labels, scores)
    results = [torch.load(tmp_path / f"result.{r}", weights_only=True) for r in range(world)]
    for r in results:
        assert r["synced"]["auroc"] == pytest.approx(want["auroc"], abs=1e-12)
        assert r["synced"]["ap"] == pytest.approx(want["ap"], abs=1e-12)
    half = sklearn_metrics(labels[0::2], scores[0::2])["ap"]
    assert results[0]["local_ap"] == pytest.approx(half, abs=1e-12) and half != pytest.approx(want["ap"])
