"""The MetaSeg per-segment features of meta-ood (75 for 19 classes), computed with bincounts.

Segments are the 8-connected components of {normalized entropy >= threshold} minus ignore
pixels. Semantics follow meta-ood ``src/metaseg/metrics.pyx`` (``compute_metrics_components``):
boundary = a segment pixel with an in-image 8-neighbour outside the segment; variances are
population variances; an empty inner part gives inner mean/variance 0; neighbourhood shares count
each (segment pixel, outside in-image neighbour) pair once, with the neighbour's argmax class
(ignore pixels included), divided by max(#pairs, 1). Deviations from the paper code: every sum
is accumulated in float64 (the paper's float32 sums are a known bug), variances are two-pass, and
ratios with S_bd = 0 (a segment covering the whole image, a ZeroDivisionError there) are 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ScoreError
from .components import HALF_OFFSETS, NEIGHBOUR_OFFSETS, boundary_mask, label_components, pair_slices

__all__ = ["SegmentFeatures", "segment_features", "feature_names", "normalized_entropy",
           "paper_feature_order", "HEATMAPS", "STAT_SUFFIXES"]

HEATMAPS = ("E", "D", "V")  # normalized entropy, probability margin 1-p1+p2, variation ratio 1-p1
STAT_SUFFIXES = ("", "_in", "_bd", "_rel", "_rel_in", "_var", "_var_in", "_var_bd", "_var_rel",
                 "_var_rel_in")
SIZE_NAMES = ("S", "S_in", "S_bd", "S_rel", "S_rel_in")
LOCATION_NAMES = ("mean_x", "mean_y")  # MetaSeg names: x = row, y = column


@dataclass
class SegmentFeatures:
    """Segment map (int32 HxW, 0 = none, 1..n) and the (n, F) float64 feature matrix with names."""

    segments: np.ndarray
    features: np.ndarray
    names: list[str]

    @property
    def n(self) -> int:
        return int(self.features.shape[0])


def feature_names(num_classes: int = 19) -> list[str]:
    """Feature names in column order, MetaSeg keys: E/D/V stats, sizes, location, cprob*, ndist*."""
    names = [h + s for h in HEATMAPS for s in STAT_SUFFIXES]
    names += list(SIZE_NAMES) + list(LOCATION_NAMES)
    names += [f"cprob{c}" for c in range(num_classes)] + [f"ndist{c}" for c in range(num_classes)]
    return names


def paper_feature_order(names: list[str]) -> np.ndarray:
    """Column permutation into the paper code's order (``sorted`` keys, ``helper.metrics_to_dataset``)."""
    return np.array(sorted(range(len(names)), key=lambda i: names[i]), dtype=np.intp)


def normalized_entropy(probs: np.ndarray) -> np.ndarray:
    """Softmax entropy / log(C), float64 HxW; 0 log 0 = 0. The log runs in the input precision
    (float32 logs are ~2.5x faster; error ~1e-7, used only for thresholding), sums in float64."""
    work = np.float64 if probs.dtype == np.float64 else np.float32
    tiny = np.finfo(work).tiny
    acc = np.zeros(probs.shape[1:], dtype=np.float64)
    buf = np.empty(probs.shape[1:], dtype=work)
    for p in probs:
        p = np.asarray(p, dtype=work)
        np.maximum(p, tiny, out=buf)  # p = 0 contributes 0 * log(tiny) = 0
        np.log(buf, out=buf)
        buf *= p
        acc -= buf
    acc /= np.log(probs.shape[0])
    return acc


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _check(probs: np.ndarray, ignore: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs)
    if probs.ndim != 3 or probs.shape[0] < 2:
        raise ScoreError(f"probs must be (C, H, W) softmax probabilities with C >= 2, got {probs.shape}")
    if not np.issubdtype(probs.dtype, np.floating):
        probs = probs.astype(np.float32)
    if ignore is None:
        ignore = np.zeros(probs.shape[1:], dtype=bool)
    ignore = np.asarray(ignore, dtype=bool)
    if ignore.shape != probs.shape[1:]:
        raise ScoreError(f"ignore mask shape {ignore.shape} does not match probs {probs.shape[1:]}")
    return probs, ignore


def _stats(x: np.ndarray, s: np.ndarray, is_bd: np.ndarray, s_b: np.ndarray, s_i: np.ndarray,
           counts: tuple, nb: int) -> list:
    """The 10 MetaSeg statistics of one pixel map x over segment ids s (float64 bincounts)."""
    size, s_in_n, s_bd_n, s_rel, s_rel_in = counts
    x_b, x_i = x[is_bd], x[~is_bd]
    mean = _safe_div(np.bincount(s, weights=x, minlength=nb), size)
    mean_in = _safe_div(np.bincount(s_i, weights=x_i, minlength=nb), s_in_n)
    mean_bd = _safe_div(np.bincount(s_b, weights=x_b, minlength=nb), s_bd_n)
    var = _safe_div(np.bincount(s, weights=(x - mean[s]) ** 2, minlength=nb), size)
    var_in = _safe_div(np.bincount(s_i, weights=(x_i - mean_in[s_i]) ** 2, minlength=nb), s_in_n)
    var_bd = _safe_div(np.bincount(s_b, weights=(x_b - mean_bd[s_b]) ** 2, minlength=nb), s_bd_n)
    return [mean, mean_in, mean_bd, mean * s_rel, mean_in * s_rel_in,
            var, var_in, var_bd, var * s_rel, var_in * s_rel_in]


