"""Compiled (numba) per-segment sums of the MetaSeg features: two passes over the segment pixels, none over
the C probability maps as whole images, no per-pixel temporaries beyond three heat values.

Sums run in row-major pixel order in float64, as ``np.bincount`` would add them, so the features equal the
vectorised formulas up to the last bits of ``log``.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .components import NEIGHBOUR_OFFSETS

_DY = np.array([dy for dy, _ in NEIGHBOUR_OFFSETS], np.int64)
_DX = np.array([dx for _, dx in NEIGHBOUR_OFFSETS], np.int64)


@njit(cache=True, nogil=True, boundscheck=False)
def _argmax_at(probs, y, x):
    """First class of maximal probability at (y, x), as ``np.argmax``."""
    best, arg = probs[0, y, x], 0
    for c in range(1, probs.shape[0]):
        v = probs[c, y, x]
        arg = c if v > best else arg
        best = max(best, v)
    return arg


@njit(cache=True, nogil=True, boundscheck=False)
def segment_sums(probs, segments, n, num_pixels):
    """Per segment 0..n (row 0 unused): pixel counts, sums and squared deviations of the heat maps E, D, V over
    all / inner / boundary pixels, row and column sums, class-probability sums and neighbour-class counts.

    ``probs``: (C, H, W) float probabilities; ``segments``: int32 HxW labels (0 = none); ``num_pixels``: the
    number of segment pixels. Returns (counts (n+1, 2): all, boundary; heat (3, n+1, 3, 2): map x segment x
    {all, inner, boundary} x {mean, variance}; position (n+1, 2); cprob (n+1, C); ndist (n+1, C) int64)."""
    num_classes, h, w = probs.shape
    counts = np.zeros((n + 1, 2), np.int64)
    sums = np.zeros((3, n + 1, 3), np.float64)
    position = np.zeros((n + 1, 2), np.float64)
    cprob = np.zeros((n + 1, num_classes), np.float64)
    ndist = np.zeros((n + 1, num_classes), np.int64)
    pred = np.full((h, w), -1, np.int32)  # argmax of outside neighbours, computed once each
    values = np.empty((3, num_pixels), np.float64)
    owner = np.empty(num_pixels, np.int64)
    on_bd = np.empty(num_pixels, np.bool_)
    tiny = np.finfo(np.float64).tiny
    log_c = np.log(num_classes)
    k = 0
    for y in range(h):
        for x in range(w):
            s = segments[y, x]
            if s == 0:
                continue
            if 0 < y < h - 1 and 0 < x < w - 1:  # all 8 neighbours inside: one branch-free test
                bd = ((segments[y - 1, x - 1] != s) | (segments[y - 1, x] != s) | (segments[y - 1, x + 1] != s)
                      | (segments[y, x - 1] != s) | (segments[y, x + 1] != s) | (segments[y + 1, x - 1] != s)
                      | (segments[y + 1, x] != s) | (segments[y + 1, x + 1] != s))
            else:
                bd = True
            if bd:
                bd = False
                for j in range(8):
                    yy, xx = y + _DY[j], x + _DX[j]
                    if 0 <= yy < h and 0 <= xx < w and segments[yy, xx] != s:
                        bd = True
                        if pred[yy, xx] < 0:
                            pred[yy, xx] = _argmax_at(probs, yy, xx)
                        ndist[s, pred[yy, xx]] += 1
            top1 = top2 = -np.inf
            ent = 0.0
            for c in range(num_classes):
                p = probs[c, y, x]
                top2 = max(top2, min(top1, p))
                top1 = max(top1, p)
                pd = np.float64(p)
                ent -= pd * np.log(max(pd, tiny))
                cprob[s, c] += pd
            part = 2 if bd else 1
            values[0, k], values[1, k], values[2, k] = ent / log_c, 1.0 - top1 + top2, 1.0 - top1
            for m in range(3):
                sums[m, s, 0] += values[m, k]
                sums[m, s, part] += values[m, k]
            counts[s, 0] += 1
            counts[s, 1] += bd
            position[s, 0] += y
            position[s, 1] += x
            owner[k], on_bd[k] = s, bd
            k += 1

    sizes = np.empty((n + 1, 3), np.float64)
    sizes[:, 0] = counts[:, 0]
    sizes[:, 1] = counts[:, 0] - counts[:, 1]
    sizes[:, 2] = counts[:, 1]
    heat_stats = np.zeros((3, n + 1, 3, 2), np.float64)
    for m in range(3):
        for s in range(n + 1):
            for part in range(3):
                if sizes[s, part] > 0:
                    heat_stats[m, s, part, 0] = sums[m, s, part] / sizes[s, part]
    for i in range(num_pixels):
        s = owner[i]
        part = 2 if on_bd[i] else 1
        for m in range(3):
            d = values[m, i] - heat_stats[m, s, 0, 0]
            heat_stats[m, s, 0, 1] += d * d
            d = values[m, i] - heat_stats[m, s, part, 0]
            heat_stats[m, s, part, 1] += d * d
    for m in range(3):
        for s in range(n + 1):
            for part in range(3):
                if sizes[s, part] > 0:
                    heat_stats[m, s, part, 1] /= sizes[s, part]
    return counts, heat_stats, position, cprob, ndist
