"""The embedded preset of the one trainer: its stream sampling recipe, its cache names, the proxy modes, and the
validation mIoU."""
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from oodbench.data import DATASETS
from oodbench.data.base import Sample
from oodbench.errors import OodbenchError
from oodbench.models.network_cards import InferenceProtocol
from oodbench.training.config import TrainConfig, check_config, resume_conflicts
from oodbench.training.distributed import DistContext
from oodbench.training.embedded import checkpoint_path, recorded_config, stage_config
from oodbench.training.entmax_data import FrameData, flip_crop
from oodbench.training.loss import OOD_ID
from oodbench.training.proxy import entmax_epoch, paste_proxy, whole_proxy
from oodbench.training.stream_data import StreamTrainData
from oodbench.training.validation import evaluate_miou


def _data():
    frames, proxies = DATASETS.create("synthetic_cityscapes", split="train"), DATASETS.create("synthetic_coco")
    return [frames[i] for i in range(16)], [proxies[i] for i in range(8)]


def test_stream_sampling_draws_one_generator_in_order():
    """Per epoch: proxies pasted into whole frames, the shuffle, then each sample's flip and crop, all from one
    generator seeded once; a run starting at a later epoch (resume) replays the earlier ones."""
    frames, proxies = _data()
    data = StreamTrainData(frames, proxies, "paste", 0.5, crop=64, seed=3)
    rng = np.random.default_rng(3)
    epochs = []
    for epoch in range(2):
        pairs = entmax_epoch(frames, proxies, rng, "paste", 0.5)
        expected = [flip_crop(*pairs[i], 64, rng) for i in rng.permutation(len(pairs))]
        data.set_epoch(epoch)
        items = [data[k] for k in range(len(data))]
        assert len(items) == len(frames)
        for (image, label), (x, y) in zip(expected, items):
            assert np.array_equal(x.numpy(), image.transpose(2, 0, 1)) and np.array_equal(y.numpy(), label)
        epochs.append(items)
    assert any((y == OOD_ID).any() for _, y in epochs[0])
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(*epochs))
    resumed = StreamTrainData(frames, proxies, "paste", 0.5, crop=64, seed=3)
    for epoch in (1, 0):
        resumed.set_epoch(epoch)
        assert all(torch.equal(resumed[k][0], epochs[epoch][k][0]) for k in range(len(frames)))


def test_embedded_preset_keeps_its_cache_names_and_recorded_config():
    """The preset's models keep the names (and record config) they had before the trainer was unified, so cached
    models stay valid; a change of the preset would rename them and train them again."""
    assert checkpoint_path("baseline").name == "tiny_deeplab-synthetic-baseline-seed0-6d3c2de949e1.pt"
    assert checkpoint_path("entmax").name == "tiny_deeplab-synthetic-entmax-seed0-05f13ba06f8a.pt"
    assert recorded_config(stage_config("entmax", seed=2)) == {
        "epochs": 4, "lr": 3e-4, "batch_size": 8, "crop": 128, "seed": 3, "entmax": True, "lam": 0.9,
        "proxy_mode": "paste", "proxy_fraction": 0.5}
    baseline = stage_config("baseline")
    assert (baseline.objective, baseline.schedule, baseline.sampling) == ("cross_entropy", "onecycle", "stream")
    with pytest.raises(ValueError, match="unknown training stage"):
        stage_config("finetune")


def test_config_guards_and_resume_defaults():
    with pytest.raises(OodbenchError, match="onecycle schedule spans the whole run"):
        check_config(TrainConfig(schedule="onecycle"), 1)
    with pytest.raises(OodbenchError, match="unknown objective 'focal'"):
        check_config(TrainConfig(objective="focal"), 1)
    old = {k: v for k, v in TrainConfig(lr=1e-3).to_dict().items() if k not in ("objective", "sampling")}
    assert resume_conflicts(old, TrainConfig(lr=1e-3)) == []  # a checkpoint from before these settings
    assert resume_conflicts(old, TrainConfig(lr=1e-3, sampling="stream")) == \
        ["sampling: checkpoint 'indexed', now 'stream'"]


def test_paste_and_whole_proxy_modes():
    frames, proxies = _data()
    rng = np.random.default_rng(0)
    img, lab = paste_proxy(frames[0].image, frames[0].label, proxies[0], rng)
    assert (lab == OOD_ID).sum() == (proxies[0].label == OOD_ID).sum()
    assert set(np.unique(lab[lab != OOD_ID])) <= set(np.unique(frames[0].label))
    _, whole = whole_proxy(proxies[0])
    assert set(np.unique(whole)) <= {0, OOD_ID}
    epoch = entmax_epoch(frames, proxies, rng, mode="whole", proxy_fraction=0.25)
    assert len(epoch) == len(frames) + 4


class _Oracle(nn.Module):
    """Always class 0 among the first three outputs; a fourth (background) output above them all."""

    def forward(self, x):
        out = torch.zeros(x.shape[0], 4, *x.shape[2:])
        out[:, 0], out[:, 3] = 1, 2
        return out


def test_miou_closed_form_over_the_score_channels():
    label = np.array([[0, 0], [1, 255]], dtype=np.uint8)
    loader = DataLoader(FrameData([Sample("a", np.zeros((2, 2, 3), np.uint8), label)]), batch_size=1)
    # class 0: inter 2, union 3 -> 2/3; class 1: inter 0, union 1 -> 0; the background output is cut off
    miou = evaluate_miou(_Oracle(), loader, 3, DistContext(), protocol=InferenceProtocol(score_channels=3))
    assert abs(miou - (2 / 3) / 2) < 1e-12
