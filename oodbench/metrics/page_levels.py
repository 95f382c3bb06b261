"""The level of the paged pixel histogram: how many key bits each level-1 bin keeps, chosen from the pages the
pooled pixels occupy so that the choice depends on those pixels alone (never on their order, shards or merges).

A level-1 bin (a key's top 16 bits: sign, exponent, 7 mantissa bits) keeps e more bits, e = clip(m + [bin >= t] -
penalty, floor, cap): the penalty (one bit per binade outside |x| in [2**-16, 2**16)) leaves far tails less, the
floor (3 over the float16 range) keeps float16 scores exact, and t, on a binade boundary, gives the top of the
ranking (which weighs most in AP) one more bit. The canonical level is the largest m, then the lowest t, whose
page table and occupied pages fit the capacity. More pixels occupy more pages, so the level only coarsens.
"""
from __future__ import annotations

import numpy as np

L1 = 1 << 16
_HI = np.arange(L1, dtype=np.int64)
_EXP = ((np.where(_HI >= 0x8000, _HI ^ 0x8000, _HI ^ 0xFFFF)) >> 7) & 0xFF  # float exponent of a level-1 bin
NONFINITE = _EXP == 0xFF  # inf and NaN: never given a run, so their pixels always reach the slow path
PENALTY = np.maximum(0, np.maximum(111 - _EXP, _EXP - 142))  # binades below 2**-16 or from 2**16 on
FLOOR = np.where((_EXP >= 103) & (_EXP <= 142), 3, 0)  # the float16 range (2**-24 up) keeps >= 19 key bits


def exponent(his: np.ndarray, m: int, t: int, cap: int) -> np.ndarray:
    """Bits kept below level 1 by level-1 bins ``his`` at level (m, t), at most ``cap``."""
    return np.minimum(np.maximum(m + (his >= t) - PENALTY[his], FLOOR[his]), cap)


def canonical_level(his: np.ndarray, finest: np.ndarray, steps: np.ndarray, cap: int, capacity: int,
                    page_bytes: int, pb: int) -> tuple[int, int, np.ndarray]:
    """(m, t, pages per bin of ``his``) of pixels whose level-1 bins are ``his``, known down to exponents ``finest``,
    with ``steps`` (``page_kernels.profile``): the largest m, then the lowest t, whose page table (4 bytes per page
    slot) and occupied pages (2**pb bins, ``page_bytes`` each) fit ``capacity`` bytes and keep no bin finer than
    known."""
    above = np.cumsum(steps[:, ::-1], axis=1)[:, ::-1]  # neighbours differing at or above each bit
    rows = np.arange(his.size)

    def cost(m: int, t: int) -> tuple[bool, np.ndarray]:
        e = exponent(his, m, t, cap)
        if np.any(e > finest):
            return False, e
        pages = 1 + np.where(e > pb, above[rows, np.minimum(16 + pb - e, 16)], 0)
        table = int(np.sum(np.left_shift(1, np.maximum(e - pb, 0))))
        return table * 4 + int(pages.sum()) * page_bytes <= capacity, pages

    lo, hi = 0, cap + int(PENALTY.max())
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if cost(mid, L1)[0] else (lo, mid - 1)
    t_lo, t_hi = 0, L1 // 128
    while t_lo < t_hi:
        mid = (t_lo + t_hi) // 2
        t_lo, t_hi = (t_lo, mid) if cost(lo, mid * 128)[0] else (mid + 1, t_hi)
    return lo, t_lo * 128, cost(lo, t_lo * 128)[1]


def dense_bins(his: np.ndarray, e: np.ndarray, pages: np.ndarray, limit: int, pb: int) -> np.ndarray:
    """Level-1 bins to lay out whole, in order, so that counting skips the page table: those with at least 3/4 of
    their pages occupied, fewest empty pages first, within half the pages a layout of ``limit`` has spare."""
    full = np.left_shift(1, np.maximum(e - pb, 0))
    empty = full - pages
    candidates = np.flatnonzero((full > 1) & (4 * pages >= 3 * full))
    candidates = candidates[np.argsort(empty[candidates], kind="stable")]
    return his[candidates[np.cumsum(empty[candidates]) <= (limit - int(pages.sum())) // 2]]
