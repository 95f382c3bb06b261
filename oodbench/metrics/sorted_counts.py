"""The exact counts behind ``pixel_metrics``: labelled scores split by class in one compiled pass on two threads, the
negatives sorted in two halves at once, and per distinct positive score the negatives at and above it counted by
walking the sorted arrays (no ``searchsorted`` over millions of scores)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit, prange

from ..labels import ID_LABEL, OOD_LABEL
from .pixel_inputs import _check_labels, _flat_pair, raise_nonfinite

PARTS = 2


@njit(parallel=True, cache=True, nogil=True, boundscheck=False)
def _class_counts(labels, scores, ignore, counts):
    """Per part of the pixels: (positives, negatives, other labels, sum of labelled scores) into ``counts``."""
    n = labels.size
    for part in prange(PARTS):
        pos = neg = bad = 0
        total = 0.0
        for i in range(part * n // PARTS, (part + 1) * n // PARTS):
            lab = labels[i]
            if lab == OOD_LABEL:
                pos += 1
                total += scores[i]
            elif lab == ID_LABEL:
                neg += 1
                total += scores[i]
            elif lab != ignore:
                bad += 1
        counts[part, 0], counts[part, 1], counts[part, 2], counts[part, 3] = pos, neg, bad, total


@njit(parallel=True, cache=True, nogil=True, boundscheck=False)
def _split(labels, scores, starts, pos, neg):
    """Scores of positives and negatives, each part writing from its ``starts`` (pos, neg) offsets."""
    n = labels.size
    for part in prange(PARTS):
        p, q = starts[part, 0], starts[part, 1]
        for i in range(part * n // PARTS, (part + 1) * n // PARTS):
            lab = labels[i]
            if lab == OOD_LABEL:
                pos[p] = scores[i]
                p += 1
            elif lab == ID_LABEL:
                neg[q] = scores[i]
                q += 1


@njit(cache=True, nogil=True, boundscheck=False)
def _at_and_above(neg, values, out_above, out_at):
    """Add, for each of the ascending ``values``, the sorted ``neg`` scores >= it and == it."""
    j = 0
    for k in range(values.size):
        v = values[k]
        while j < neg.size and neg[j] < v:
            j += 1
        e = j
        while e < neg.size and neg[e] == v:
            e += 1
        out_above[k] += neg.size - j
        out_at[k] += e - j


def scores_by_class(labels, scores, ignore_index: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores of the positive and negative pixels (float32 or float64), with LabelError / ScoreError as the other
    metric inputs raise them."""
    flat_l, flat_s = _flat_pair(labels, scores)
    if not np.issubdtype(flat_s.dtype, np.floating) or flat_s.dtype == np.float16:
        flat_s = flat_s.astype(np.float32 if flat_s.dtype == np.float16 else np.float64)
    flat_l, flat_s = np.ascontiguousarray(flat_l), np.ascontiguousarray(flat_s)
    if flat_l.dtype.kind not in "iu":
        _check_labels(flat_l, ignore_index)
        flat_l = flat_l.astype(np.int64)
    counts = np.zeros((PARTS, 4))
    with np.errstate(over="ignore", invalid="ignore"):
        _class_counts(flat_l, flat_s, ignore_index, counts)
    if counts[:, 2].any():
        _check_labels(flat_l, ignore_index)
    if not np.isfinite(counts[:, 3]).all() and not np.isfinite(flat_s[flat_l != ignore_index]).all():
        raise_nonfinite(labels, scores, ignore_index, float32=False)
    sizes = counts[:, :2].astype(np.int64)
    starts = np.cumsum(sizes, axis=0) - sizes
    pos, neg = np.empty(int(sizes[:, 0].sum()), flat_s.dtype), np.empty(int(sizes[:, 1].sum()), flat_s.dtype)
    _split(flat_l, flat_s, starts, pos, neg)
    return pos, neg


def exact_counts(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per distinct positive score, descending: (positives at it, negatives at or above it, negatives at it)."""
    pos = np.sort(pos)
    halves = np.array_split(neg, PARTS)
    with ThreadPoolExecutor(PARTS) as pool:  # np.sort releases the GIL
        halves = list(pool.map(np.sort, halves))
    starts = np.flatnonzero(np.r_[True, pos[1:] != pos[:-1]])
    values = pos[starts]
    count = np.diff(np.r_[starts, pos.size])
    above, at = np.zeros(values.size, np.int64), np.zeros(values.size, np.int64)
    for half in halves:
        _at_and_above(half, values, above, at)
    return count[::-1], above[::-1], at[::-1]
