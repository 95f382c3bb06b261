"""Training samples for entropy maximization: in-distribution frames plus OoD proxy pixels (label 254),
either pasted into the frames (PEBAL-style) or as whole proxy images (the paper code)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..data.base import Sample
from .loss import OOD_ID

PROXY_MODES = ("paste", "whole")


def paste_proxy(image: np.ndarray, label: np.ndarray, proxy: Sample, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Copy the proxy's object pixels into the frame at a random offset (optionally mirrored)."""
    mask = proxy.label == OOD_ID
    src = proxy.image
    if rng.random() < 0.5:
        mask, src = mask[:, ::-1], src[:, ::-1]
    h, w = label.shape
    mask, src = mask[:h, :w], src[:h, :w]
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return image, label
    dy = int(rng.integers(-ys.min(), h - ys.max()))
    dx = int(rng.integers(-xs.min(), w - xs.max()))
    image, label = image.copy(), label.copy()
    image[ys + dy, xs + dx] = src[ys, xs]
    label[ys + dy, xs + dx] = OOD_ID
    return image, label


def whole_proxy(proxy: Sample) -> tuple[np.ndarray, np.ndarray]:
    """The paper code's mode: a proxy image is a sample; its background keeps id 0 (so is learnt as road)."""
    label = np.where(proxy.label == OOD_ID, OOD_ID, 0).astype(np.uint8)
    return proxy.image, label


def entmax_epoch(frames: Sequence[Sample], proxies: Sequence[Sample], rng: np.random.Generator,
                 mode: str = "paste", proxy_fraction: float = 0.5) -> list[tuple[np.ndarray, np.ndarray]]:
    """One epoch of (image, label) pairs: every frame once; in ``paste`` mode a share ``proxy_fraction``
    of frames carry a pasted proxy, in ``whole`` mode ``proxy_fraction * len(frames)`` proxy images are added."""
    if mode not in PROXY_MODES:
        raise ValueError(f"unknown proxy mode {mode!r}; choose one of {PROXY_MODES}")
    out = []
    for frame in frames:
        if mode == "paste" and proxies and rng.random() < proxy_fraction:
            out.append(paste_proxy(frame.image, frame.label, proxies[int(rng.integers(len(proxies)))], rng))
        else:
            out.append((frame.image, frame.label))
    if mode == "whole" and proxies:
        n = max(1, int(round(proxy_fraction * len(frames))))
        out += [whole_proxy(proxies[int(i)]) for i in rng.choice(len(proxies), size=min(n, len(proxies)), replace=False)]
    return out
