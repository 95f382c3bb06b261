"""What the pixel metrics accept: labels and scores of one shape, labels in {0, 1, ignore}, finite scores where labels
count; each refusal a LabelError or ScoreError that names the values and the fix."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import LabelError, ScoreError
from ..labels import ID_LABEL, OOD_LABEL


def _flat_pair(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """Labels and scores (numpy arrays or torch tensors, on any device) as flat host arrays of one shape, or a
    ScoreError that names the fix."""
    labels = np.asarray(labels)
    scores = scores.detach().cpu().numpy() if hasattr(scores, "detach") else np.asarray(scores)
    if labels.shape != tuple(scores.shape):
        raise ScoreError(
            f"labels shape {labels.shape} != scores shape {scores.shape}: compute the score map at "
            "label resolution (resize the scores, never the labels)"
        )
    return labels.reshape(-1), scores.reshape(-1)


def _check_labels(flat_l: np.ndarray, ignore_index: int) -> tuple[int, int]:
    """(number of OoD, number of in-distribution pixels); LabelError if any label is none of the three."""
    n_pos, n_neg = int(np.count_nonzero(flat_l == OOD_LABEL)), int(np.count_nonzero(flat_l == ID_LABEL))
    if n_pos + n_neg + int(np.count_nonzero(flat_l == ignore_index)) != flat_l.size:
        bad = (flat_l != OOD_LABEL) & (flat_l != ID_LABEL) & (flat_l != ignore_index)
        values = np.unique(flat_l[bad])
        raise LabelError(
            f"labels hold {int(np.count_nonzero(bad))} pixel(s) with values {values[:10].tolist()}"
            f"{' ...' if values.size > 10 else ''}; expected {ID_LABEL} (in-distribution), {OOD_LABEL} "
            f"(OoD) or {ignore_index} (ignore): map the dataset's labels to this encoding first"
        )
    return n_pos, n_neg


def scores_by_class(labels: Any, scores: Any, ignore_index: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate one labelled score map and return the scores of its positive and negative pixels."""
    flat_l, flat_s = _flat_pair(labels, scores)
    _check_labels(flat_l, ignore_index)
    is_pos, is_neg = flat_l == OOD_LABEL, flat_l == ID_LABEL
    if not np.issubdtype(flat_s.dtype, np.floating):
        flat_s = flat_s.astype(np.float64)
    elif flat_s.dtype == np.float16:
        flat_s = flat_s.astype(np.float32)
    return flat_s[is_pos], flat_s[is_neg]


def finite_scores_by_class(labels: Any, scores: Any, ignore_index: int) -> tuple[np.ndarray, np.ndarray]:
    """``scores_by_class``, refusing NaN/inf scores of labelled pixels with a ScoreError that locates them."""
    pos, neg = scores_by_class(labels, scores, ignore_index)
    with np.errstate(over="ignore", invalid="ignore"):
        # A non-finite sum is the cheap screen; overflow of finite values is re-checked exactly.
        if not (np.isfinite(pos.sum()) and np.isfinite(neg.sum())):
            if not (np.isfinite(pos).all() and np.isfinite(neg).all()):
                raise_nonfinite(labels, scores, ignore_index, float32=False)
    return pos, neg


def raise_nonfinite(labels: Any, scores: Any, ignore_index: int, float32: bool) -> None:
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
