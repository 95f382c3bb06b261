"""The trainer's data: the indexed epoch plan and its samples in both proxy modes, the paper code's upscaling of
small proxies, the same batches with DataLoader workers, epoch shards over processes, and the RNG state kept
through weights_only checkpoints."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from oodbench.data import DATASETS
from oodbench.training.distributed import DistContext, shard_epoch
from oodbench.training.entmax_data import IndexedTrainData, upscale_small
from oodbench.training.loss import IGNORE_ID, OOD_ID
from oodbench.training.train_state import capture_rng, restore_rng

from layout_files import write_training_roots


@pytest.fixture(scope="module")


def roots(tmp_path_factory):
    return write_training_roots(tmp_path_factory.mktemp("training_data"))


def test_epoch_plan_and_samples(roots):
    cs, coco = roots
    frames = DATASETS.create("cityscapes", root=cs, split="train", expected=False)
    proxies = DATASETS.create("coco_proxy", root=coco)
    whole = IndexedTrainData(frames, proxies, "whole", proxy_fraction=0.25, crop=48, seed=0)
    whole.set_epoch(0)
    plan0 = list(whole.plan)
    assert len(whole) == 8 + 2 and sorted(f for f, _ in plan0 if f >= 0) == list(range(8))
    assert len({p for f, p in plan0 if f < 0}) == 2
    first = [whole[k] for k in range(len(whole))]
    for k in reversed(range(len(whole))):  # an item depends on (seed, epoch, position), not on access order
        assert torch.equal(whole[k][0], first[k][0]) and torch.equal(whole[k][1], first[k][1])
    for (f, _), (image, label) in zip(plan0, first):
        assert image.shape == (3, 48, 48) and image.dtype == torch.uint8 and label.shape == (48, 48)
        values = set(torch.unique(label).tolist())
        assert values <= ({0, OOD_ID, IGNORE_ID} if f < 0 else set(range(19)) | {IGNORE_ID})
    whole.set_epoch(1)
    assert whole.plan != plan0  # a fresh draw of proxies and order every epoch
    paste = IndexedTrainData(frames, proxies, "paste", proxy_fraction=1.0, crop=48, seed=0)
    paste.set_epoch(0)
    assert len(paste) == 8 and all(p >= 0 for _, p in paste.plan)
    assert all((paste[k][1] == OOD_ID).any() for k in range(len(paste)))


def test_small_whole_proxies_are_scaled_up_as_in_the_paper_code():
    image = np.zeros((20, 30, 3), np.uint8)
    label = np.zeros((20, 30), np.uint8)
    label[5:10, 5:10] = OOD_ID
    big_image, big_label = upscale_small(image, label, 48)
    assert big_image.shape == (48, 72, 3) and big_label.shape == (48, 72)
    assert set(np.unique(big_label)) == {0, OOD_ID} and (big_label == OOD_ID).sum() >= 25 * (48 / 20) ** 2
    assert upscale_small(image, label, 20)[1] is label


def test_workers_give_the_same_batches(roots):
    cs, coco = roots
    data = IndexedTrainData(DATASETS.create("cityscapes", root=cs, split="train", expected=False),
                           DATASETS.create("coco_proxy", root=coco), "paste", 0.5, 48, seed=3)
    data.set_epoch(2)
    batches = {w: list(DataLoader(data, batch_size=3, sampler=list(range(len(data))), num_workers=w)) for w in (0, 2)}
    for (x0, y0), (x2, y2) in zip(*batches.values()):
        assert torch.equal(x0, x2) and torch.equal(y0, y2)


def test_shard_epoch_covers_and_pads():
    for world in (1, 2, 3):
        shards = [shard_epoch(10, DistContext(rank=r, world_size=world), 6) for r in range(world)]
        assert len({len(s) for s in shards}) == 1
        assert sorted(set(sum(shards, []))) == list(range(10))
    resumed = shard_epoch(10, DistContext(rank=1, world_size=2), global_batch=4, skip_steps=1)
    assert resumed == shard_epoch(10, DistContext(rank=1, world_size=2), 4)[2:]


def test_rng_state_round_trip_through_weights_only(tmp_path):
    import random
    state = capture_rng()
    torch.save(state, tmp_path / "rng.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    restore_rng(torch.load(tmp_path / "rng.pt", weights_only=True))
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1]) and expected[2] == got[2]
