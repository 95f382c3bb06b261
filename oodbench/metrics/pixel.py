"""Pooled pixel-level OoD metrics (AUROC, AP, FPR95): a mergeable histogram state and an exact function.

Conventions (DESIGN.md): labels 0 = in-distribution, 1 = OoD (the positive class), 255 = ignore;
higher score = more OoD; metrics are pooled over every non-ignored pixel. AP is scikit-learn's
``average_precision_score`` (step sum), AUROC the trapezoid area under the ROC curve, FPR95 the FPR at
the first threshold (descending, tied scores form one threshold) whose TPR >= 0.95.

Undefined values are NaN: AP without positives; AUROC and FPR95 without positives or without
negatives. AP with positives but no negatives is 1.0, as in scikit-learn.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..data.base import ID_LABEL, IGNORE_LABEL, OOD_LABEL
from ..errors import LabelError, ScoreError

__all__ = ["PixelMetricState", "pixel_metrics"]

_SIGN = np.uint32(0x80000000)
_NEG_FINITE_KEY = 0x00800000  # keys below it: -inf and negative NaNs
_POS_NONFINITE_KEY = 0xFF800000  # keys from it up: +inf and positive NaNs


def _monotone_keys(x: np.ndarray, shift: int) -> np.ndarray:
    """float32 -> top ``32 - shift`` bits of a uint key whose order is the float order (as intp)."""
    bits = x.view(np.uint32)
    key = (x.view(np.int32) >> 31).view(np.uint32)  # all ones for negatives, zero otherwise
    key |= _SIGN
    key ^= bits  # negatives: every bit flipped; non-negatives: sign bit set
    key >>= np.uint32(shift)
    return key.astype(np.intp)


def _float_of_key(key: int) -> float:
    """Inverse of the untruncated monotone key."""
    bits = key ^ 0x80000000 if key >= 0x80000000 else ~key & 0xFFFFFFFF
    return float(np.array([bits], dtype=np.uint32).view(np.float32)[0])


def _split(labels: Any, scores: Any, ignore_index: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate one labelled score map and return the scores of its positive and negative pixels."""
    labels, scores = np.asarray(labels), np.asarray(scores)
    if labels.shape != scores.shape:
        raise ScoreError(
            f"labels shape {labels.shape} != scores shape {scores.shape}: compute the score map at "
            "label resolution (resize the scores, never the labels)"
        )
    flat_l, flat_s = labels.reshape(-1), scores.reshape(-1)
    is_pos, is_neg = flat_l == OOD_LABEL, flat_l == ID_LABEL
    n_pos, n_neg = int(np.count_nonzero(is_pos)), int(np.count_nonzero(is_neg))
    if n_pos + n_neg + int(np.count_nonzero(flat_l == ignore_index)) != flat_l.size:
        bad = ~(is_pos | is_neg | (flat_l == ignore_index))
        values = np.unique(flat_l[bad])
        raise LabelError(
            f"labels hold {int(np.count_nonzero(bad))} pixel(s) with values {values[:10].tolist()}"
            f"{' ...' if values.size > 10 else ''}; expected {ID_LABEL} (in-distribution), {OOD_LABEL} "
            f"(OoD) or {ignore_index} (ignore): map the dataset's labels to this encoding first"
        )
    if not np.issubdtype(flat_s.dtype, np.floating):
        flat_s = flat_s.astype(np.float64)
    elif flat_s.dtype == np.float16:
        flat_s = flat_s.astype(np.float32)
    return flat_s[is_pos], flat_s[is_neg]


def _raise_nonfinite(labels: Any, scores: Any, ignore_index: int, float32: bool) -> None:
    """Slow path, only on error: count and locate the offending pixels."""
    labels, scores = np.asarray(labels), np.asarray(scores)
    with np.errstate(over="ignore"):
        cast = scores.astype(np.float32) if float32 else scores
    bad = ~np.isfinite(cast) & (labels != ignore_index)
    what = "NaN/inf (or beyond float32 range)" if float32 else "NaN/inf"
    first = np.unravel_index(int(np.flatnonzero(bad.reshape(-1))[0]), bad.shape)
    raise ScoreError(
        f"{int(np.count_nonzero(bad))} non-ignored pixel(s) have {what} scores, the first at index "
        f"{tuple(int(i) for i in first)} (value {scores[first]}): fix the score function, or replace "
        f"them (np.nan_to_num) or set those pixels' labels to ignore ({ignore_index})"
    )


