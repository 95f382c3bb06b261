"""Seeded training of a segmentation network: closed-set cross-entropy, or the paper's entropy
maximization on in-distribution frames plus OoD proxies."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..data.base import Sample
from .loss import IGNORE_ID, entropy_maximization_loss
from .proxy import entmax_epoch
from .validation import miou_from_confusion, update_confusion


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run; its hash names the cached checkpoint."""

    epochs: int = 8
    lr: float = 2e-3
    batch_size: int = 8
    crop: int | None = 128  # square random crop side; None trains on whole frames
    seed: int = 0
    entmax: bool = False
    lam: float = 0.9
    proxy_mode: str = "paste"
    proxy_fraction: float = 0.5

    def to_dict(self) -> dict:
        return asdict(self)


def _augment(pairs: list[tuple[np.ndarray, np.ndarray]], crop: int | None, rng: np.random.Generator):
    images, labels = [], []
    for image, label in pairs:
        if rng.random() < 0.5:
            image, label = image[:, ::-1], label[:, ::-1]
        if crop is not None:
            h, w = label.shape
            y, x = int(rng.integers(0, h - min(crop, h) + 1)), int(rng.integers(0, w - min(crop, w) + 1))
            image, label = image[y:y + crop, x:x + crop], label[y:y + crop, x:x + crop]
        images.append(np.ascontiguousarray(image))
        labels.append(np.ascontiguousarray(label))
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
    return x, torch.from_numpy(np.stack(labels)).long()


def train_model(model: nn.Module, frames: Sequence[Sample], proxies: Sequence[Sample], cfg: TrainConfig,
                progress: bool = True) -> list[dict]:
    """Train ``model`` in place with Adam; return the per-epoch log (mean loss)."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    steps_per_epoch = -(-len(frames) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * (steps_per_epoch + 2),
                                                pct_start=0.15) if not cfg.entmax else None
    log = []
    model.train()
    desc = "entmax fine-tuning" if cfg.entmax else "baseline training"
    for epoch in tqdm(range(cfg.epochs), desc=desc, disable=not progress, unit="epoch"):
        pairs = entmax_epoch(frames, proxies, rng, cfg.proxy_mode, cfg.proxy_fraction) if cfg.entmax \
            else [(f.image, f.label) for f in frames]
        order = rng.permutation(len(pairs))
        total, n = 0.0, 0
        for start in range(0, len(order), cfg.batch_size):
            x, y = _augment([pairs[i] for i in order[start:start + cfg.batch_size]], cfg.crop, rng)
            logits = model(x)
            loss = entropy_maximization_loss(logits, y, cfg.lam) if cfg.entmax \
                else F.cross_entropy(logits, y, ignore_index=IGNORE_ID)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            total, n = total + float(loss.detach()) * len(x), n + len(x)
        log.append({"epoch": epoch + 1, "loss": total / max(n, 1)})
    model.eval()
    return log


@torch.no_grad()
def mean_iou(model: nn.Module, samples: Sequence[Sample], num_classes: int, batch_size: int = 8) -> float:
    """Mean IoU over the classes present in the labels or predictions (train ids, 255 ignored)."""
    model.eval()
    conf = torch.zeros((num_classes, num_classes), dtype=torch.int64)
    for start in range(0, len(samples), batch_size):
        batch = samples[start:start + batch_size]
        x = torch.from_numpy(np.stack([s.image for s in batch])).permute(0, 3, 1, 2).float()
        labels = torch.from_numpy(np.stack([s.label for s in batch]))
        update_confusion(conf, model(x).argmax(1), labels)
    return miou_from_confusion(conf)
