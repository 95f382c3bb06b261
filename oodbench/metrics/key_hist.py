"""Paged histogram of float32 scores per class: the bounded-memory storage of PixelMetricState.

Scores become monotone 32-bit keys (the float32 bit pattern, sign-adjusted so that key order is score order). An
occupied level-1 bin (a key's top 16 bits) keeps e more bits (``page_levels``: e = 16 keeps every float32 value
apart); its 2**e fine bins are stored in pages of 64, and only pages that hold a pixel take memory, so sparse
ranges (the tails, the many binades near 0 of a map that crosses zero) cost little and the dense ones get the
bits (a max-logit map over both signs keeps 28-29 where one dense block per level-1 bin kept 26-27). Level-1 bins
with nearly all pages occupied are laid out whole, so that counting their pixels skips the page table
(``key_kernels``). Occupancy only grows, so the level only coarsens, and a coarser bin is the sum of finer ones:
the counts depend only on the pooled pixels, never on their order, sharding or merges.
"""
from __future__ import annotations

import numpy as np

from .key_kernels import DENSE, NO_PAGE, flush, recount, recount_pages, stage
from .page_kernels import (allocate_pages, key_order, mark_bins, mark_pages, mark_pixels, ordered_nonzero,
                           positive_bins, profile)
from .page_levels import FLOOR, L1, NONFINITE, canonical_level, dense_bins, exponent
from .score_keys import monotone_keys

