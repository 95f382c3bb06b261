"""score_pass: loading and everything after the forward pass overlap the model in threads when it runs off the
CPU, inline when on it; either way consumers see the samples in order and errors surface in the caller."""
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from oodbench.data.base import Sample
from oodbench.errors import LabelError
from oodbench.methods.base import Method, MethodOutput
from oodbench.metrics.pixel import PixelMetricState
from oodbench.evaluation.map_store import MapStore
from oodbench.evaluation.score_cache import ScoreCache
from oodbench.evaluation.score_pass import score_pass


class Frames(list):
    """Samples that note which thread loaded them."""
    name, split = "frames", "test"

    def __init__(self, n=9):
        rng = np.random.default_rng(0)
        super().__init__()
        for k in range(n):
            image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
            label = (image[..., 0] > 180).astype(np.uint8)
            self.append(Sample(f"s{k}", image, label))
        self.loaders = set()

    def __getitem__(self, k):
        self.loaders.add(threading.current_thread().name)
        return super().__getitem__(k)


class Brightness(Method):
    name = "brightness"

    def __init__(self, device_type="cpu", fail_at=None):
        self.device = SimpleNamespace(type=device_type)
        self.fail_at, self.calls = fail_at, 0

    def predict(self, images):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt
        return MethodOutput(scores=images.mean(-1).astype(np.float32) / 255)


def consumed(device_type, cache=None):
    data, seen, state = Frames(), [], PixelMetricState()

    def consume(item):
        seen.append((item.sample.id, threading.current_thread().name))
        state.update(item.sample.label, item.score)
    score_pass(Brightness(device_type), data, 2, False, "t", [consume], store=MapStore(cache))
    return data, seen, state


def test_off_the_cpu_work_overlaps_in_threads_with_the_same_result():
    inline_data, inline, inline_state = consumed("cpu")
    data, overlapped, state = consumed("cuda")
    assert [i for i, _ in overlapped] == [i for i, _ in inline] == [f"s{k}" for k in range(9)]
    assert {t for _, t in inline} == {"MainThread"} and inline_data.loaders == {"MainThread"}
    assert {t for _, t in overlapped} == {"oodbench-metrics_0"} and data.loaders == {"oodbench-prefetch"}
    for key in ("index", "pos", "neg"):
        np.testing.assert_array_equal(state.state_dict()[key], inline_state.state_dict()[key])


@pytest.mark.parametrize("device_type", ["cpu", "cuda"])
def test_a_consumer_error_surfaces_with_its_sample(device_type):
    def consume(item):
        if item.sample.id == "s5":
            raise LabelError("label value 7")
    with pytest.raises(LabelError, match=r"frames/test sample 's5': label value 7"):
        score_pass(Brightness(device_type), Frames(), 2, False, "t", [consume])
    assert not [t for t in threading.enumerate() if t.name.startswith("oodbench-metrics")]


def test_an_interrupt_keeps_the_batches_before_it(tmp_path):
    cache, seen = ScoreCache("k", tmp_path), []
    with pytest.raises(KeyboardInterrupt):
        score_pass(Brightness("cuda", fail_at=3), Frames(), 2, False, "t", [lambda item: seen.append(item.sample.id)],
                   store=MapStore(cache))
    assert seen == ["s0", "s1", "s2", "s3"]
    assert [cache.get(f"s{k}", s.image) is not None for k, s in enumerate(Frames())] == [True] * 4 + [False] * 5


def test_a_map_without_segments_never_replaces_one_with_them(tmp_path):
    """X and X_meta share maps: X (or a threshold pass of a concurrent shard) writing the same frame's map must not
    drop the segments X_meta's stage formed there; another frame's map does replace them."""
    from oodbench.segments.collector import ImageSegments

    cache = ScoreCache("k" * 64, tmp_path)
    image = np.zeros((2, 3, 3), np.uint8)
    score = np.full((2, 3), 0.5, np.float16)
    segments = ImageSegments("a", np.ones((1, 4)), np.array([1]), 1, np.zeros((0, 2), np.int64))
    cache.put("a", score, image, segments, 0.7)
    cache.put("a", score, image)
    kept = cache.get("a", image, 0.7)
    assert kept is not None and np.array_equal(kept[1].features, segments.features)
    other = image + 1
    cache.put("a", score, other)
    assert cache.get("a", other, 0.7) is None and cache.get("a", other) is not None