def _summarize(pos: np.ndarray, tp: np.ndarray, fp: np.ndarray, neg_at: np.ndarray, num_neg: int) -> dict:
    """Metrics from per-threshold counts in descending score order: positives at the threshold,
    positives >= it, negatives >= it, negatives at it (thresholds without positives may be left out)."""
    num_pos = int(tp[-1]) if tp.size else 0
    out = {"auroc": float("nan"), "ap": float("nan"), "fpr95": float("nan"),
           "num_pos": num_pos, "num_neg": int(num_neg)}
    if num_pos == 0:
        return out
    pos_f, tp_f, fp_f = pos.astype(np.float64), tp.astype(np.float64), fp.astype(np.float64)
    out["ap"] = float((pos_f * (tp_f / (tp_f + fp_f))).sum() / num_pos)  # not np.dot: BLAS is slow here
    if num_neg == 0:
        return out
    # Trapezoid AUROC = P(score_pos > score_neg) + P(tie) / 2 (Mann-Whitney).
    below = num_neg - fp_f + 0.5 * neg_at.astype(np.float64)
    out["auroc"] = float((pos_f * below).sum() / (float(num_pos) * num_neg))
    out["fpr95"] = float(fp_f[_first_reaching(tp_f, num_pos, 0.95)] / num_neg)
    return out


def _first_reaching(tp: np.ndarray, num_pos: int, tpr: float) -> int:
    """Index of the first threshold whose TPR (computed as scikit-learn does) is >= tpr."""
    return int(np.argmax(tp / num_pos >= tpr))


