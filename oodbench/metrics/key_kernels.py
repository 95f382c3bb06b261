"""Compiled (numba) inner loops of the paged pixel histogram: one pass per image, no temporaries.

A pixel's fine bin is found through ``fast``, per level-1 bin (start << 6) | DENSE | dropped key bits: a dense bin's
pages are all given, in order, and start at ``start``; otherwise ``start`` is the bin's run in ``ptab``, which
holds per page of 2**pb fine bins the page's first count or NO_PAGE. A page is given its counts the first time a
pixel lands in it (while ``limit`` allows).
In-distribution pixels (most of a split) are counted first in a uint8 staging array that carries into the full
counts every 256 pixels of a bin: the random increments of a frame mostly hit the CPU cache.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .score_keys import monotone_key

CHUNK = 4096  # pixels whose negative bins are gathered before they are counted
NO_PAGE = -1
DENSE = 32


@njit(cache=True, nogil=True, boundscheck=False)
def stage(scores, labels, fast, ptab, mask, neg8, neg, pos, page_hi, page_k, used, limit, sign, rest, pb):
    """Count float32 ``scores`` with uint8 ``labels`` (0 negative, 1 positive, others skipped) into their fine
    bins, negatives through the staging array; ``sign`` = +1 to add (giving pages to pixels that need one while
    fewer than ``limit`` are used), -1 to take back. Pixels left uncounted (level-1 bin without a run, or no page
    left) have their indices written to ``rest``. Returns (number of those, pages used)."""
    psize = 1 << pb
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
            key = monotone_key(bits[i], mask)
            code = np.int64(fast[key >> 16])
            f = (key & 0xFFFF) >> (code & 31)
            if code & DENSE:
                idx = (code >> 6) + f
            else:
                slot = (code >> 6) + (f >> pb)
                start = np.int64(ptab[slot])
                if start == NO_PAGE:
                    if code >> 6 == 0 or used >= limit or sign < 0:
                        rest[m] = i
                        m += 1
                        continue
                    start = used * psize
                    ptab[slot] = start
                    page_hi[used] = key >> 16
                    page_k[used] = f >> pb
                    used += 1
                idx = start + (f & (psize - 1))
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
    return m, used


@njit(cache=True, nogil=True, boundscheck=False)
def recount(hi, sub, e, pos, neg, run, new_e, ptab, new_neg, new_pos, page_hi, page_k, used, pb):
    """Add counts given per fine bin (level-1 bin ``hi``, index ``sub`` at resolution ``e``, not coarser than the
    layout's) to the layout of ``run``/``new_e``/``ptab``, giving pages as needed; returns the pages used."""
    psize = 1 << pb
    for i in range(hi.size):
        if pos[i] == 0 and neg[i] == 0:
            continue
        f = sub[i] >> (e[i] - new_e[hi[i]])
        slot = run[hi[i]] + (f >> pb)
        start = np.int64(ptab[slot])
        if start == NO_PAGE:
            start = used * psize
            ptab[slot] = start
            page_hi[used] = hi[i]
            page_k[used] = f >> pb
            used += 1
        idx = start + (f & (psize - 1))
        new_neg[idx] += neg[i]
        new_pos[idx] += pos[i]
    return used


@njit(cache=True, nogil=True, boundscheck=False)
def recount_pages(neg, pos, page_hi, page_k, used, e, run, new_e, ptab, new_neg, new_pos, new_hi, new_k, new_used, pb):
    """``recount`` of the pages of another layout (exponents ``e`` per level-1 bin) that hold a pixel: a page lands
    in one page of the new layout, as the new one is not finer. Returns the new layout's pages used."""
    psize = 1 << pb
    for p in range(used):
        b = p * psize
        empty = True
        for j in range(psize):
            if neg[b + j] != 0 or pos[b + j] != 0:
                empty = False
                break
        if empty:
            continue
        h = page_hi[p]
        drop = e[h] - new_e[h]
        f0 = (np.int64(page_k[p]) << pb) >> drop
        slot = run[h] + (f0 >> pb)
        start = np.int64(ptab[slot])
        if start == NO_PAGE:
            start = new_used * psize
            ptab[slot] = start
            new_hi[new_used] = h
            new_k[new_used] = f0 >> pb
            new_used += 1
        base = start + (f0 & (psize - 1))
        for j in range(psize):
            new_neg[base + (j >> drop)] += neg[b + j]
            new_pos[base + (j >> drop)] += pos[b + j]
    return new_used


@njit(cache=True, nogil=True, boundscheck=False)
def flush(staged, counts, n):
    """Add the first ``n`` staging counts to ``counts`` and clear them (eight at a time where all are zero)."""
    words = staged[: n - n % 8].view(np.uint64)
    for w in range(words.size):
        if words[w]:
            for i in range(8 * w, 8 * w + 8):
                counts[i] += staged[i]
            words[w] = 0
    for i in range(n - n % 8, n):
        c = staged[i]
        if c:
            counts[i] += c
            staged[i] = 0
