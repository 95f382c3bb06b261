"""Adaptive two-level histogram of float32 scores per class: the bounded-memory storage of PixelMetricState.

Scores become monotone 32-bit keys (the float32 bit pattern, sign-adjusted so that key order is score order).
Level 1 is a key's top 16 bits (sign, exponent, 7 mantissa bits). Each occupied level-1 bin owns a block of
2**e fine bins, one per value of the next e bits (e = 16 keeps every float32 value apart), with
e = clip(m + [bin >= t] - penalty, floor, cap). m is one global level, the largest whose blocks fit the byte
budget; t, on a binade boundary, is the lowest threshold that lets the bins above it have one more bit within
the budget (the top of the ranking weighs most in AP); the penalty (one bit per binade outside |x| in
[2**-16, 2**16)) leaves far tails less, the floor (3 over the float16 range) keeps float16 scores exact.
Occupancy only grows, so (m, t) only coarsens bins, and a coarser block is the sum of a finer one: the counts
depend only on the pooled pixels, never on their order, sharding or merges.
Images are counted by compiled passes (``key_kernels``: the first image's level-1 bins, then ``stage``);
negatives go through uint8 staging counts that are added to the full counts before anything reads or moves them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .key_kernels import flush, level1_seen, move_blocks, positive_bins, stage
from .score_keys import monotone_keys

if TYPE_CHECKING:
    import torch

    from .device_counts import DeviceCounts

L1 = 1 << 16
_HI = np.arange(L1, dtype=np.int64)
_EXP = ((np.where(_HI >= 0x8000, _HI ^ 0x8000, _HI ^ 0xFFFF)) >> 7) & 0xFF  # float exponent of a level-1 bin
NONFINITE = _EXP == 0xFF  # inf and NaN: never given a block, so their pixels always reach the slow path
PENALTY = np.maximum(0, np.maximum(111 - _EXP, _EXP - 142))  # binades below 2**-16 or from 2**16 on
FLOOR = np.where((_EXP >= 103) & (_EXP <= 142), 3, 0)  # the float16 range (2**-24 up) keeps >= 19 key bits


class KeyHistogram:
    """Positive and negative pixel counts per fine bin of the monotone key, within ``budget_bytes``."""

    budget_bytes = 62 << 20  # both count arrays and the negatives' uint8 staging; the level-1 tables add 1.8 MiB
    narrow_limit = 2**31 - 1  # int32 counts while the state holds fewer pixels; then int64 at half the bins

    def __init__(self, bits: int):
        self.cap = max(0, bits - 16)  # at most this many bits below level 1 (16: every float32 value apart)
        self.mask = (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF  # keys keep their top ``bits`` bits
        self.dtype = np.dtype(np.int32)
        self.version = 0  # counts layout changes, for a device copy of the level-1 table
        self.device_counts: DeviceCounts | None = None
        self._layout(np.zeros(0, np.int64))

    # ---- layout -----------------------------------------------------------------------------------------
    def _capacity(self) -> int:
        return self.budget_bytes // (2 * self.dtype.itemsize + 1) - 1  # leaves room for the overflow bin

    def _level(self, occupied: np.ndarray) -> tuple[int, int]:
        """The canonical level of ``occupied``: the largest m, then the lowest t, whose blocks fit 15/16 of the
        budget (sizes are monotone in both). The rest lets later bins be appended without a new layout."""
        capacity = self._capacity() * 15 // 16

        def fits(m: int, t: int) -> bool:
            return int(np.sum(np.left_shift(1, self._exponent(occupied, m, t)))) <= capacity

        lo, hi = 0, self.cap + int(PENALTY.max())
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if fits(mid, L1) else (lo, mid - 1)
        t_lo, t_hi = 0, L1 // 128
        while t_lo < t_hi:
            mid = (t_lo + t_hi) // 2
            t_lo, t_hi = (t_lo, mid) if fits(lo, mid * 128) else (mid + 1, t_hi)
        return lo, t_lo * 128

    def _exponent(self, his: np.ndarray, m: int, t: int) -> np.ndarray:
        """Block exponent e of level-1 bins at level (m, t)."""
        return np.minimum(np.maximum(m + (his >= t) - PENALTY[his], FLOOR[his]), self.cap)

    def _layout(self, occupied: np.ndarray) -> None:
        """Empty blocks for the ``occupied`` level-1 bins, in key order, at their canonical level."""
        self.level = self._level(occupied)
        self.e = np.zeros(L1, np.int64)
        self.slot = np.full(L1, -1, np.int64)
        self.blocks = np.zeros(0, np.int64)
        self.used = 0
        self.neg = self.pos = np.zeros(0, self.dtype)
        self.neg8 = np.zeros(0, np.uint8)
        self._append(np.sort(occupied))

    def _relayout(self, occupied: np.ndarray) -> None:
        """Move the counts into the canonical layout of ``occupied`` (a superset): each block summed down to its
        new size."""
        self._flush()
        blocks = np.sort(self.blocks)
        old_e, old_slot, pools = self.e[blocks], self.slot[blocks], (self.neg, self.pos)
        self._layout(occupied)
        new_e, new_slot = self.e[blocks], self.slot[blocks]
        assert np.all(old_e >= new_e), "a canonical layout is never finer than an earlier one"
        for old, new in zip(pools, (self.neg, self.pos)):
            move_blocks(old, new, old_slot, new_slot, old_e, new_e)

    def _append(self, new: np.ndarray) -> None:
        """Blocks for ``new`` level-1 bins after the used ones, at the current level; the overflow bin moves last."""
        e = self._exponent(new, *self.level)
        sizes = np.left_shift(1, e)
        self.e[new], self.slot[new] = e, self.used + np.cumsum(sizes) - sizes
        self.blocks = np.concatenate([self.blocks, new])
        old, self.used = self.used, self.used + int(sizes.sum())
        need = self.used + 1  # and the overflow bin
        if need > self.neg.size:  # the whole budget at once: later appends copy nothing, untouched pages stay unmapped
            size = self._capacity() + 1 if self.used else need
            for name in ("neg", "pos", "neg8"):
                grown = np.zeros(size, getattr(self, name).dtype)
                grown[:old] = getattr(self, name)[:old]
                setattr(self, name, grown)
        else:
            self.neg[old:need] = self.pos[old:need] = self.neg8[old:need] = 0
        self._fast_map()

    def _flush(self) -> None:
        """Add the staging and device counts to the counts (before anything reads or moves them)."""
        n = min(self.used + 1, self.neg8.size)
        flush(self.neg8, self.neg, n)
        if self.device_counts is not None:
            self.device_counts.drain(self.neg, self.pos, n)

    def __getstate__(self) -> dict:
        """Pickled (e.g. sent between processes) with every count on the host, and only the nonzero bins."""
        self._flush()
        n = min(self.used + 1, self.neg.size)
        nonzero = np.flatnonzero(self.neg[:n] | self.pos[:n]).astype(np.int32)  # bins < 2**31 within the budget
        return {**vars(self), "device_counts": None, "neg": None, "pos": None, "neg8": None,
                "nonzero": (n, nonzero, self.neg[nonzero], self.pos[nonzero])}

    def __setstate__(self, state: dict) -> None:
        n, nonzero, neg, pos = state.pop("nonzero")
        vars(self).update(state)
        size = self._capacity() + 1 if self.used else n
        self.neg, self.pos, self.neg8 = np.zeros(size, self.dtype), np.zeros(size, self.dtype), np.zeros(size, np.uint8)
        self.neg[nonzero], self.pos[nonzero] = neg, pos

    def _fast_map(self) -> None:
        """Per level-1 bin, (block start << 5) | (16 - e) for the fast path; bins without a block get the overflow
        bin behind the used ones, whose pixels the fast path hands back."""
        self.trash = self.used
        self.fast = np.full(L1, (self.trash << 5) | 16, np.int32)
        self.fast[self.blocks] = (self.slot[self.blocks] << 5) | (16 - self.e[self.blocks])
        self.version += 1

    def occupy(self, his: np.ndarray, canonical: bool = False) -> None:
        """Give blocks to level-1 bins that have none: appended at the current level while the budget holds,
        else (or if ``canonical``) the state is re-laid at the canonical level of all its bins."""
        new = np.setdiff1d(his, self.blocks)
        grown = int(np.sum(np.left_shift(1, self._exponent(new, *self.level))))
        if new.size and (canonical or self.used + grown > self._capacity()):
            self._relayout(np.union1d(self.blocks, new))
        elif new.size:
            self._append(new)
        elif canonical:
            self.canonicalize()

    def canonicalize(self) -> None:
        """Re-lay the state at the canonical level of its bins when appends left it finer (or out of order), so
        that equal pixels give equal counts whatever order they came in."""
        level = self._level(self.blocks)
        if level != self.level or np.any(self.e[self.blocks] != self._exponent(self.blocks, *level)):
            self._relayout(self.blocks)
        else:
            self._sort()

    def widen(self) -> None:
        """Switch to int64 counts at half the bins, so that memory stays within the budget."""
        if self.dtype != np.int64:
            self.dtype = np.dtype(np.int64)
            self._relayout(self.blocks)

    # ---- counting ---------------------------------------------------------------------------------------
    def scatter(self, hi, sub, e, pos, neg) -> None:
        """Add counts of fine bins given at resolution ``e`` (not coarser than their block's) to the blocks."""
        drop = e - self.e[hi]
        if np.any(drop < 0) or np.any(self.slot[hi] < 0):
            raise ValueError("counts finer than this state's layout allows: not from a compatible state")
        fine = self.slot[hi] + (sub >> drop)
        np.add.at(self.neg, fine, neg.astype(self.dtype))
        np.add.at(self.pos, fine, pos.astype(self.dtype))

    def _fast(self, scores: np.ndarray, labels: np.ndarray, sign: int = 1) -> np.ndarray | None:
        """Count float32 pixels (labels 0 and 1; others weigh 0) whose level-1 bin has a block; return the
        indices of the rest, or None. ``sign=-1`` takes a call back."""
        rest = np.empty(scores.size, np.int64)
        m = stage(scores, labels, self.fast, self.mask, self.neg8, self.neg, self.pos, self.trash,
                  sign, rest)
        self.neg[self.trash] = self.pos[self.trash] = self.neg8[self.trash] = 0
        return rest[:m].copy() if m else None

    def add(self, scores: np.ndarray, labels: np.ndarray) -> bool:
        """Count float32 pixels with uint8 labels (0 negative, 1 positive, others ignored). Returns False,
        leaving the counts unchanged, when a pixel of either class has a NaN/inf score."""
        if not self.used:  # the first image lays out the blocks: its level-1 bins in one compiled pass
            seen = np.zeros(L1, bool)
            if not level1_seen(scores, labels, self.mask, seen):
                return False
            self.occupy(np.flatnonzero(seen))
        rest = self._fast(scores, labels) if self.used else None
        if rest is None:
            return True
        rest = rest[labels[rest] <= 1]
        s, lab = scores[rest], labels[rest]
        his = self._level1(s)
        if NONFINITE[his].any():
            if self.used:
                self._fast(scores, labels, sign=-1)
            return False
        self._add_new(s, lab, his)
        return True

    def add_on_device(self, scores: torch.Tensor, labels: np.ndarray) -> bool:
        """``add`` for scores in a torch tensor, counted on its device (``device_counts``); the labels are host
        uint8 codes. Pixels of level-1 bins without a block come back to the host."""
        import torch

        from .device_counts import DeviceCounts

        flat = scores.reshape(-1).to(torch.float32)
        if not self.used:  # the first image lays out the blocks
            return self.add(flat.cpu().numpy(), labels)
        if self.device_counts is None or self.device_counts.device != scores.device:
            self._flush()
            self.device_counts = DeviceCounts(scores.device)
        counts = self.device_counts
        counts.sync(self.fast, self.version, self.used + 1)
        idx, lab, keep, rest = counts.index(flat, labels, self.mask, self.trash)
        if rest.size:
            s = flat[torch.from_numpy(rest).to(flat.device)].cpu().numpy()
            his = self._level1(s)
            if NONFINITE[his].any():
                return False
        counts.add(idx, lab, keep)
        if rest.size:
            self._add_new(s, labels[rest], his)
        return True

    def _level1(self, scores: np.ndarray) -> np.ndarray:
        """The distinct level-1 bins of ``scores``, ascending."""
        seen = np.zeros(L1, bool)
        seen[monotone_keys(scores, self.mask) >> np.uint32(16)] = True
        return np.flatnonzero(seen)

    def _add_new(self, scores: np.ndarray, labels: np.ndarray, his: np.ndarray) -> None:
        """Count finite pixels whose level-1 bins ``his`` may have no block yet: blocks first."""
        self.occupy(his)
        self._fast(scores, labels)

    # ---- reading ----------------------------------------------------------------------------------------
    def _sort(self) -> None:
        """Put the blocks in key order (blocks appended since the last layout are out of order): one copy of
        each run of blocks that stays contiguous."""
        self._flush()
        blocks = np.sort(self.blocks)
        if np.array_equal(blocks, self.blocks):
            return
        sizes = np.left_shift(1, self.e[blocks])
        src, dst = self.slot[blocks], np.cumsum(sizes) - sizes
        cut = np.flatnonzero(np.r_[True, src[1:] != src[:-1] + sizes[:-1], True])  # runs: contiguous sources
        for name in ("neg", "pos"):
            old, new = getattr(self, name), np.zeros(getattr(self, name).size, self.dtype)
            for a, b in zip(cut[:-1], cut[1:]):
                new[dst[a]: dst[b - 1] + sizes[b - 1]] = old[src[a]: src[b - 1] + sizes[b - 1]]
            setattr(self, name, new)
        self.blocks = blocks
        self.slot[blocks] = dst
        self._fast_map()

    def counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(negatives, positives) per fine bin in ascending key order (views of the canonical layout), and the
        first bin of each block."""
        self.canonicalize()
        sizes = np.left_shift(1, self.e[self.blocks])
        return self.neg[: self.used], self.pos[: self.used], np.cumsum(sizes) - sizes

    def describe(self, fine: np.ndarray, first: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(hi, sub, e) of fine bins given as positions from ``counts``."""
        hi = self.blocks[np.searchsorted(first, fine, side="right") - 1]
        return hi, fine - self.slot[hi], self.e[hi]

    def position(self, key: int) -> int:
        """Position (as in ``counts``) of the fine bin holding a key; -1 when its level-1 bin has no block."""
        hi = key >> 16
        return int(self.slot[hi] + ((key & 0xFFFF) >> (16 - self.e[hi]))) if self.slot[hi] >= 0 else -1

    def folded_counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``counts`` with the bin of -0.0 added to that of +0.0 (equal scores; copies only when both hold)."""
        neg, pos, first = self.counts()
        zero, minus = self.position(0x80000000 & self.mask), self.position(0x7FFFFFFF & self.mask)
        if zero >= 0 and minus >= 0 and (neg[minus] or pos[minus]):
            neg, pos = neg.copy(), pos.copy()
            neg[zero] += neg[minus]
            pos[zero] += pos[minus]
            neg[minus] = pos[minus] = 0
        return neg, pos, first

    def edges(self, fine: np.ndarray, first: np.ndarray) -> np.ndarray:
        """Lowest key of each fine bin (positions from ``counts``); that of +0.0's bin is -0.0's, folded in."""
        hi, sub, e = self.describe(fine, first)
        edge = (hi << 16) | (sub << (16 - e))
        minus = self.position(0x7FFFFFFF & self.mask)
        if minus >= 0:
            m_hi, m_sub, m_e = self.describe(np.array([minus]), first)
            edge[edge == 0x80000000] = (m_hi[0] << 16) | (m_sub[0] << (16 - m_e[0]))
        return edge

    def positive_bins(self) -> tuple:
        """Per bin holding positives, in descending key order: position, positives, negatives at it and at or
        above it (int64); then the number of negatives and the block starts. Other bins change no metric."""
        neg, pos, first = self.folded_counts()
        at, count, neg_at, fp, num_neg = positive_bins(neg, pos)
        return at, count, neg_at, fp, int(num_neg), first

    def entries(self) -> tuple:
        """(hi, sub, e, pos, neg) of every nonzero fine bin of the canonical layout, in ascending key order."""
        self.canonicalize()
        return self._entries()

    def _entries(self) -> tuple:
        """(hi, sub, e, pos, neg) of every nonzero fine bin of the current layout as int64 arrays, in key order."""
        self._sort()
        sizes = np.left_shift(1, self.e[self.blocks])
        first = np.cumsum(sizes) - sizes
        neg, pos = self.neg[: self.used], self.pos[: self.used]
        nz = np.flatnonzero(neg | pos)
        return (*self.describe(nz, first), pos[nz].astype(np.int64), neg[nz].astype(np.int64))

    def nbytes(self) -> int:
        """Bytes held by the count arrays (reserved at the budget's size once blocks exist; the OS maps their pages
        as counts arrive) and the level-1 tables."""
        return sum(a.nbytes for a in (self.neg, self.pos, self.neg8, self.e, self.slot, self.fast,
                                       self.blocks))
