"""Compiled (numba) passes over the paged histogram's layout: which pages the pixels and counts occupy at full
resolution (a bitmap, one bit per page), how many pages each level-1 bin needs at any coarser resolution, pages
given in key order, and the bins read back in key order."""
from __future__ import annotations

import numpy as np
from numba import njit

from .key_kernels import NO_PAGE
from .score_keys import monotone_key


@njit(cache=True, nogil=True, boundscheck=False)
def mark_pixels(scores, labels, mask, seen, bitmap, pb):
    """Mark the level-1 bin (``seen``) and full-resolution page (``bitmap``, one bit per 2**pb keys) of every pixel
    with label 0 or 1; return whether all those scores are finite (an exponent of all ones is inf or NaN)."""
    bits = scores.view(np.int32)
    finite = True
    for i in range(scores.size):
        if labels[i] > 1:
            continue
        u = np.int64(bits[i]) & 0xFFFFFFFF
        if (u >> 23) & 0xFF == 0xFF:
            finite = False
            continue
        key = monotone_key(bits[i], mask)
        seen[key >> 16] = True
        page = key >> pb
        bitmap[page >> 6] |= np.uint64(1) << np.uint64(page & 63)
    return finite


@njit(cache=True, nogil=True, boundscheck=False)
def mark_bins(hi, sub, e, seen, bitmap, pb):
    """``mark_pixels`` for fine bins (``sub`` at resolution ``e``): each marks the first page its bin covers."""
    for i in range(hi.size):
        seen[hi[i]] = True
        page = (np.int64(hi[i]) << (16 - pb)) | ((np.int64(sub[i]) << (16 - e[i])) >> pb)
        bitmap[page >> 6] |= np.uint64(1) << np.uint64(page & 63)


@njit(cache=True, nogil=True, boundscheck=False)
def mark_pages(neg, pos, page_hi, page_k, used, e, seen, bitmap, pb):
    """``mark_bins`` for the nonzero pages of a layout (exponents ``e`` per level-1 bin)."""
    psize = 1 << pb
    for p in range(used):
        nonzero = False
        for j in range(p * psize, p * psize + psize):
            if neg[j] != 0 or pos[j] != 0:
                nonzero = True
                break
        if not nonzero:
            continue
        h = np.int64(page_hi[p])
        seen[h] = True
        page = (h << (16 - pb)) | (np.int64(page_k[p]) << (16 - e[h]))
        bitmap[page >> 6] |= np.uint64(1) << np.uint64(page & 63)


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _top_bit(x):
    """Index of the highest set bit of ``x`` > 0 (of a word's lowest set bit, isolated: its position)."""
    b = 0
    while x > 1:
        x >>= 1
        b += 1
    return b


@njit(cache=True, nogil=True, boundscheck=False)
def profile(bitmap, his, pb):
    """Per level-1 bin of ``his``: counts of neighbouring marked pages by the highest key bit (of 16) in which they
    differ, so that the pages occupied at any coarser resolution are 1 + the counts at and above its shift."""
    words = (1 << (16 - pb)) // 64
    out = np.zeros((his.size, 17), np.int64)
    for i in range(his.size):
        base = np.int64(his[i]) * words
        prev = -1
        for w in range(words):
            word = bitmap[base + w]
            while word:
                page = w * 64 + _top_bit(word & (~word + np.uint64(1)))
                if prev >= 0:
                    out[i, _top_bit(page ^ prev) + pb] += 1
                prev = page
                word &= word - np.uint64(1)
    return out


@njit(cache=True, nogil=True, boundscheck=False)
def allocate_pages(bitmap, his, e, run, dense, ptab, page_hi, page_k, pb):
    """Give pages, in ascending key order, to every page of the layout (exponents ``e``, runs ``run``) that holds a
    page marked in ``bitmap``, and to every page of ``dense`` level-1 bins; returns the pages used."""
    psize = 1 << pb
    words = (1 << (16 - pb)) // 64
    used = 0
    for h in his:
        if dense[h]:
            for k in range(1 << max(e[h] - pb, 0)):
                ptab[run[h] + k] = used * psize
                page_hi[used] = h
                page_k[used] = k
                used += 1
            continue
        base = np.int64(h) * words
        shift = 16 - e[h]
        prev = -1
        for w in range(words):
            word = bitmap[base + w]
            while word:
                k = (w * 64 + _top_bit(word & (~word + np.uint64(1)))) >> shift
                if k != prev:
                    ptab[run[h] + k] = used * psize
                    page_hi[used] = h
                    page_k[used] = k
                    used += 1
                    prev = k
                word &= word - np.uint64(1)
    return used


@njit(cache=True, nogil=True, boundscheck=False)
def key_order(his, run, e, ptab, pb):
    """First counts of the pages in ascending key order: the runs of level-1 bins ``his`` (ascending), in order."""
    n = 0
    for h in his:
        for j in range(1 << max(e[h] - pb, 0)):
            if ptab[run[h] + j] != NO_PAGE:
                n += 1
    out = np.empty(n, np.int64)
    n = 0
    for h in his:
        for j in range(1 << max(e[h] - pb, 0)):
            start = ptab[run[h] + j]
            if start != NO_PAGE:
                out[n] = start
                n += 1
    return out


@njit(cache=True, nogil=True, boundscheck=False)
def ordered_nonzero(neg, pos, starts, pb):
    """Positions of the nonzero bins in ascending key order (``starts``: the pages in key order)."""
    psize = 1 << pb
    n = 0
    for s in starts:
        for i in range(s, s + psize):
            if neg[i] != 0 or pos[i] != 0:
                n += 1
    out = np.empty(n, np.int64)
    n = 0
    for s in starts:
        for i in range(s, s + psize):
            if neg[i] != 0 or pos[i] != 0:
                out[n] = i
                n += 1
    return out


@njit(cache=True, nogil=True, boundscheck=False)
def positive_bins(neg, pos, starts, pb):
    """Per bin holding positives, in descending key order (``starts``: the pages in ascending key order): its
    position, positives, negatives at it, and negatives at or above it (int64); then the total of negatives.
    One pass over the bins from the top."""
    psize = 1 << pb
    k = 0
    for s in starts:
        for i in range(s, s + psize):
            if pos[i]:
                k += 1
    at = np.empty(k, np.int64)
    p = np.empty(k, np.int64)
    n_at = np.empty(k, np.int64)
    fp = np.empty(k, np.int64)
    total = 0
    j = 0
    for q in range(starts.size - 1, -1, -1):
        for i in range(starts[q] + psize - 1, starts[q] - 1, -1):
            total += neg[i]
            if pos[i]:
                at[j], p[j], n_at[j], fp[j] = i, pos[i], neg[i], total
                j += 1
    return at, p, n_at, fp, total
