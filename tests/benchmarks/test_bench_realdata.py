"""ESPNetv2 (published s = 2.0 weights) on the 60 real Road Anomaly frames: images/s of `run` (PNG/JPEG decoding,
the network card's protocol, score cache, pixel and component metrics, and for entropy_meta the meta stage) against
the network's forward passes alone on the same frames, already decoded and resized. Rounds alternate forward-only and
run; each run is compared with the mean of the forward passes timed just before and after it (median over rounds).
Run with ``--benchmark-only -s``; skipped under ``--benchmark-disable`` (tests/test_realdata_roadanomaly.py checks
the same runs' numbers)."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from oodbench.data import DATASETS
from oodbench.methods import create_method
from oodbench.evaluation.runner import run

from realdata import REALDATA, ROAD_ANOMALY, espnetv2_weights, needs

WEIGHTS = espnetv2_weights(2.0)


@pytest.fixture(scope="module")
def frames():
    ds = DATASETS.create("roadanomaly", root=REALDATA, split="test")
    return ds, [ds[i].image for i in range(len(ds))]


def _forward_only(method, inputs) -> float:
    """The network alone on protocol-resized frames, one at a time, in the layout the method runs it."""
    with torch.no_grad():
        method.model(inputs[0])
        start = time.perf_counter()
        for x in inputs:
            method.model(x)
    return time.perf_counter() - start


@needs(ROAD_ANOMALY, WEIGHTS)
@pytest.mark.parametrize("name", ["maxlogit", "entropy_meta"])
def test_realdata_run_against_forward_passes(benchmark, frames, name, tmp_path):
    if benchmark.disabled:
        pytest.skip("a timing benchmark of 60 real frames (minutes): run with --benchmark-only")
    ds, images = frames
    method = create_method(name, network="espnetv2_cityscapes", checkpoint=str(WEIGHTS))
    method.bind(ds)
    method.setup(progress=False)
    inputs = [torch.from_numpy(method.protocol.prepare(im[None])).permute(0, 3, 1, 2).float()
              .contiguous(memory_format=torch.channels_last) for im in images]
    forwards, evaluations, model = [], [], []

    def time_forward():
        forwards.append(_forward_only(method, inputs))

    def evaluate():
        record, _ = run(name, dataset="roadanomaly", data_root=REALDATA, network="espnetv2_cityscapes",
                        checkpoint=WEIGHTS, batch_size=1, progress=False, cache_root=tmp_path / f"c{time.time_ns()}")
        evaluations.append(record["cost"]["evaluation_seconds"])
        model.append(record["cost"]["model_seconds"])

    benchmark.pedantic(evaluate, setup=time_forward, rounds=3, iterations=1)
    time_forward()
    ratios = np.array(evaluations) / ((np.array(forwards[:-1]) + np.array(forwards[1:])) / 2) - 1
    info = {"frames": len(images), "forward_images_per_second": len(images) / float(np.median(forwards)),
            "run_images_per_second": len(images) / float(np.median(evaluations)),
            "overhead_vs_forward": float(np.median(ratios)),
            "overhead_vs_model_seconds_inside_run": float(np.median(np.array(evaluations) / np.array(model) - 1))}
    benchmark.extra_info.update(info)
    print(f"\n{name}: " + ", ".join(f"{k} {v:.3g}" for k, v in info.items()))