class PixelMetricState:
    """Mergeable pooled state: positive and negative pixel counts per bin of the monotone float32 key.

    The key maps float32 bits to an unsigned int in float order, truncated to its top ``bits`` bits,
    so the state (2 x 2**bits int64; 16 MiB at bits=20) does not grow with the pixel count. Scores
    sharing a bin become ties: float16 scores are exact for bits >= 19. float32 scores keep 11
    mantissa bits at bits=20 (relative step 2**-11); on realistic maps AP and FPR95 then deviate
    from exact by up to ~1e-3 and AUROC by ~5e-6 (worst for probabilities near 1; each 2 more bits
    cut that ~4x). Scores squeezed into a narrow band (e.g. all in [0.90, 0.91]) lose far more: use
    ``pixel_metrics(exact=True)`` or a larger ``bits`` where that matters.
    """

    def __init__(self, bits: int = 20):
        if not 9 <= bits <= 24:
            raise ValueError(f"bits={bits}: use 9..24 (19 keeps float16 scores exact; 20 is the default)")
        self.bits = bits
        self._shift = 32 - bits
        self._pos = np.zeros(1 << bits, dtype=np.int64)
        self._neg = np.zeros(1 << bits, dtype=np.int64)

    def update(self, labels: Any, scores: Any, *, ignore_index: int = IGNORE_LABEL) -> None:
        """Add one image (any shape; labels in {0, 1, ignore_index}; scores cast to float32)."""
        lo, hi = _NEG_FINITE_KEY >> self._shift, _POS_NONFINITE_KEY >> self._shift
        hists = []
        for part in _split(labels, scores, ignore_index):
            with np.errstate(over="ignore"):  # overflow to inf is reported below
                part = part.astype(np.float32, copy=False)
            hist = np.bincount(_monotone_keys(part, self._shift))
            if hist[:lo].any() or hist[hi:].any():
                _raise_nonfinite(labels, scores, ignore_index, float32=True)
            hists.append(hist)
        zero_neg = 0x7FFFFFFF >> self._shift  # the bin of -0.0: fold it into +0.0's bin, they are equal
        for state, hist in zip((self._pos, self._neg), hists):
            state[: hist.size] += hist
            state[zero_neg + 1] += state[zero_neg]
            state[zero_neg] = 0

    def merge(self, other: "PixelMetricState") -> "PixelMetricState":
        """Add another state (another image set, shard or process) in place; return self."""
        if not isinstance(other, PixelMetricState) or other.bits != self.bits:
            raise ValueError(f"cannot merge {other!r} into a PixelMetricState with bits={self.bits}")
        self._pos += other._pos
        self._neg += other._neg
        return self

    def _descending(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        bins = np.flatnonzero(self._pos | self._neg)[::-1]
        return bins, self._pos[bins], self._neg[bins]

    def compute(self) -> dict:
        """auroc, ap, fpr95 (floats, NaN when undefined) and num_pos, num_neg (ints)."""
        _, pos, neg = self._descending()
        fp = np.cumsum(neg)
        return _summarize(pos, np.cumsum(pos), fp, neg, int(fp[-1]) if fp.size else 0)

    def threshold_at_tpr(self, tpr: float) -> float:
        """Score threshold t of the first bin (scanning down) whose TPR reaches ``tpr``: its lower edge, so
        ``score >= t`` on the float32 scores selects exactly that bin and those above. NaN without
        positives. The bin of zero also holds -0.0 and tiny negatives, so its edge is just below 0."""
        if not 0.0 < tpr <= 1.0:
            raise ValueError(f"tpr={tpr}: use a rate in (0, 1]")
        bins, pos, _ = self._descending()
        tp = np.cumsum(pos)
        if not tp.size or tp[-1] == 0:
            return float("nan")
        return self._lower_edge(int(bins[_first_reaching(tp, int(tp[-1]), tpr)]))

    def threshold_at_best_f1(self) -> tuple[float, float]:
        """(t, F1): the lower edge of the bin where pixel F1 of ``score >= t`` is largest (the first such bin
        scanning down), and that F1. (NaN, NaN) without positives."""
        bins, pos, neg = self._descending()
        tp, fp = np.cumsum(pos), np.cumsum(neg)
        if not tp.size or tp[-1] == 0:
            return float("nan"), float("nan")
        f1 = 2 * tp / (tp + fp + tp[-1])
        best = int(np.argmax(f1))
        return self._lower_edge(int(bins[best])), float(f1[best])

    def curves(self, max_points: int = 200) -> dict[str, dict[str, list[float]]]:
        """ROC (fpr, tpr) and PR (recall, precision) curves thinned to about ``max_points`` points spread
        evenly along each curve, for plots in records and on the leaderboard page; empty without both classes."""
        _, pos, neg = self._descending()
        tp, fp = np.cumsum(pos), np.cumsum(neg)
        if not tp.size or tp[-1] == 0 or fp[-1] == 0:
            return {"roc": {"fpr": [], "tpr": []}, "pr": {"recall": [], "precision": []}}
        tpr, fpr = tp / tp[-1], fp / fp[-1]
        precision = tp / (tp + fp)

        def thin(progress: np.ndarray) -> np.ndarray:
            return np.unique(np.searchsorted(progress, np.linspace(0, progress[-1], max_points)).clip(0, tp.size - 1))

        roc = thin(np.cumsum(np.abs(np.diff(fpr, prepend=0)) + np.abs(np.diff(tpr, prepend=0))))
        pr = thin(np.cumsum(np.abs(np.diff(tpr, prepend=0)) + np.abs(np.diff(precision, prepend=precision[0]))))

        def listed(x: np.ndarray) -> list[float]:
            return np.round(x, 6).tolist()

        return {"roc": {"fpr": [0.0] + listed(fpr[roc]), "tpr": [0.0] + listed(tpr[roc])},
                "pr": {"recall": listed(tpr[pr]), "precision": listed(precision[pr])}}

    def _lower_edge(self, b: int) -> float:
        if b == (0x80000000 >> self._shift):  # folded with -0.0's bin: its lower edge is below zero
            b -= 1
        return _float_of_key(b << self._shift)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Compact form (nonzero bins only) for saving or sending between processes."""
        index = np.flatnonzero(self._pos | self._neg)
        return {"bits": np.array(self.bits), "index": index.astype(np.int64),
                "pos": self._pos[index], "neg": self._neg[index]}

    @classmethod
    def from_state_dict(cls, d: dict[str, np.ndarray]) -> "PixelMetricState":
        """Rebuild a state written by ``state_dict``."""
        state = cls(int(d["bits"]))
        state._pos[d["index"]] = d["pos"]
        state._neg[d["index"]] = d["neg"]
        return state

    def __repr__(self) -> str:
        return f"PixelMetricState(bits={self.bits}, num_pos={int(self._pos.sum())}, num_neg={int(self._neg.sum())})"


def pixel_metrics(labels: Any, scores: Any, *, ignore_index: int = IGNORE_LABEL, exact: bool = True) -> dict:
    """Pooled AUROC, AP, FPR95, num_pos, num_neg of one label/score array pair (e.g. a stacked split).

    ``exact=True`` sorts positives and negatives separately and counts negatives at or above each
    distinct positive score by ``searchsorted``: equal to scikit-learn and ~25x faster (2e7 pixels, 2 cores).
    ``exact=False`` uses ``PixelMetricState`` (bounded memory, scores binned to 20 key bits).
    """
    if not exact:
        state = PixelMetricState()
        state.update(labels, scores, ignore_index=ignore_index)
        return state.compute()
    pos, neg = _split(labels, scores, ignore_index)
    with np.errstate(over="ignore", invalid="ignore"):
        # A non-finite sum is the cheap screen; overflow of finite values is re-checked exactly.
        if not (np.isfinite(pos.sum()) and np.isfinite(neg.sum())):
            if not (np.isfinite(pos).all() and np.isfinite(neg).all()):
                _raise_nonfinite(labels, scores, ignore_index, float32=False)
    if pos.size == 0:
        return _summarize(pos, pos, pos, pos, neg.size)
    pos.sort()
    neg.sort()
    starts = np.flatnonzero(np.r_[True, pos[1:] != pos[:-1]])[::-1]
    values = pos[starts]  # distinct positive scores, descending
    count = np.diff(np.r_[starts[::-1], pos.size])[::-1]
    fp = neg.size - np.searchsorted(neg, values, side="left")
    neg_at = fp - (neg.size - np.searchsorted(neg, values, side="right"))
    return _summarize(count, np.cumsum(count), fp, neg_at, neg.size)