def segment_features(probs: np.ndarray, ignore: np.ndarray | None = None, threshold: float = 0.7,
                     *, segment_score: np.ndarray | None = None) -> SegmentFeatures:
    """Segments of {score >= threshold} \\ ignore and their MetaSeg features.

    ``probs``: softmax (C, H, W); ``ignore``: bool HxW; ``segment_score``: the HxW map whose
    threshold forms the segments, by default the normalized entropy (the paper); pass it to segment
    another score or to save one full-image pass over the C maps. The E features are always
    recomputed from ``probs`` in float64. Returns
    ``SegmentFeatures`` with features of shape (n, 37 + 2C) (75 for C = 19), NaN-free.
    """
    probs, ignore = _check(probs, ignore)
    num_classes, h, w = probs.shape
    ent = normalized_entropy(probs) if segment_score is None else np.asarray(segment_score, dtype=np.float64)
    if ent.shape != (h, w):
        raise ScoreError(f"segment score map shape {ent.shape} does not match probs {(h, w)}")
    if not np.isfinite(ent).all():
        raise ScoreError("the segment score map is not finite: NaN/inf scores or negative probabilities")
    ent = np.where(ignore, 0.0, ent)
    segments, n = label_components((ent >= threshold) & ~ignore)
    names = feature_names(num_classes)
    if n == 0:
        return SegmentFeatures(segments, np.zeros((0, len(names)), dtype=np.float64), names)
    nb = n + 1

    flat_seg = segments.ravel()
    idx = np.flatnonzero(flat_seg)  # segment pixels, row-major
    s = flat_seg[idx].astype(np.intp)
    is_bd = boundary_mask(segments).ravel()[idx]

    s_b, s_i = s[is_bd], s[~is_bd]
    size = np.bincount(s, minlength=nb).astype(np.float64)
    s_bd_n = np.bincount(s_b, minlength=nb).astype(np.float64)
    s_in_n = size - s_bd_n
    s_rel, s_rel_in = _safe_div(size, s_bd_n), _safe_div(s_in_n, s_bd_n)
    counts = (size, s_in_n, s_bd_n, s_rel, s_rel_in)

    # class probabilities at segment pixels -> top-2 (exact in input precision; ties give p2 = p1)
    gathered = np.take(probs.reshape(num_classes, -1), idx, axis=1)
    top1 = np.full(idx.size, -np.inf, dtype=gathered.dtype)
    top2 = top1.copy()
    cprob = []
    ent_seg = np.zeros(idx.size)  # E at segment pixels again, log in float64 for the features
    for p in gathered:
        np.maximum(top2, np.minimum(top1, p), out=top2)
        np.maximum(top1, p, out=top1)
        p = p.astype(np.float64)
        ent_seg -= p * np.log(np.maximum(p, np.finfo(np.float64).tiny))
        cprob.append(_safe_div(np.bincount(s, weights=p, minlength=nb), size))
    del gathered
    ent_seg /= np.log(num_classes)
    top1, top2 = top1.astype(np.float64), top2.astype(np.float64)

    columns: list[np.ndarray] = []
    for x in (ent_seg, 1.0 - top1 + top2, 1.0 - top1):
        columns += _stats(x, s, is_bd, s_b, s_i, counts, nb)
    columns += list(counts)
    rows, cols = np.divmod(idx, w)
    columns += [_safe_div(np.bincount(s, weights=rows.astype(np.float64), minlength=nb), size),
                _safe_div(np.bincount(s, weights=cols.astype(np.float64), minlength=nb), size)]
    columns += cprob
    columns += _neighbour_shares(probs, segments, idx[is_bd], s_b, nb)

    features = np.stack(columns, axis=1)[1:]
    if not np.isfinite(features).all():
        raise ScoreError("probs hold NaN/inf values inside an OoD segment")
    return SegmentFeatures(segments, np.ascontiguousarray(features), names)


def _neighbour_shares(probs, segments, bd_idx, bd_s, nb) -> list[np.ndarray]:
    """Per segment, share of each argmax class among (boundary pixel, outside neighbour) pairs."""
    num_classes, h, w = probs.shape
    flat_seg = segments.ravel()
    # argmax once per pixel that neighbours a segment from outside (the 1-pixel outer ring)
    ring = np.zeros((h, w), dtype=bool)
    for dy, dx in HALF_OFFSETS:
        src, dst = pair_slices(dy, dx, (h, w))
        ne = segments[src] != segments[dst]
        ring[src] |= ne & (segments[dst] > 0)
        ring[dst] |= ne & (segments[src] > 0)
    ring_idx = np.flatnonzero(ring)
    ring_p = np.take(probs.reshape(num_classes, -1), ring_idx, axis=1)
    best, arg = ring_p[0].copy(), np.zeros(ring_idx.size, dtype=np.intp)
    for c in range(1, num_classes):  # first maximum wins, as np.argmax
        better = ring_p[c] > best
        arg[better] = c
        np.maximum(best, ring_p[c], out=best)
    pred = np.zeros(h * w, dtype=np.intp)
    pred[ring_idx] = arg

    r, c = np.divmod(bd_idx, w)
    codes = []
    for dy, dx in NEIGHBOUR_OFFSETS:
        nr, nc = r + dy, c + dx
        ok = (nr >= 0) & (nr < h) & (nc >= 0) & (nc < w)
        q = nr[ok] * w + nc[ok]
        own = bd_s[ok]
        out = flat_seg[q] != own
        codes.append(own[out] * num_classes + pred[q[out]])
    hist = np.bincount(np.concatenate(codes), minlength=nb * num_classes).reshape(nb, num_classes)
    total = np.maximum(hist.sum(axis=1, keepdims=True), 1).astype(np.float64)
    shares = hist / total
    return [shares[:, k] for k in range(num_classes)]
