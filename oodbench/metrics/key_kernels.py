"""Compiled (numba) inner loops of the pixel histogram: one pass per image, no temporaries.

In-distribution pixels (most of a split) are counted first in a uint8 staging array that carries into the full
counts every 256 pixels of a bin. It is a quarter of the counts' size, so the random increments of a frame
mostly hit the CPU cache: the pass is about 3x faster than counting into int32 directly (2e7 pixels, 2 cores).
"""
from __future__ import annotations

import numpy as np
from numba import njit


CHUNK = 4096  # pixels whose negative bins are gathered before they are counted


@njit(cache=True, nogil=True, boundscheck=False)
def stage(scores, labels, fast, mask, neg8, neg, pos, trash, sign, rest):
    """Count float32 ``scores`` with uint8 ``labels`` (0 negative, 1 positive, others skipped) into their fine
    bins (``fast``: per level-1 bin, (block start << 5) | dropped key bits), negatives through the staging array;
    ``sign`` = +1 to add, -1 to take back. Pixels of level-1 bins without a block land in ``trash``; their
    indices are written to ``rest`` and their number is returned. The negatives' bins of a chunk are found
    first and counted in a second tight loop, which keeps more random increments in flight."""
    bits = scores.view(np.int32)
    step = np.uint8(1) if sign > 0 else np.uint8(255)
    wrap = np.uint8(0) if sign > 0 else np.uint8(255)
    carry = 256 * sign
    chunk = np.empty(CHUNK, np.int64)
    m = 0
    for first in range(0, scores.size, CHUNK):
        k = 0
        for i in range(first, min(scores.size, first + CHUNK)):
            lab = labels[i]
            if lab > 1:
                continue
            u = np.int64(bits[i]) & 0xFFFFFFFF
            key = ((~u) & 0xFFFFFFFF) if u >= 0x80000000 else (u | 0x80000000)
            key &= mask
            code = np.int64(fast[key >> 16])
            start = code >> 5
            idx = start + ((key & 0xFFFF) >> (code & 31))
            if start == trash:
                rest[m] = i
                m += 1
            if lab == 0:
                chunk[k] = idx
                k += 1
            else:
                pos[idx] += sign
        for j in range(k):
            idx = chunk[j]
            c = np.uint8(neg8[idx] + step)
            neg8[idx] = c
            if c == wrap:
                neg[idx] += carry
    return m


@njit(cache=True, nogil=True, boundscheck=False)
def level1_seen(scores, labels, mask, seen):
    """Mark in ``seen`` the level-1 bins (top 16 key bits) of pixels with labels 0 or 1; return whether all
    those scores are finite (an exponent of all ones is inf or NaN)."""
    bits = scores.view(np.int32)
    finite = True
    for i in range(scores.size):
        if labels[i] > 1:
            continue
        u = np.int64(bits[i]) & 0xFFFFFFFF
        if (u >> 23) & 0xFF == 0xFF:
            finite = False
        key = ((~u) & 0xFFFFFFFF) if u >= 0x80000000 else (u | 0x80000000)
        seen[(key & mask) >> 16] = True
    return finite


@njit(cache=True, nogil=True, boundscheck=False)
def flush(staged, counts, n):
    """Add the first ``n`` staging counts to ``counts`` and clear them."""
    for i in range(n):
        c = staged[i]
        if c:
            counts[i] += c
            staged[i] = 0


@njit(cache=True, nogil=True, boundscheck=False)
def positive_bins(neg, pos):
    """Per bin holding positives, in descending bin order: its position, positives, negatives at it, and
    negatives at or above it (int64); then the total of negatives. One pass over the bins from the top."""
    k = 0
    for i in range(pos.size):
        if pos[i]:
            k += 1
    at = np.empty(k, np.int64)
    p = np.empty(k, np.int64)
    n_at = np.empty(k, np.int64)
    fp = np.empty(k, np.int64)
    total = 0
    j = 0
    for i in range(pos.size - 1, -1, -1):
        total += neg[i]
        if pos[i]:
            at[j], p[j], n_at[j], fp[j] = i, pos[i], neg[i], total
            j += 1
    return at, p, n_at, fp, total


@njit(cache=True, nogil=True, boundscheck=False)
def move_blocks(old, new, old_start, new_start, old_e, new_e):
    """Copy each block of 2**old_e bins from ``old`` to ``new`` summed down to 2**new_e bins (new_e <= old_e)."""
    for b in range(old_start.size):
        drop = old_e[b] - new_e[b]
        src, dst = old_start[b], new_start[b]
        if drop == 0:
            new[dst: dst + (1 << new_e[b])] = old[src: src + (1 << new_e[b])]
            continue
        for j in range(1 << new_e[b]):
            total = old[src]
            for t in range(1, 1 << drop):
                total += old[src + t]
            new[dst + j] = total
            src += 1 << drop
