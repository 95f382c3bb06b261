"""The curve rules, in one place: pixel metrics from counts per threshold (oodbench's AP, AUROC and FPR95), and the
ROC points, trapezoid areas and FPR95 variants of the published evaluation codes that the conventions name."""
from __future__ import annotations

import numpy as np


def summarize(pos: np.ndarray, tp: np.ndarray, fp: np.ndarray, neg_at: np.ndarray, num_neg: int) -> dict:
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
    out["fpr95"] = float(fp_f[first_reaching(tp_f, num_pos, 0.95)] / num_neg)
    return out


def first_reaching(tp: np.ndarray, num_pos: int, tpr: float) -> int:
    """Index of the first threshold whose TPR (computed as scikit-learn does) is >= tpr."""
    return int(np.argmax(tp / num_pos >= tpr))


def trapezoid(x: np.ndarray, y: np.ndarray) -> float:
    return float((np.diff(x) * (y[1:] + y[:-1]) / 2.0).sum())


def roc_points(tp: np.ndarray, fp: np.ndarray, drop_intermediate: bool) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) as ``sklearn.metrics.roc_curve`` builds them from cumulative counts per threshold:
    collinear interior points dropped when asked, then the (0, 0) start added."""
    tp, fp = tp.astype(np.float64), fp.astype(np.float64)
    if drop_intermediate and tp.size > 2:
        keep = np.r_[True, (np.diff(fp, 2) != 0) | (np.diff(tp, 2) != 0), True]
        tp, fp = tp[keep], fp[keep]
    tp, fp = np.r_[0.0, tp], np.r_[0.0, fp]
    return fp / fp[-1], tp / tp[-1]


def trapezoid_ap(tp: np.ndarray, fp: np.ndarray) -> float:
    """Trapezoid area under ``sklearn.metrics.precision_recall_curve``: its points up to the first
    threshold of full recall, plus its (recall 0, precision 1) end."""
    last = int(np.searchsorted(tp, tp[-1])) + 1
    tp, fp = tp[:last].astype(np.float64), fp[:last].astype(np.float64)
    return trapezoid(np.r_[0.0, tp / tp[-1]], np.r_[1.0, tp / (tp + fp)])


def fpr95_nearest(tp: np.ndarray, fp: np.ndarray) -> float:
    """PEBAL's ``fpr_and_fdr_at_recall``: thresholds up to the first full recall, the one whose recall is
    nearest 0.95 (argmin over them in ascending-threshold order, so ties go to the lower threshold)."""
    last = int(np.searchsorted(tp, tp[-1]))
    distance = np.abs(tp[: last + 1] / tp[-1] - 0.95)
    k = last - int(np.argmin(distance[::-1]))
    return float(fp[k] / fp[-1])


def fpr95_strict(tp: np.ndarray, fp: np.ndarray) -> float:
    """RbA / DenseHybrid ``calculate_auroc``: first point of ``roc_curve`` (dropped points gone) with TPR > 0.95."""
    fpr, tpr = roc_points(tp, fp, drop_intermediate=True)
    return float(fpr[np.argmax(tpr > 0.95)])


def fpr95_interpolated(tp: np.ndarray, fp: np.ndarray) -> float:
    """``ood_metrics.fpr_at_95_tpr`` (Mask2Anomaly): ``np.interp(0.95, tpr, fpr)`` on ``roc_curve``."""
    fpr, tpr = roc_points(tp, fp, drop_intermediate=True)
    return float(np.interp(0.95, tpr, fpr))
