"""End-to-end overhead of `run`: a model with a fixed cost per image, evaluated with everything on (data loading,
scoring, score cache, pixel and component metrics, meta classification), against its forward passes alone.

Target (issue 7): the run spends at most 15 % more than the forward passes. The ratio is printed and stored in
``extra_info``. Under ``--benchmark-disable`` the same code runs once on the 30-frame split as a correctness test."""
import time

import numpy as np
import pytest
import torch
from torch import nn

from oodbench.data import DATASETS
from oodbench.methods import Method, MethodOutput
from oodbench.methods.meta import with_meta_stage
from oodbench.evaluation.runner import run
from oodbench.scores.functions import SCORES

NUM_CLASSES = 19


class FixedCost(Method):
    """A plain conv net (about 0.1 s per 128x256 image on 2 cores): normalized entropy and softmax probs."""

    name = "fixed_cost"
    provides_probs = True
    score_name = "entropy"

    def __init__(self, width: int = 48, depth: int = 6):
        torch.manual_seed(0)
        layers = [nn.Conv2d(3, width, 3, padding=1), nn.ReLU()]
        for _ in range(depth):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Conv2d(width, NUM_CLASSES, 1)).eval()

    @torch.no_grad()
    def predict(self, images):
        logits = self.net(torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255)
        return MethodOutput(SCORES.get("entropy")(logits).numpy(), torch.softmax(logits, 1).numpy())


@pytest.fixture(scope="module")
def method():
    return with_meta_stage(FixedCost())


def _forward_only(method, images, batch_size=4):
    method.predict(np.stack(images[:batch_size]))  # warm-up, as the run's first batch is not timed apart
    start = time.perf_counter()
    for i in range(0, len(images), batch_size):
        method.predict(np.stack(images[i:i + batch_size]))
    return time.perf_counter() - start


def test_run_overhead_over_forward_passes(benchmark, method, tmp_path):
    """Forward passes alone are timed before each round of the run and once after the last; each round is
    compared with the mean of the forward passes timed just before and just after it, and the overhead is the
    median of the rounds' ratios: this machine's speed drifts by tens of percent over minutes, and a ratio of
    neighbours cancels the drift that a ratio of separate minima keeps."""
    split = "val" if benchmark.disabled else "test"  # val: 30 frames; test: 60
    ds = DATASETS.create("synthetic", split=split)
    images = [ds[i].image for i in range(len(ds))]
    forwards, evaluations, inside = [], [], []

    def time_forward():
        forwards.append(_forward_only(method, images))

    def evaluate():
        record, _ = run(method, split=split, progress=False, cache_root=tmp_path / f"c{time.time_ns()}")
        assert record["metrics"]["segments"]["num_images"] == len(ds)
        evaluations.append(record["cost"]["evaluation_seconds"])
        inside.append(record["cost"]["evaluation_seconds"] / record["cost"]["model_seconds"] - 1)

    benchmark.pedantic(evaluate, setup=time_forward, rounds=1 if benchmark.disabled else 9, iterations=1)
    time_forward()
    ratios = np.array(evaluations) / ((np.array(forwards[:-1]) + np.array(forwards[1:])) / 2) - 1
    overhead = float(np.median(ratios))
    benchmark.extra_info.update({"forward_seconds": forwards, "run_evaluation_seconds": evaluations,
                                 "overhead_vs_forward": overhead, "overhead_vs_model_seconds_inside_run":
                                 float(np.median(inside))})
    print(f"\nrun over forward passes timed just before and after it: median {100 * overhead:+.1f} % "
          f"(rounds {', '.join(f'{100 * r:+.0f}' for r in ratios)} %); median {100 * np.median(inside):+.1f} % over "
          f"the model time inside the run; forward passes {min(forwards):.2f}-{max(forwards):.2f} s")
