"""Compiled (numba) pixel passes of the component metrics: size filters, region of interest, areas and
(ground-truth, prediction) overlaps in three passes over the labelled frame, with no full-frame temporaries."""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, boundscheck=False)
def roi_counts(label, gt, pred, n_gt, n_pred, min_gt, min_pred, ignore):
    """From flat labels and component ids: each component's area within the region of interest (not ignore,
    not a ground-truth component under ``min_gt``, background included), with predictions under ``min_pred``
    pixels removed, and the pair code ``gt * (n_pred + 1) + pred`` of every ROI pixel on both."""
    full_g = np.zeros(n_gt + 1, np.int64)
    full_p = np.zeros(n_pred + 1, np.int64)
    for i in range(gt.size):
        full_g[gt[i]] += 1
        full_p[pred[i]] += 1
    size_g = np.zeros(n_gt + 1, np.int64)
    size_p = np.zeros(n_pred + 1, np.int64)
    both = 0
    for i in range(gt.size):
        g = gt[i]
        if label[i] == ignore or full_g[g] < min_gt:  # the official code voids a background under min_gt too
            continue
        p = pred[i] if full_p[pred[i]] >= min_pred else 0
        size_g[g] += 1
        size_p[p] += 1
        both += (g > 0) & (p > 0)
    codes = np.empty(both, np.int64)
    k = 0
    for i in range(gt.size):
        g = gt[i]
        if label[i] == ignore or full_g[g] < min_gt:
            continue
        p = pred[i] if full_p[pred[i]] >= min_pred else 0
        if g > 0 and p > 0:
            codes[k] = g * (n_pred + 1) + p
            k += 1
    return size_g, size_p, codes
