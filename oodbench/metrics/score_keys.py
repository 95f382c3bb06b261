"""Scores as unsigned integer keys whose order is the score order: one definition (``order_key``) for float32 and
float16 bit patterns, compiled for the counting passes and vectorized for numpy; float16 keys index histograms over
every float16 value, float32 keys the bins of the pixel metric state."""
from __future__ import annotations

import numpy as np
from numba import njit, prange, vectorize

SIGN32, SIGN16 = 0x80000000, 0x8000


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def order_key(bits, sign):
    """The key of a float's bit pattern (``sign``: its sign bit): negatives have every bit flipped, the others the
    sign bit set, so that keys compare as the floats do (-0.0 just below +0.0)."""
    u = np.int64(bits) & (2 * sign - 1)
    return ((~u) & (2 * sign - 1)) if u & sign else (u | sign)


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def monotone_key(bits, mask):
    """The score key of a float32 bit pattern (any integer view): ``order_key``, except that -0.0 takes the key of
    +0.0 (the scores are equal), cut to the bits of ``mask``."""
    key = order_key(bits, SIGN32)
    return (SIGN32 if key == SIGN32 - 1 else key) & mask


@vectorize(["uint32(uint32)"], cache=True)
def _keys32(bits):
    return monotone_key(bits, 0xFFFFFFFF)


@vectorize(["uint16(uint16)"], cache=True)
def _keys16(bits):
    return order_key(bits, SIGN16)


def monotone_keys(scores: np.ndarray, mask: int = 0xFFFFFFFF) -> np.ndarray:
    """float32 scores -> new uint32 score keys (``monotone_key``) in score order, cut by ``mask``."""
    keys = _keys32(np.ascontiguousarray(scores, np.float32).view(np.uint32))
    if mask != 0xFFFFFFFF:
        keys &= np.uint32(mask)
    return keys


def float16_keys(scores: np.ndarray) -> np.ndarray:
    """Scores rounded to float16 -> int keys in [0, 65536) whose order is the float order."""
    with np.errstate(over="ignore"):
        bits = np.ascontiguousarray(np.asarray(scores).astype(np.float16)).view(np.uint16)
    return _keys16(bits).astype(np.intp)


def float16_histogram(scores: np.ndarray) -> np.ndarray:
    """Pixel counts per float16 value, in key order (``float16_keys``), -0.0 counted with +0.0 (equal scores)."""
    hist = np.bincount(float16_keys(scores), minlength=1 << 16)
    hist[SIGN16] += hist[SIGN16 - 1]
    hist[SIGN16 - 1] = 0
    return hist


HALF_ORDER = _keys16(np.arange(1 << 16, dtype=np.uint16)).astype(np.intp)  # float16 bit pattern -> key
HALF_OF_KEY = np.argsort(HALF_ORDER).astype(np.uint16)  # key -> float16 bit pattern
HALF_NONFINITE = np.r_[0x7C00:0x8000, 0xFC00:0x10000]  # float16 bit patterns of +-inf and NaN


def half_as_monotone_keys(half_keys: np.ndarray) -> np.ndarray:
    """float16 keys -> the float32 keys of the same values (every float16 value is a float32 value)."""
    return monotone_keys(HALF_OF_KEY[half_keys].view(np.float16).astype(np.float32)).astype(np.int64)


def key_as_float(key: int) -> float:
    """The float32 score whose key is ``key``, as a Python float; the key of zero gives -0.0 (``score >= t`` takes
    both signed zeros either way)."""
    if key == SIGN32:
        return -0.0
    bits = key ^ SIGN32 if key >= SIGN32 else key ^ 0xFFFFFFFF
    return float(np.array([bits], dtype=np.uint32).view(np.float32)[0])


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
