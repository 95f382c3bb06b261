"""The curve rules, in one place: pixel metrics from counts per threshold (oodbench's AP, AUROC and FPR95), and the
ROC points, trapezoid areas and FPR95 variants of the published evaluation codes that the conventions name."""
from __future__ import annotations

import numpy as np


def summarize(pos: np.ndarray, tp: np.ndarray, fp: np.ndarray, neg_at: np.ndarray, num_neg: int) -> dict:
    """Metrics from per-threshold counts in descending score order: positives at the threshold,
    positives >= it, negatives >= it, negatives at it (thresholds without positives may be left out)."""
    num_pos = int(tp[-1]) if tp.size else 0
    rows = summarize_rows(pos[None], tp[None], fp[None], neg_at[None], np.array([num_pos]), np.array([num_neg]))
    return {**{k: float(v[0]) for k, v in rows.items()}, "num_pos": num_pos, "num_neg": int(num_neg)}


def summarize_rows(pos: np.ndarray, tp: np.ndarray, fp: np.ndarray, neg_at: np.ndarray, num_pos: np.ndarray,
                   num_neg: np.ndarray) -> dict[str, np.ndarray]:
    """``summarize`` for each row of (rows x thresholds) counts (e.g. bootstrap resamples): AP (step sum), AUROC
    (trapezoid = P(pos > neg) + P(tie) / 2) and FPR95 (first threshold with TPR >= 0.95); NaN where undefined."""
    pos, tp, fp, neg_at = (np.asarray(a, np.float64) for a in (pos, tp, fp, neg_at))
    num_pos, num_neg = np.asarray(num_pos, np.float64), np.asarray(num_neg, np.float64)
    nan = np.full(num_pos.shape, np.nan)
    if pos.shape[1] == 0:
        return {"auroc": nan, "ap": nan.copy(), "fpr95": nan.copy()}
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=pos > 0)
        ap = (pos * precision).sum(1) / num_pos  # not np.dot: BLAS is slow here
        auroc = (pos * (num_neg[:, None] - fp + 0.5 * neg_at)).sum(1) / (num_pos * num_neg)
        first = np.argmax(tp / num_pos[:, None] >= 0.95, axis=1)
        fpr95 = fp[np.arange(fp.shape[0]), first] / num_neg
    undefined = (num_pos == 0) | (num_neg == 0)
    return {"auroc": np.where(undefined, np.nan, auroc), "ap": np.where(num_pos == 0, np.nan, ap),
            "fpr95": np.where(undefined, np.nan, fpr95)}


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


def binned_curve_metrics(tp: np.ndarray, fp: np.ndarray, num_pos: int, num_neg: int) -> dict[str, float]:
    """road-anomaly-benchmark's ``curves_from_cmats`` on a curve of cumulative (tp, fp) starting at (0, 0): AP as
    the step sum with precision 1 where nothing is predicted, AUROC as the trapezoid, FPR at the first point with
    TPR >= 0.95 (1.0 if none); NaN without positives (AUROC and FPR95 also without negatives)."""
    nan = float("nan")
    if not num_pos:
        return {"auroc": nan, "ap": nan, "fpr95": nan}
    tpr = tp / float(num_pos)
    predicted = tp + fp
    precision = np.ones_like(tpr)
    precision[predicted > 0] = tp[predicted > 0] / predicted[predicted > 0]
    out = {"auroc": nan, "ap": float(np.sum(np.diff(tpr) * precision[1:])), "fpr95": nan}
    if num_neg:
        fpr = fp / float(num_neg)
        out["auroc"] = trapezoid(fpr, tpr)
        i = int(np.searchsorted(tpr, 0.95))
        out["fpr95"] = float(fpr[i]) if i < tpr.size else 1.0
    return out


def thinned_curves(pos: np.ndarray, neg: np.ndarray, max_points: int = 200) -> dict[str, dict[str, list[float]]]:
    """ROC (fpr, tpr) and PR (recall, precision) points of counts per threshold in descending score order, thinned
    to about ``max_points`` spread evenly along each curve (for plots); empty without both classes."""
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
