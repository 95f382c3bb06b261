"""The meta-classified variant of a method: same scores, plus the paper's segment stage."""
from __future__ import annotations

import copy

from .base import META_SUFFIX, METHODS, PAPER_ENTROPY_THRESHOLD, Method, SegmentStage


def with_meta_stage(method: Method) -> Method:
    """Return a copy of ``method`` named ``<name>_meta`` that carries a segment stage. Scores with a
    natural [0, 1] scale that the paper thresholds (normalized entropy) use 0.7; others are thresholded
    at the value reaching 95 % pixel TPR on the dataset's validation split, recorded as such."""
    if not method.provides_probs:
        raise ValueError(f"method {method.name!r} gives no softmax probabilities; the meta stage needs them")
    meta = copy.copy(method)
    meta.name = method.name + META_SUFFIX
    if getattr(method, "score_name", None) == "entropy":
        meta.segment_stage = SegmentStage(threshold=PAPER_ENTROPY_THRESHOLD)
    else:
        meta.segment_stage = SegmentStage(threshold=None, calibrate_tpr=0.95)
        meta.calibration_split = "val"
    return meta


METHODS.meta_stage = with_meta_stage
