"""The MetaSeg per-segment features of meta-ood (75 for 19 classes), summed by a compiled pass over the segments.

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
from .components import label_components
from .feature_kernels import segment_sums

__all__ = ["SegmentFeatures", "segment_features", "feature_names", "form_segments", "normalized_entropy",
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


def normalized_entropy(probs: np.ndarray, block: int = 1 << 15) -> np.ndarray:
    """Softmax entropy / log(C), float64 HxW; 0 log 0 = 0. The log runs in the input precision
    (float32 logs are ~2.5x faster; error ~1e-7, used only for thresholding), sums in float64.
    Pixels go in blocks of ``block``, so that the per-class passes stay in the CPU cache."""
    work = np.float64 if probs.dtype == np.float64 else np.float32
    tiny = np.finfo(work).tiny
    flat = probs.reshape(probs.shape[0], -1)
    out = np.empty(flat.shape[1], dtype=np.float64)
    buf = np.empty(min(block, flat.shape[1]), dtype=work)
    for lo in range(0, flat.shape[1], block):
        acc, tmp = out[lo:lo + block], buf[:min(block, flat.shape[1] - lo)]
        acc[:] = 0.0
        for p in flat[:, lo:lo + block]:
            p = np.asarray(p, dtype=work)
            np.maximum(p, tiny, out=tmp)  # p = 0 contributes 0 * log(tiny) = 0
            np.log(tmp, out=tmp)
            tmp *= p
            acc -= tmp
    out /= np.log(probs.shape[0])
    return out.reshape(probs.shape[1:])


def form_segments(score: np.ndarray, ignore: np.ndarray, threshold: float) -> tuple[np.ndarray, int]:
    """The segments: 8-connected components of ``score >= threshold`` (compared in float64) off ignore pixels."""
    return label_components((np.asarray(score).astype(np.float64, copy=False) >= threshold) & ~ignore)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _check(probs: np.ndarray, ignore: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs)
    if probs.ndim != 3 or probs.shape[0] < 2:
        raise ScoreError(f"probs must be (C, H, W) softmax probabilities with C >= 2, got {probs.shape}")
    if probs.dtype not in (np.float32, np.float64):
        probs = probs.astype(np.float32)
    if ignore is None:
        ignore = np.zeros(probs.shape[1:], dtype=bool)
    ignore = np.asarray(ignore, dtype=bool)
    if ignore.shape != probs.shape[1:]:
        raise ScoreError(f"ignore mask shape {ignore.shape} does not match probs {probs.shape[1:]}")
    return probs, ignore


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
    ent = normalized_entropy(probs) if segment_score is None else np.asarray(segment_score)
    if ent.shape != (h, w):
        raise ScoreError(f"segment score map shape {ent.shape} does not match probs {(h, w)}")
    if not np.isfinite(ent).all():
        raise ScoreError("the segment score map is not finite: NaN/inf scores or negative probabilities")
    segments, n = form_segments(ent, ignore, threshold)
    names = feature_names(num_classes)
    if n == 0:
        return SegmentFeatures(segments, np.zeros((0, len(names)), dtype=np.float64), names)
    counts, heat, position, cprob, ndist = segment_sums(probs, segments, n, int(np.count_nonzero(segments)))
    size, s_bd_n = counts[:, 0].astype(np.float64), counts[:, 1].astype(np.float64)
    s_in_n = size - s_bd_n
    s_rel, s_rel_in = _safe_div(size, s_bd_n), _safe_div(s_in_n, s_bd_n)
    columns: list[np.ndarray] = []
    for m in range(len(HEATMAPS)):
        (mean, mean_in, mean_bd), (var, var_in, var_bd) = heat[m, :, :, 0].T, heat[m, :, :, 1].T
        columns += [mean, mean_in, mean_bd, mean * s_rel, mean_in * s_rel_in,
                    var, var_in, var_bd, var * s_rel, var_in * s_rel_in]
    columns += [size, s_in_n, s_bd_n, s_rel, s_rel_in]
    columns += list(_safe_div(position, size[:, None]).T)
    columns += list(_safe_div(cprob, size[:, None]).T)
    columns += list((ndist / np.maximum(ndist.sum(axis=1, keepdims=True), 1)).T)
    features = np.stack(columns, axis=1)[1:]
    if not np.isfinite(features).all():
        raise ScoreError("probs hold NaN/inf values inside an OoD segment")
    return SegmentFeatures(segments, np.ascontiguousarray(features), names)
