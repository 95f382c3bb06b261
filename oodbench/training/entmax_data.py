"""Streaming training data for entropy maximization: torch Datasets over oodbench datasets that decode one
frame per item, with an epoch plan and per-item random numbers that depend only on (seed, epoch, position),
so any number of workers or processes, and a resumed run, see exactly the same samples."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset as TorchDataset

from ..data.base import Sample
from .loss import IGNORE_ID, OOD_ID
from .proxy import PROXY_MODES, paste_proxy, whole_proxy

NO_ITEM = -1


def flip_crop(image: np.ndarray, label: np.ndarray, crop: int,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random horizontal flip, then a random ``crop`` x ``crop`` window; a side shorter than ``crop`` is
    padded (image 0, label ignore) so every sample of a batch has the same size."""
    if rng.random() < 0.5:
        image, label = image[:, ::-1], label[:, ::-1]
    h, w = label.shape
    if h < crop or w < crop:
        ph, pw = max(crop, h), max(crop, w)
        padded_image = np.zeros((ph, pw, 3), np.uint8)
        padded_label = np.full((ph, pw), IGNORE_ID, np.uint8)
        padded_image[:h, :w], padded_label[:h, :w] = image, label
        image, label, (h, w) = padded_image, padded_label, (ph, pw)
    y, x = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
    return np.ascontiguousarray(image[y:y + crop, x:x + crop]), np.ascontiguousarray(label[y:y + crop, x:x + crop])


def upscale_small(image: np.ndarray, label: np.ndarray, min_side: int) -> tuple[np.ndarray, np.ndarray]:
    """The paper code's treatment of a whole proxy image whose shorter side is below ``min_side``: scale it
    up to that side (Lanczos, PIL's former ANTIALIAS, for image and mask); mask pixels above 0 become OoD."""
    h, w = label.shape
    if min(h, w) >= min_side:
        return image, label
    size = (int(w / min(w, h) * min_side), int(h / min(w, h) * min_side))
    image = np.asarray(Image.fromarray(image).resize(size, Image.LANCZOS))
    mask = np.asarray(Image.fromarray(label).resize(size, Image.LANCZOS))
    return image, np.where(mask > 0, OOD_ID, 0).astype(np.uint8)


def to_tensors(image: np.ndarray, label: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 HxWx3 + HxW -> uint8 (3,H,W) + uint8 (H,W); uint8 keeps worker-to-trainer transfers small."""
    chw = np.ascontiguousarray(image.transpose(2, 0, 1))
    return torch.from_numpy(chw), torch.from_numpy(np.ascontiguousarray(label))


class IndexedTrainData(TorchDataset):
    """One epoch = every in-distribution frame once, plus, in ``whole`` mode, ``int(proxy_fraction * frames)``
    distinct proxy images drawn afresh (the paper code: 2975 + 297), or, in ``paste`` mode, a proxy object
    pasted into each frame with probability ``proxy_fraction``; shuffled. Without proxies, the frames alone
    (closed-set training). Call ``set_epoch`` before iterating."""

    def __init__(self, frames: Sequence[Sample], proxies: Sequence[Sample], mode: str = "whole",
                 proxy_fraction: float = 0.1, crop: int = 480, seed: int = 0):
        if mode not in PROXY_MODES:
            raise ValueError(f"unknown proxy mode {mode!r}; choose one of {PROXY_MODES}")
        self.frames, self.proxies = frames, proxies
        self.mode, self.proxy_fraction, self.crop, self.seed = mode, proxy_fraction, crop, seed
        self.epoch = -1
        self.plan: list[tuple[int, int]] = []

    def set_epoch(self, epoch: int) -> None:
        """Draw epoch ``epoch``'s plan: (frame index or -1, proxy index or -1) per position."""
        rng = np.random.default_rng([self.seed, epoch, 0])
        n = len(self.frames)
        if len(self.proxies) == 0:
            plan = [(i, NO_ITEM) for i in range(n)]
        elif self.mode == "whole":
            k = min(len(self.proxies), max(1, int(self.proxy_fraction * n)))
            picks = rng.choice(len(self.proxies), size=k, replace=False)
            plan = [(i, NO_ITEM) for i in range(n)] + [(NO_ITEM, int(j)) for j in picks]
        else:
            pasted = rng.random(n) < self.proxy_fraction
            picks = rng.integers(len(self.proxies), size=n)
            plan = [(i, int(j) if m else NO_ITEM) for i, (m, j) in enumerate(zip(pasted, picks))]
        self.plan = [plan[int(i)] for i in rng.permutation(len(plan))]
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        frame, proxy = self.plan[position]
        rng = np.random.default_rng([self.seed, self.epoch, 1, position])
        if frame == NO_ITEM:
            image, label = upscale_small(*whole_proxy(self.proxies[proxy]), self.crop)
        else:
            sample = self.frames[frame]
            image, label = sample.image, sample.label
        image, label = flip_crop(image, label, self.crop, rng)
        if frame != NO_ITEM and proxy != NO_ITEM:  # pasted after cropping, so the object is always in view
            image, label = paste_proxy(image, label, self.proxies[proxy], rng)
        return to_tensors(image, label)


class FrameData(TorchDataset):
    """Whole frames of an oodbench dataset (validation), optionally only the first ``limit``."""

    def __init__(self, frames: Sequence[Sample], limit: int | None = None):
        self.frames = frames
        self.length = len(frames) if limit is None else min(limit, len(frames))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        sample = self.frames[index]
        return to_tensors(sample.image, sample.label)
