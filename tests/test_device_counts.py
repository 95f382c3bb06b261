"""The pixel state's device pass (torch, for scores on a GPU) gives the host pass's counts exactly.

No GPU is needed: the same torch code runs on CPU tensors once ``on_device`` treats every tensor as a device one.
"""
import pickle

import numpy as np
import pytest
import torch

from oodbench.data.base import Sample
from oodbench.errors import ScoreError
from oodbench.methods.base import Method, MethodOutput
from oodbench.metrics import pixel
from oodbench.metrics.pixel import PixelMetricState
from oodbench.evaluation.score_cache import ScoreCache
from oodbench.evaluation.score_pass import Scored, score_pass
from oodbench.evaluation.states import EvaluationStates

from pixel_reference import same_state
from test_pixel_metrics import SmallState, family_map, random_case


@pytest.fixture
def tensors_on_device(monkeypatch):
    monkeypatch.setattr(pixel, "on_device", lambda scores: isinstance(scores, torch.Tensor))


def frames_of(seed, n=4):
    out = []
    for k in range(n):
        labels, scores, _ = random_case(seed * 10 + k)
        out.append((labels, scores))
    return out


@pytest.mark.parametrize("cls", [PixelMetricState, SmallState])
@pytest.mark.parametrize("seed", range(12))
def test_device_pass_equals_host_pass(tensors_on_device, cls, seed):
    host, device = cls(), cls()
    for k, (labels, scores) in enumerate(frames_of(seed)):
        host.update(labels, scores)
        given = torch.from_numpy(np.ascontiguousarray(scores)) if k % 3 != 2 else scores  # host frames between
        device.update(labels, given)
    same_state(host, device)


@pytest.mark.parametrize("kind", ["smooth", "entropy", "maxlogit"])
def test_realistic_maps(tensors_on_device, kind):
    host, device = PixelMetricState(), PixelMetricState()
    for seed in range(3):
        labels, scores = family_map(kind, seed, (256, 512))
        host.update(labels, scores)
        device.update(labels, torch.from_numpy(scores))
        if seed == 1:  # a read in between drains the device counts
            assert host.compute() == device.compute()
    same_state(host, device)


def test_float64_and_float16_tensors(tensors_on_device):
    labels, scores = family_map("noisy", 0, (64, 96))
    for dtype in (torch.float64, torch.float16):
        host, device = PixelMetricState(), PixelMetricState()
        for k in range(2):
            values = torch.from_numpy(scores * (1 + k)).to(dtype)
            host.update(labels, values.numpy())
            device.update(labels, values)
        same_state(host, device)


def test_nonfinite_device_scores_raise_and_leave_the_state_unchanged(tensors_on_device):
    labels, scores = family_map("smooth", 0, (64, 96))
    state = PixelMetricState()
    state.update(labels, torch.from_numpy(scores))
    before = state.state_dict()
    bad = scores.copy()
    bad[40, 7] = np.nan
    with pytest.raises(ScoreError, match=r"\(40, 7\)"):
        state.update(labels, torch.from_numpy(bad))
    after = state.state_dict()
    for key in ("index", "pos", "neg"):
        np.testing.assert_array_equal(before[key], after[key])
    with pytest.raises(ScoreError, match="shape"):
        state.update(labels[:10], torch.from_numpy(scores))


def test_pickle_and_merge_carry_pending_device_counts(tensors_on_device):
    def fed(kind, seeds, on_device):
        state = PixelMetricState()
        for seed in seeds:
            labels, scores = family_map(kind, seed, (128, 128))
            state.update(labels, torch.from_numpy(scores) if on_device else scores)
        return state

    pending = fed("noisy", range(2), True)
    assert pending._hist.device_counts.pending  # the second frame's counts are still on the device
    restored = pickle.loads(pickle.dumps(pending))  # as all_gather_object sends it
    assert restored._hist.device_counts is None
    same_state(fed("noisy", range(2), False), restored)
    mine, theirs = fed("noisy", range(2), True), fed("smooth", range(5, 7), True)
    assert mine._hist.device_counts.pending and theirs._hist.device_counts.pending
    host = fed("noisy", range(2), False).merge(fed("smooth", range(5, 7), False))
    same_state(host, mine.merge(theirs))


def test_cpu_tensors_take_the_host_pass():
    labels, scores = family_map("smooth", 0, (64, 96))
    state = PixelMetricState()
    state.update(labels, torch.from_numpy(scores))
    state.update(labels, torch.from_numpy(scores))
    assert state._hist.device_counts is None
    host = PixelMetricState()
    host.update(labels, scores)
    host.update(labels, scores)
    same_state(host, state)


class DeviceScoring(Method):
    """Scores computed 'on a device': the same maps returned as host arrays and as tensors."""
    name = "device_scoring"

    def predict(self, images):
        z = images[..., 0].astype(np.float32) / 255 + 0.01 * images[..., 1].astype(np.float32) ** 1.5
        return MethodOutput(scores=z, device_scores=torch.from_numpy(z.copy()))


def labelled_samples(n=6):
    rng = np.random.default_rng(0)
    out = []
    for k in range(n):
        image = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
        label = (image[..., 0] > 200).astype(np.uint8)
        label[:4] = 255
        out.append(Sample(f"s{k}", image, label))
    return out


@pytest.mark.parametrize("cached", [False, True])
def test_score_pass_counts_device_scores_as_the_host_map(tensors_on_device, tmp_path, cached):
    """The pixel state counts the device tensor; with a cache, rounded exactly as the cached host map is."""
    data = labelled_samples()
    on_device, on_host = EvaluationStates(), EvaluationStates()
    cache = ScoreCache("k", tmp_path) if cached else None
    score_pass(DeviceScoring(), data, 2, False, "t", [on_device.consume], cache=cache)

    def host_only(item):
        on_host.consume(Scored(item.sample, item.score, item.segments))
    score_pass(DeviceScoring(), data, 2, False, "t", [host_only], cache=ScoreCache("k2", tmp_path) if cached else None)
    assert on_device.pixel._hist.device_counts is not None
    same_state(on_host.pixel, on_device.pixel)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))])
def test_float16_rounding_of_torch_equals_numpy(device):
    """``as_cached`` rounds on the device as numpy rounds for the cache: ties, subnormals, overflow, signs."""
    rng = np.random.default_rng(0)
    bits = np.concatenate([rng.integers(0, 2**32, 2**20, dtype=np.uint64).astype(np.uint32),
                           np.arange(0x33000000, 0x33800000, 997, dtype=np.uint32),  # around float16 subnormals
                           np.arange(0x477FE000, 0x47800100, 1, dtype=np.uint32)])  # around 65504 and overflow
    values = bits.view(np.float32)
    values = values[np.isfinite(values)]
    with np.errstate(over="ignore"):
        want = values.astype(np.float16).astype(np.float32)
    got = torch.from_numpy(values).to(device).to(torch.float16).to(torch.float32).cpu().numpy()
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
