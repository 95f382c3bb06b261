"""The conventions that keep a state of their own rather than canonical's key histogram: float16 scores
(``float16``), per-image values (``per_image``), meta-ood's 100-bin entropy histogram (``hist100``) and
SegmentMeIfYouCan's per-frame quantile bins (``smiyc768``). Imported (and so registered) by conventions.py."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..labels import IGNORE_LABEL
from ..errors import OodbenchError, ScoreError
from .conventions import CONVENTIONS, NAN, ConventionState, as_float16
from .curves import binned_curve_metrics, roc_points, summarize, trapezoid, trapezoid_ap
from .score_keys import float16_histogram
from .pixel_inputs import finite_scores_by_class

__all__ = ["Float16State", "Hist100State", "PerImageState", "Smiyc768State"]


def _distinct_counts(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact positive and negative counts per distinct score, in descending score order."""
    values, inverse = np.unique(np.concatenate([pos, neg]), return_inverse=True)
    p = np.bincount(inverse[: pos.size], minlength=values.size)[::-1]
    n = np.bincount(inverse[pos.size:], minlength=values.size)[::-1]
    return p, n


@CONVENTIONS.register("float16")
class Float16State(ConventionState):
    name = "float16"
    description = ("scores cast to float16 (as SegmentMeIfYouCan stores them), then canonical; exact via a "
                   "65,536-bin histogram of the float16 bit pattern")

    def __init__(self):
        self._pos = np.zeros(1 << 16, np.int64)
        self._neg = np.zeros(1 << 16, np.int64)

    def update(self, labels: Any, scores: Any, *, ignore_index: int = IGNORE_LABEL) -> None:
        pos, neg = finite_scores_by_class(labels, scores, ignore_index)
        self._pos += float16_histogram(as_float16(pos, "float16"))
        self._neg += float16_histogram(as_float16(neg, "float16"))

    def compute(self) -> dict:
        keys = np.flatnonzero(self._pos | self._neg)[::-1]
        pos, neg = self._pos[keys], self._neg[keys]
        fp = np.cumsum(neg)
        out = summarize(pos, np.cumsum(pos), fp, neg, int(fp[-1]) if fp.size else 0)
        return self._result(**out)

    def _merge(self, other: "Float16State") -> None:
        self._pos += other._pos
        self._neg += other._neg

    def _arrays(self) -> dict[str, np.ndarray]:
        index = np.flatnonzero(self._pos | self._neg)
        return {"index": index, "pos": self._pos[index], "neg": self._neg[index]}

    def _load(self, d: dict) -> None:
        self._pos[d["index"]] = d["pos"]
        self._neg[d["index"]] = d["neg"]


@CONVENTIONS.register("per_image")
class PerImageState(ConventionState):
    name = "per_image"
    description = ("pytorch-ood OODPerImageSegmentationMetrics (0.4): per-image mean of exact AUROC, trapezoid AP "
                   "(auc of the PR curve), FPR at first TPR >= 0.95; frames lacking OoD or ID pixels skipped, counted. "
                   "OODMetrics(mode='segmentation') of pytorch-ood <= 0.3.3 agrees for scores in [0, 1] only (it "
                   "squashes other scores with a float32 sigmoid)")

    def __init__(self):
        self._rows: list[tuple[float, float, float]] = []
        self.num_frames_skipped = 0

    def update(self, labels: Any, scores: Any, *, ignore_index: int = IGNORE_LABEL) -> None:
        """Per-image AUROC, AP and FPR95 from this frame's non-ignored pixels, sorted exactly (any dtype)."""
        pos, neg = finite_scores_by_class(labels, scores, ignore_index)
        if not (pos.size and neg.size):  # pytorch-ood raises on such a frame
            self.num_frames_skipped += 1
            return
        p, n = _distinct_counts(pos, neg)
        tp, fp = np.cumsum(p), np.cumsum(n)
        s = summarize(p, tp, fp, n, neg.size)
        self._rows.append((s["auroc"], trapezoid_ap(tp, fp), s["fpr95"]))

    def compute(self) -> dict:
        rows = np.array(self._rows, np.float64).reshape(-1, 3)
        auroc, ap, fpr95 = rows.mean(axis=0) if rows.size else (NAN, NAN, NAN)
        return self._result(auroc=float(auroc), ap=float(ap), fpr95=float(fpr95),
                            num_frames=len(self._rows) + self.num_frames_skipped,
                            num_frames_skipped=self.num_frames_skipped)

    def _merge(self, other: "PerImageState") -> None:
        self._rows.extend(other._rows)
        self.num_frames_skipped += other.num_frames_skipped

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"rows": np.array(self._rows, np.float64).reshape(-1, 3),
                "num_frames_skipped": np.array(self.num_frames_skipped)}

    def _load(self, d: dict) -> None:
        self._rows = [tuple(r) for r in np.asarray(d["rows"], np.float64).reshape(-1, 3).tolist()]
        self.num_frames_skipped = int(d["num_frames_skipped"])


