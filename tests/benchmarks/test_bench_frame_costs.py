"""Per-frame cost of component metrics and meta features on a 1024x2048 frame: a clean map (a few objects) and
a noisy one (over 1,000 components). Time should follow the pixel count, not pixels x components; each figure
is compared with one memory pass over the same score map (``np.sum``) measured in the same run.

Under ``--benchmark-disable`` the same code runs on a 128x256 frame as a correctness check."""
import numpy as np
import pytest
from scipy import ndimage

from oodbench.metrics.components import ComponentMetricState
from oodbench.segments.collector import image_segments
from oodbench.segments.features import segment_features

_TIMES: dict[str, float] = {}


def frame(h: int, w: int, noisy: bool, seed: int = 0):
    """Label with six boxes; scores high on the boxes, plus smooth noise that breaks into many blobs if ``noisy``;
    softmax probabilities (19 classes) whose normalized entropy equals the score."""
    rng = np.random.default_rng(seed)
    label = np.zeros((h, w), np.uint8)
    score = np.full((h, w), 0.05, np.float32)
    for k in range(6):
        y, x = int(rng.integers(0, h - h // 8)), int(rng.integers(0, w - w // 8))
        label[y:y + h // 16, x:x + w // 32] = 1
        score[y:y + h // 16, x:x + w // 32] = 0.95
    if noisy:
        noise = ndimage.gaussian_filter(rng.standard_normal((h, w)).astype(np.float32), 2.0)
        score = np.clip(score + 0.9 * (noise > 0.12 * noise.std() * 4), 0, 1).astype(np.float32)
    label[-h // 10:] = 255
    probs = np.empty((19, h, w), np.float32)
    peak = 1 - score * (18 / 19)  # normalized entropy is monotone in the peak for a flat rest
    probs[0] = peak
    probs[1:] = ((1 - peak) / 18)[None]
    return label, score, probs


@pytest.fixture(scope="module", params=["clean", "noisy"])
def case(request):
    big = not request.config.getoption("benchmark_disable", False)
    h, w = (1024, 2048) if big else (128, 256)
    label, score, probs = frame(h, w, request.param == "noisy")
    n = ComponentMetricState(0.5, 50, 10)
    n.update(label, score)
    comps = n.compute()["num_pred_components"]
    if big:
        assert (comps > 1000) if request.param == "noisy" else (comps < 20), comps
    return request.param, label, score, probs


def test_bench_memory_pass(benchmark, case):
    name, _, score, _ = case
    benchmark(np.sum, score)
    _TIMES[f"sum-{name}"] = benchmark.stats.stats.mean if benchmark.stats else 0.0


def test_bench_component_metrics(benchmark, case):
    name, label, score, _ = case

    def once():
        state = ComponentMetricState(0.5, 50, 10)
        state.update(label, score)
        return state.compute()

    result = benchmark.pedantic(once, rounds=3, iterations=1, warmup_rounds=1)
    assert result["num_gt_components"] == 6 or label.shape[0] < 1024
    _report(benchmark, name, "component metrics")


def test_bench_meta_features(benchmark, case):
    """As in a run: segments of the method's score map (normalized entropy here), features, targets, touches."""
    name, label, score, probs = case
    item = benchmark.pedantic(image_segments, args=("frame", probs, label, 0.7, score), rounds=3, iterations=1,
                              warmup_rounds=1)
    assert item.features.shape[1] == 75 and len(item.targets) > 0
    assert item.num_gt == 6 or label.shape[0] < 1024
    benchmark.extra_info["segments"] = len(item.targets)
    _report(benchmark, name, f"meta features ({len(item.targets)} segments)")


def test_bench_meta_features_from_probs(benchmark, case):
    """Standalone, segments of the normalized entropy computed from the probabilities (one more pass over C maps)."""
    name, label, _, probs = case
    features = benchmark.pedantic(segment_features, args=(probs, label == 255, 0.7), rounds=3, iterations=1,
                                  warmup_rounds=1)
    assert features.features.shape[1] == 75 and features.n > 0
    _report(benchmark, name, f"meta features with the entropy from probs ({features.n} segments)")


def _report(benchmark, name: str, what: str) -> None:
    if not benchmark.stats or f"sum-{name}" not in _TIMES:
        return
    mean, base = benchmark.stats.stats.mean, _TIMES[f"sum-{name}"]
    benchmark.extra_info["ratio_to_np_sum"] = round(mean / base, 1)
    print(f"\n{name}: {what} {mean * 1e3:.1f} ms per frame = {mean / base:.0f}x one np.sum pass ({base * 1e3:.2f} ms)")
