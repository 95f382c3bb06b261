"""Stream sampling, the embedded models' recipe: one generator seeded once and drawn in order through the run;
per epoch the proxies (pasted into whole frames), the shuffle, then each sample's flip and crop."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset

from ..data.base import Sample
from .entmax_data import flip_crop, to_tensors
from .proxy import PROXY_MODES, entmax_epoch


class StreamTrainData(TorchDataset):
    """An epoch depends on every epoch before it: ``set_epoch`` replays the earlier ones when a run starts past
    them (resume). Meant for small sets: the frames stay in memory and the epoch's crops are drawn up front."""

    def __init__(self, frames: Sequence[Sample], proxies: Sequence[Sample], mode: str = "paste",
                 proxy_fraction: float = 0.5, crop: int = 128, seed: int = 0):
        if mode not in PROXY_MODES:
            raise ValueError(f"unknown proxy mode {mode!r}; choose one of {PROXY_MODES}")
        self.frames, self.proxies = list(frames), list(proxies)
        self.mode, self.proxy_fraction, self.crop, self.seed = mode, proxy_fraction, crop, seed
        self.rng = np.random.default_rng(seed)
        self.epoch = -1
        self.items: list[tuple[torch.Tensor, torch.Tensor]] = []

    def set_epoch(self, epoch: int) -> None:
        if epoch < self.epoch:
            self.rng, self.epoch = np.random.default_rng(self.seed), -1
        while self.epoch < epoch:
            pairs = entmax_epoch(self.frames, self.proxies, self.rng, self.mode, self.proxy_fraction)
            order = self.rng.permutation(len(pairs))
            self.items = [to_tensors(*flip_crop(*pairs[i], self.crop, self.rng)) for i in order]
            self.epoch += 1

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.items[position]
