"""Scores as integer keys whose order is the score order: float16 keys for histograms over every float16 value, and
monotone 32-bit keys of float32 scores (the bins of the pixel metric state)."""
from __future__ import annotations

import numpy as np
from numba import njit, prange

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


HALF_NONFINITE = np.r_[0x7C00:0x8000, 0xFC00:0x10000]  # float16 bit patterns of +-inf and NaN


def half_as_monotone_keys(half_keys: np.ndarray) -> np.ndarray:
    """float16 keys -> the monotone float32 keys of the same values (every float16 value is a float32 value)."""
    half_keys = np.asarray(half_keys, np.int64)
    bits = np.where(half_keys >= 0x8000, half_keys ^ 0x8000, ~half_keys & 0xFFFF).astype(np.uint16)
    return monotone_keys(bits.view(np.float16).astype(np.float32)).astype(np.int64)


HALF_ORDER = float16_keys(np.arange(1 << 16, dtype=np.uint16).view(np.float16))  # float16 bit pattern -> key


@njit(parallel=True, cache=True, nogil=True, boundscheck=False)
def count_float16(bits, labels, ignore, out):
    """Count uint16 float16 ``bits`` per (label, bit pattern) into ``out`` (threads, 3, 65536) int32: rows 0 and 1
    for labels 0 and 1, row 2 for every other label (branch-free; ``HALF_ORDER`` sorts the columns afterwards);
    returns the number of pixels whose label is neither 0, 1 nor ``ignore`` (then nothing may be kept)."""
    threads = out.shape[0]
    step = (bits.size + threads - 1) // threads
    bad = np.zeros(threads, np.int64)
    for t in prange(threads):
        counts = out[t]
        wrong = 0
        for i in range(t * step, min(bits.size, (t + 1) * step)):
            lab = labels[i]
            counts[min(lab, 2), bits[i]] += 1
            wrong += (lab > 1) & (lab != ignore)
        bad[t] = wrong
    return bad.sum()
