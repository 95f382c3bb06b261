"""Scores as integer keys whose order is the score order: float16 keys for histograms over every float16 value, and
monotone 32-bit keys of float32 scores (the bins of the pixel metric state)."""
from __future__ import annotations

import numpy as np

_SIGN = np.int32(-(2**31))


def float16_keys(scores: np.ndarray) -> np.ndarray:
    """Scores rounded to float16 -> int keys in [0, 65536) whose order is the float order."""
    with np.errstate(over="ignore"):
        bits = np.asarray(scores).astype(np.float16).view(np.uint16)
    negative = bits >= 0x8000
    return np.where(negative, ~bits, bits | 0x8000).astype(np.intp)


def float16_histogram(scores: np.ndarray) -> np.ndarray:
    """Pixel counts per float16 value, in key order (``float16_keys``), -0.0 counted with +0.0 (equal scores)."""
    hist = np.bincount(float16_keys(scores), minlength=1 << 16)
    hist[0x8000] += hist[0x7FFF]
    hist[0x7FFF] = 0
    return hist


def monotone_keys(scores: np.ndarray, mask: int = 0xFFFFFFFF) -> np.ndarray:
    """float32 -> new uint32 keys in score order (negatives: all bits flipped; others: sign bit set), cut by mask."""
    bits = scores.view(np.int32)
    key = bits >> 31  # all ones for negatives
    key |= _SIGN
    key ^= bits
    if mask != 0xFFFFFFFF:
        key &= np.int32(mask - 2**32 if mask >= 2**31 else mask)
    return key.view(np.uint32)