class KeyHistogram:
    """Positive and negative pixel counts per fine bin of the monotone key, within ``budget_bytes``."""

    budget_bytes = 62 << 20  # page table, counts, staging and page keys; the level-1 tables add 1.3 MiB
    narrow_limit = 2**31 - 1  # int32 counts while the state holds fewer pixels; then int64

    def __init__(self, bits: int):
        self.max_extra = max(0, bits - 16)  # at most this many bits below level 1 (16: every float32 value apart)
        self.mask = (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF  # keys keep their top ``bits`` bits
        self.dtype = np.dtype(np.int32)
        self._reset((0, L1), np.zeros(0, np.int64), np.zeros(0, np.int64), 0)

    # ---- layout -----------------------------------------------------------------------------------------
    @property
    def page_bits(self) -> int:
        """log2 of the fine bins per page: 64 with int32 counts, 32 with int64 (so that one page for each of the
        65,280 finite level-1 bins still fits the budget)."""
        return 6 if self.dtype == np.int32 else 5

    def _page_bytes(self) -> int:
        return (1 << self.page_bits) * (2 * self.dtype.itemsize + 1) + 8  # counts, staging, and the page's key (hi, k)

    def _exponent(self, level1: np.ndarray, m: int, t: int) -> np.ndarray:
        return exponent(level1, m, t, self.max_extra)

    def _level(self, level1: np.ndarray, finest: np.ndarray, steps: np.ndarray) -> tuple[int, int, np.ndarray]:
        return canonical_level(level1, finest, steps, self.max_extra, self.budget_bytes * 15 // 16,
                               self._page_bytes(), self.page_bits)

    def _reset(self, level: tuple[int, int], level1: np.ndarray, e: np.ndarray, pages: int) -> None:
        """An empty layout: runs of page-table entries for level-1 bins ``level1`` at exponents ``e``, and count arrays
        for ``pages`` pages plus what the rest of the budget holds (reserved; the OS maps them as counts arrive)."""
        self.level = level
        self.extra_bits = np.zeros(L1, np.int64)
        self.extra_bits[level1] = e
        sizes = np.left_shift(1, np.maximum(e - self.page_bits, 0))
        self.first_slot = np.zeros(L1, np.int64)  # 0: no run (entry 0 of the table is a NO_PAGE sentinel)
        self.first_slot[level1] = 1 + np.cumsum(sizes) - sizes
        self.slots_used = 1 + int(sizes.sum())
        free = self.budget_bytes - self.slots_used * 4 - pages * self._page_bytes()
        spare = max(0, min(free // 8, max(self.slots_used // 4, 8192)))  # table entries for bins to come
        self.page_table = np.full(self.slots_used + spare if level1.size else 1, NO_PAGE, np.int32)
        limit = (self.budget_bytes - self.page_table.size * 4) // self._page_bytes() if level1.size else 0
        self.page_limit = max(limit, pages)
        bins = self.page_limit << self.page_bits
        self.neg, self.pos = np.zeros(bins, self.dtype), np.zeros(bins, self.dtype)
        self.staged_neg = np.zeros(bins, np.uint8)
        self.page_level1, self.page_index = np.zeros(self.page_limit, np.int32), np.zeros(self.page_limit, np.int32)
        self.pages_used = 0
        self.dense = np.zeros(L1, bool)
        self._fast_map()

    def _fast_map(self) -> None:
        """Per level-1 bin, (start << 6) | DENSE | (16 - e) for the counting passes (``key_kernels``); bins without
        a run read the sentinel."""
        self.lookup = np.full(L1, 16, np.int32)
        has = np.flatnonzero(self.first_slot)
        dense = has[self.dense[has]]
        self.lookup[has] = (self.first_slot[has] << 6) | (16 - self.extra_bits[has])
        start = self.page_table[self.first_slot[dense]].astype(np.int64)
        self.lookup[dense] = (start << 6) | DENSE | (16 - self.extra_bits[dense])

    def _relayout(self, pixels: tuple | None = None, bins: tuple | None = None) -> bool:
        """Re-lay the counts, and those of uncounted ``pixels`` (scores, labels) or fine ``bins`` (hi, sub, e, pos,
        neg), at the canonical level of them all, then count those. False, changing nothing, if a pixel of either
        class has a NaN/inf score."""
        seen, bitmap = self._page_map()
        if pixels is not None and not mark_pixels(*pixels, self.mask, seen, bitmap, self.page_bits):
            return False
        finest = np.where(self.first_slot > 0, self.extra_bits, 16)
        if bins is not None:
            mark_bins(*bins[:3], seen, bitmap, self.page_bits)
            np.minimum.at(finest, bins[0], bins[2])
        level1 = np.flatnonzero(seen)
        m, t, pages = self._level(level1, finest[level1], profile(bitmap, level1, self.page_bits))
        old = (self.neg, self.pos, self.page_level1, self.page_index, self.pages_used, self.extra_bits)
        self._reset((m, t), level1, self._exponent(level1, m, t), int(pages.sum()))
        self.dense[dense_bins(level1, self.extra_bits[level1], pages, self.page_limit, self.page_bits)] = True
        self.pages_used = allocate_pages(bitmap, level1, self.extra_bits, self.first_slot, self.dense,
                                         self.page_table, self.page_level1, self.page_index, self.page_bits)
        self._fast_map()
        self.pages_used = recount_pages(*old, *self._target(), self.pages_used, self.page_bits)
        if pixels is not None:
            assert self._fast(*pixels) is None, "a canonical layout holds every pixel it was computed for"
        if bins is not None:
            self.pages_used = recount(*bins, *self._target(), self.pages_used, self.page_bits)
        return True

    def _target(self) -> tuple:
        """The layout arrays the recounting kernels fill: slots, bits, page table, counts, page keys."""
        return (self.first_slot, self.extra_bits, self.page_table, self.neg, self.pos, self.page_level1,
                self.page_index)

    def _page_map(self) -> tuple[np.ndarray, np.ndarray]:
        """The level-1 bins and the full-resolution pages (a bitmap, ``page_kernels``) that the counts occupy."""
        self._flush()
        seen, bitmap = np.zeros(L1, bool), np.zeros(L1 << (10 - self.page_bits), np.uint64)  # a bit per full page
        mark_pages(self.neg, self.pos, self.page_level1, self.page_index, self.pages_used, self.extra_bits, seen,
                   bitmap, self.page_bits)
        return seen, bitmap

    def _grow(self, level1: np.ndarray) -> bool:
        """Runs for new level-1 bins at the current level, if the page table has room."""
        e = self._exponent(level1, *self.level)
        sizes = np.left_shift(1, np.maximum(e - self.page_bits, 0))
        if self.slots_used + int(sizes.sum()) > self.page_table.size:
            return False
        self.extra_bits[level1], self.first_slot[level1] = e, self.slots_used + np.cumsum(sizes) - sizes
        self.slots_used += int(sizes.sum())
        self._fast_map()
        return True

    def _flush(self) -> None:
        """Add the staged negatives to the counts (before anything reads or moves them)."""
        n = self.pages_used * (1 << self.page_bits)
        flush(self.staged_neg, self.neg, n)

    def canonicalize(self) -> None:
        """Re-lay the state at the canonical level of its counts when it is finer (pages were added since)."""
        seen, bitmap = self._page_map()
        level1 = np.flatnonzero(seen)
        if self._level(level1, self.extra_bits[level1], profile(bitmap, level1, self.page_bits))[:2] != self.level:
            self._relayout()

    def widen(self) -> None:
        """Switch to int64 counts, with pages of 32 bins: the nonzero bins are re-laid at the canonical level that
        the wider pages allow."""
        if self.dtype != np.int64:
            self._flush()
            bins = self._bins()
            self.dtype = np.dtype(np.int64)
            self._reset((0, L1), np.zeros(0, np.int64), np.zeros(0, np.int64), 0)
            self._relayout(bins=bins)

    # ---- counting ---------------------------------------------------------------------------------------
    def _fast(self, scores: np.ndarray, labels: np.ndarray, sign: int = 1) -> np.ndarray | None:
        """Count float32 pixels (labels 0 and 1; others weigh 0) that have or get a page; return the indices of the
        rest, or None. ``sign=-1`` takes a call back."""
        rest = np.empty(scores.size, np.int64)
        m, self.pages_used = stage(scores, labels, self.lookup, self.page_table, self.mask, self.staged_neg, self.neg,
                                   self.pos, self.page_level1, self.page_index, self.pages_used, self.page_limit, sign,
                                   rest, self.page_bits)
        return rest[:m].copy() if m else None

    def add(self, scores: np.ndarray, labels: np.ndarray) -> bool:
        """Count float32 pixels with uint8 labels (0 negative, 1 positive, others ignored). Returns False,
        leaving the counts unchanged, when a pixel of either class has a NaN/inf score."""
        if self.slots_used <= 1:  # the first image lays out the pages
            return self._relayout(pixels=(scores, labels))
        rest = self._fast(scores, labels)
        if rest is None:
            return True
        s, lab = scores[rest], labels[rest]
        level1 = self._level1(s)
        if NONFINITE[level1].any():
            self._fast(scores, labels, sign=-1)
            return False
        self._add_new(s, lab, level1)
        return True

    def _level1(self, scores: np.ndarray) -> np.ndarray:
        """The distinct level-1 bins of ``scores``, ascending."""
        seen = np.zeros(L1, bool)
        seen[monotone_keys(scores, self.mask) >> np.uint32(16)] = True
        return np.flatnonzero(seen)

    def _add_new(self, scores: np.ndarray, labels: np.ndarray, level1: np.ndarray) -> None:
        """Count finite pixels that found no page (their level-1 bins ``level1`` may have no run yet)."""
        new = level1[self.first_slot[level1] == 0]
        if self.slots_used > 1 and (not new.size or self._grow(new)):
            rest = self._fast(scores, labels)
            if rest is None:
                return
            scores, labels = scores[rest], labels[rest]
        self._relayout(pixels=(np.ascontiguousarray(scores), np.ascontiguousarray(labels)))

    def check_bins(self, hi: np.ndarray, e: np.ndarray) -> None:
        """ValueError unless fine bins (level-1 bin ``hi`` at resolution ``e``) can come from a state like this one:
        finite level-1 bins, resolutions within [min(floor, cap), cap]."""
        cap = self.max_extra
        if hi.size and (NONFINITE[hi].any() or np.any(e > cap) or np.any(e < np.minimum(FLOOR[hi], cap))):
            raise ValueError("bins of NaN/inf scores or at resolutions this state never keeps: not from a compatible "
                             "state")

    def merge_bins(self, hi, sub, e, pos, neg) -> None:
        """Add counts of fine bins given at resolution ``e`` (a canonical state's, so not coarser than the pooled
        layout; ``check_bins`` first) to the state, re-laid at the canonical level of both."""
        self._relayout(bins=tuple(np.ascontiguousarray(a, np.int64) for a in (hi, sub, e, pos, neg)))

    # ---- reading ----------------------------------------------------------------------------------------
    def counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(negatives, positives) per fine bin of the canonical layout, by position, and the first positions of the
        pages in ascending key order (bins of pages that no pixel reached are left out)."""
        self.canonicalize()
        return self.neg, self.pos, self._page_order()

    def nonzero(self, neg: np.ndarray, pos: np.ndarray, order: np.ndarray) -> np.ndarray:
        """Positions of the nonzero bins of ``neg``/``pos`` in ascending key order (``order`` from ``counts``)."""
        return ordered_nonzero(neg, pos, order, self.page_bits)

    def describe(self, fine: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(hi, sub, e) of fine bins given as positions from ``counts``."""
        page = fine >> self.page_bits
        hi = self.page_level1[page].astype(np.int64)
        sub = (self.page_index[page].astype(np.int64) << self.page_bits) | (fine & ((1 << self.page_bits) - 1))
        return hi, sub, self.extra_bits[hi]

    def edges(self, fine: np.ndarray) -> np.ndarray:
        """Lowest key of each fine bin (positions from ``counts``)."""
        hi, sub, e = self.describe(fine)
        return (hi << 16) | (sub << (16 - e))

    def positive_bins(self) -> tuple:
        """Per bin holding positives, in descending key order: position, positives, negatives at it and at or
        above it (int64); then the number of negatives. Other bins change no metric."""
        neg, pos, order = self.counts()
        at, count, neg_at, fp, num_neg = positive_bins(neg, pos, order, self.page_bits)
        return at, count, neg_at, fp, int(num_neg)

    def entries(self) -> tuple:
        """(hi, sub, e, pos, neg) of every nonzero fine bin of the canonical layout, in ascending key order."""
        self.canonicalize()
        return self._bins()

    def _bins(self) -> tuple:
        """(hi, sub, e, pos, neg) of every nonzero fine bin of the current layout (int64), in ascending key order."""
        nz = self.nonzero(self.neg, self.pos, self._page_order())
        return (*self.describe(nz), self.pos[nz].astype(np.int64), self.neg[nz].astype(np.int64))

    def nbytes(self) -> int:
        """Bytes held by the page table, the count arrays (reserved at the budget's size once pages exist; the OS
        maps them as counts arrive) and the level-1 tables."""
        return sum(a.nbytes for a in (self.neg, self.pos, self.staged_neg, self.page_level1, self.page_index,
                                       self.page_table, self.extra_bits, self.first_slot, self.lookup, self.dense))

    def _page_order(self) -> np.ndarray:
        """First positions of the pages in ascending key order."""
        level1 = np.flatnonzero(self.first_slot)
        return key_order(level1, self.first_slot, self.extra_bits, self.page_table, self.page_bits)
