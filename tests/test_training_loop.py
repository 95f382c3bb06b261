"""Seeded training is reproducible, and entropy maximization raises entropy on proxy pixels."""
import copy

import numpy as np
import torch

from oodbench.data import DATASETS
from oodbench.models import create_model
from oodbench.scores import SCORES
from oodbench.training.loop import TrainConfig, mean_iou, train_model
from oodbench.training.loss import OOD_ID
from oodbench.training.proxy import entmax_epoch, paste_proxy, whole_proxy


def _small(seed):
    torch.manual_seed(seed)
    return create_model("tiny_deeplab", num_classes=19, width=8)


def _data():
    frames = list(DATASETS.create("synthetic_cityscapes", split="train"))[:32]
    proxies = list(DATASETS.create("synthetic_coco", split="train"))[:16]
    return frames, proxies


def test_same_seed_same_weights():
    frames, proxies = _data()
    cfg = TrainConfig(epochs=1, batch_size=8, crop=64, seed=3, entmax=True)
    states = []
    for _ in range(2):
        model = _small(0)
        log = train_model(model, frames, proxies, cfg, progress=False)
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert np.isfinite(log[0]["loss"])


def test_entmax_raises_entropy_on_proxies_not_on_known_pixels():
    """Same start, same steps: entropy-maximization fine-tuning lifts proxy-pixel entropy far above
    what plain cross-entropy fine-tuning gives, while in-distribution entropy stays low."""
    frames, proxies = _data()
    start = _small(0)
    train_model(start, frames, [], TrainConfig(epochs=12, crop=64, seed=0, lr=1e-2), progress=False)
    rng = np.random.default_rng(5)
    pairs = [paste_proxy(f.image, f.label, proxies[i % len(proxies)], rng) for i, f in enumerate(frames)]
    x = torch.from_numpy(np.stack([p[0] for p in pairs])).permute(0, 3, 1, 2).float()
    label = np.stack([p[1] for p in pairs])

    def entropy(model):
        with torch.no_grad():
            e = SCORES.get("entropy")(model(x)).numpy()
        return e[label == OOD_ID].mean(), e[label < 19].mean()

    results = {}
    for entmax in (False, True):
        model = copy.deepcopy(start)
        cfg = TrainConfig(epochs=4, crop=64, seed=1, lr=1e-3, entmax=entmax, proxy_fraction=1.0)
        train_model(model, frames, proxies, cfg, progress=False)
        results[entmax] = entropy(model)
    (ce_ood, ce_id), (em_ood, em_id) = results[False], results[True]
    assert em_ood > ce_ood + 0.15
    assert em_id < ce_id + 0.1
    assert em_ood - em_id > ce_ood - ce_id + 0.15


def test_paste_and_whole_proxy_modes():
    frames, proxies = _data()
    rng = np.random.default_rng(0)
    img, lab = paste_proxy(frames[0].image, frames[0].label, proxies[0], rng)
    assert (lab == OOD_ID).sum() == (proxies[0].label == OOD_ID).sum()
    assert set(np.unique(lab[lab != OOD_ID])) <= set(np.unique(frames[0].label))
    _, whole = whole_proxy(proxies[0])
    assert set(np.unique(whole)) <= {0, OOD_ID}
    epoch = entmax_epoch(frames, proxies, rng, mode="whole", proxy_fraction=0.25)
    assert len(epoch) == len(frames) + 8


def test_mean_iou_closed_form():
    class Oracle(torch.nn.Module):
        def forward(self, x):
            out = torch.zeros(x.shape[0], 3, *x.shape[2:])
            out[:, 0] = 1
            return out

    from oodbench.data.base import Sample
    label = np.array([[0, 0], [1, 255]], dtype=np.uint8)
    s = Sample("a", np.zeros((2, 2, 3), np.uint8), label)
    # class 0: inter 2, union 3 -> 2/3; class 1: inter 0, union 1 -> 0
    assert abs(mean_iou(Oracle(), [s], 3) - (2 / 3) / 2) < 1e-12