def _rescaled(counts: np.ndarray, total: float) -> np.ndarray:
    """meta-ood ``counts_array_to_data_list``: counts scaled to ``total`` and truncated to uint32."""
    return (counts / counts.sum() * total).astype(np.uint32).astype(np.int64)


def _descending_nonzero(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bins from the highest score down, empty ones left out (they are no threshold of the curve)."""
    pos, neg = pos[::-1], neg[::-1]
    keep = (pos + neg) > 0
    return pos[keep], neg[keep]


@CONVENTIONS.register("hist100")
class Hist100State(ConventionState):
    """meta-ood's pixel evaluation on its normalized-entropy histogram; scores must lie in [0, 1]. Its FPR95
    is the argmin of |TPR - 0.95| over ``roc_curve`` (dropped points gone), the first of ties."""

    name = "hist100"
    description = ("meta-ood evaluation.py + src/calc.py: 100 uniform bins on [0, 1] (normalized entropy); AUROC and "
                   "FPR at TPR nearest 0.95 on roc_curve of counts scaled to 1e5 per class, AP of counts scaled to 1e7")
    EDGES = np.linspace(0.0, 1.0, 101)

    def __init__(self):
        self._pos = np.zeros(100, np.int64)
        self._neg = np.zeros(100, np.int64)

    def update(self, labels: Any, scores: Any, *, ignore_index: int = IGNORE_LABEL) -> None:
        parts = finite_scores_by_class(labels, scores, ignore_index)
        outside = sum(int(np.count_nonzero((p < 0) | (p > 1))) for p in parts)
        if outside:
            lo, hi = min(float(p.min()) for p in parts if p.size), max(float(p.max()) for p in parts if p.size)
            raise ScoreError(
                f"hist100 bins scores into 100 bins on [0, 1] (meta-ood's normalized entropy), but {outside} "
                f"non-ignored pixel(s) lie outside (range {lo:g} .. {hi:g}): pass normalized entropy "
                "(entropy / log(num_classes)), np.clip(scores, 0, 1) if it is rounding, or use another convention"
            )
        for state, part in zip((self._pos, self._neg), parts):
            # np.histogram's bins: [e_k, e_k+1) compared in float64, the last one closed
            index = np.searchsorted(self.EDGES, part.astype(np.float64, copy=False), side="right") - 1
            state += np.bincount(np.minimum(index, 99), minlength=100)

    def compute(self) -> dict:
        num_pos, num_neg = int(self._pos.sum()), int(self._neg.sum())
        auroc = ap = fpr95 = NAN
        if num_pos and num_neg:
            pos, neg = _descending_nonzero(_rescaled(self._pos, 1e5), _rescaled(self._neg, 1e5))
            fpr, tpr = roc_points(np.cumsum(pos), np.cumsum(neg), drop_intermediate=True)
            auroc = trapezoid(fpr, tpr)
            fpr95 = float(fpr[np.argmin(np.abs(tpr - 0.95))])
            ratio_neg = num_neg / (num_neg + num_pos)
            pos, neg = _descending_nonzero(_rescaled(self._pos, 1e7 * (1 - ratio_neg)),
                                           _rescaled(self._neg, 1e7 * ratio_neg))
            fp = np.cumsum(neg)
            if pos.sum():
                ap = summarize(pos, np.cumsum(pos), fp, neg, int(fp[-1]))["ap"]
        elif num_pos:
            ap = 1.0
        return self._result(auroc=auroc, ap=ap, fpr95=fpr95, num_pos=num_pos, num_neg=num_neg)

    def _merge(self, other: "Hist100State") -> None:
        self._pos += other._pos
        self._neg += other._neg

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"pos": self._pos.copy(), "neg": self._neg.copy()}

    def _load(self, d: dict) -> None:
        self._pos[:] = d["pos"]
        self._neg[:] = d["neg"]


@CONVENTIONS.register("smiyc768")
class Smiyc768State(ConventionState):
    """SegmentMeIfYouCan's ``PixBinaryClass`` metric: each frame's scores (float16, as the benchmark stores
    them) binned at 384 quantiles of its OoD and 384 of its in-distribution scores plus two outer edges; the
    frames' bins pooled by sorting their lower edges, as ``aggregate_dynamic_bins`` and
    ``curves_from_cmats`` do. Keeps <= 770 (edge, tp, fp) per frame, like the reference; no pixels.

    ``outer_edges="range"`` (the reference's current rule): ``vmin - eps`` and ``vmax + eps`` of the frame's
    scores, ``eps = max(0.01 * (vmax - vmin), 0.01)``, so the top score has a bin of its own whatever the score
    range (max logit, energy); ``"unit"``: 0 and 1, as the reference did before, which ties the top scores of
    maps beyond [0, 1] with the quantile below them."""

    name = "smiyc768"
    description = ("SegmentMeIfYouCan road_anomaly_benchmark PixBinaryClass since Aug 2023: float16 scores, 768 "
                   "per-frame quantile bins pooled; step-sum AP, trapezoid AUROC, FPR at first TPR >= 0.95")
    _SETTINGS = ("store_float16", "outer_edges")
    NUM_BINS = 768

    def __init__(self, store_float16: bool = True, outer_edges: str = "range"):
        if outer_edges not in ("range", "unit"):
            raise ValueError(f"outer_edges={outer_edges!r}: use 'range' (vmin - eps, vmax + eps; the reference "
                             "today) or 'unit' (0 and 1; the reference before)")
        self.store_float16 = bool(store_float16)
        self.outer_edges = outer_edges
        self._edges: list[np.ndarray] = []
        self._tp: list[np.ndarray] = []
        self._fp: list[np.ndarray] = []
        self.num_pos = self.num_neg = self.num_frames = 0

    def update(self, labels: Any, scores: Any, *, ignore_index: int = IGNORE_LABEL) -> None:
        """Bin one frame as ``binary_confusion_matrix(bin_strategy='percentiles', num_bins=768)`` does."""
        parts = finite_scores_by_class(labels, scores, ignore_index)
        if self.store_float16:
            parts = tuple(as_float16(p, "smiyc768 (store_float16=True)") for p in parts)
        pos, neg = parts
        edges = [self._outer(pos, neg)]
        for part in parts:
            if part.size:
                edges.append(np.quantile(part, np.linspace(0, 1, min(self.NUM_BINS // 2, part.size))))
        edges = np.unique(np.concatenate(edges))
        # descending: each bin's lower edge is its threshold, the top edge is no threshold
        self._edges.append(edges[::-1][1:])
        self._tp.append(np.histogram(pos, bins=edges)[0][::-1])
        self._fp.append(np.histogram(neg, bins=edges)[0][::-1])
        self.num_pos += pos.size
        self.num_neg += neg.size
        self.num_frames += 1

    def _outer(self, pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
        if self.outer_edges == "unit" or not (pos.size or neg.size):
            return np.array([0.0, 1.0])
        vmin = float(min(p.min() for p in (pos, neg) if p.size))
        vmax = float(max(p.max() for p in (pos, neg) if p.size))
        eps = max(0.01 * (vmax - vmin), 0.01)
        return np.array([vmin - eps, vmax + eps])

    def _curve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(every frame's thresholds, descending; cumulative tp and fp of the reference's curve), the curve being
        ``curves_from_cmats``': the last entry of each threshold plus the first entry, kept even when other
        frames share it, then a (0, 0) start and the (num_pos, num_neg) end where missing."""
        thresholds = np.concatenate(self._edges)
        order = np.argsort(thresholds)[::-1]  # the reference's sort; ties between frames in its order
        thresholds = thresholds[order]
        tp = np.cumsum(np.concatenate(self._tp)[order].astype(np.float64))
        fp = np.cumsum(np.concatenate(self._fp)[order].astype(np.float64))
        keep = np.concatenate([[0], np.flatnonzero(thresholds[:-1] != thresholds[1:]), [thresholds.size - 1]])
        tp, fp = tp[keep], fp[keep]
        num_pos, num_neg = float(self.num_pos), float(self.num_neg)
        if tp[0] != 0 or fp[0] != 0:
            tp, fp = np.r_[0.0, tp], np.r_[0.0, fp]
        if tp[-1] != num_pos or fp[-1] != num_neg:
            tp, fp = np.r_[tp, num_pos], np.r_[fp, num_neg]
        return thresholds, tp, fp

    def code_best_f1_threshold(self) -> tuple[float, float]:
        """(threshold, F1) as the reference's ``best_f1_threshold`` and ``best_f1``, which its ``SegEval`` uses
        for components (``score > threshold``): the best F1 of the curve above, whose position indexes the
        thresholds of every frame before repeats were collapsed, so with repeats it lands above the true best-F1
        threshold; the F1 is the curve point's (what the reference reports), not that of the threshold returned.
        (NaN, NaN) without OoD pixels."""
        if not self.num_pos:
            return NAN, NAN
        thresholds, tp, fp = self._curve()
        f1 = 2 * tp / (2 * tp + fp + (self.num_pos - tp))
        ix = int(np.nanargmax(f1))
        if ix >= thresholds.size:  # where the reference's own indexing fails
            raise OodbenchError(f"smiyc768: the best F1 sits at curve point {ix}, past the {thresholds.size} "
                                "thresholds the reference would index; use the oracle threshold (best_f1)")
        return float(thresholds[ix]), float(f1[ix])

    def compute(self) -> dict:
        tp, fp = self._curve()[1:] if self.num_pos else (None, None)
        values = binned_curve_metrics(tp, fp, self.num_pos, self.num_neg)
        return self._result(**values, num_pos=self.num_pos, num_neg=self.num_neg, num_frames=self.num_frames)

    def _merge(self, other: "Smiyc768State") -> None:
        self._edges += other._edges
        self._tp += other._tp
        self._fp += other._fp
        self.num_pos += other.num_pos
        self.num_neg += other.num_neg
        self.num_frames += other.num_frames

    def _arrays(self) -> dict[str, np.ndarray]:
        cat = lambda parts, dtype: np.concatenate(parts) if parts else np.zeros(0, dtype)  # noqa: E731
        return {"thresholds": cat(self._edges, np.float64), "tp": cat(self._tp, np.int64),
                "fp": cat(self._fp, np.int64), "num_pos": np.array(self.num_pos), "num_neg": np.array(self.num_neg),
                "num_frames": np.array(self.num_frames)}

    def _load(self, d: dict) -> None:
        self._edges, self._tp, self._fp = [np.asarray(d["thresholds"])], [np.asarray(d["tp"])], [np.asarray(d["fp"])]
        self.num_pos, self.num_neg, self.num_frames = int(d["num_pos"]), int(d["num_neg"]), int(d["num_frames"])
