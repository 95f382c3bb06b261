"""Instance-level AP as the Cityscapes instance evaluation computes it (and OoDIS with it, for one anomaly class):
per IoU threshold in 0.50:0.05:0.95, ground-truth instances matched by predictions of IoU above it, AP from the
precision-recall points at the distinct confidences; the mean over thresholds is ``ap``, the first ``ap50``.

Rules of the reference (cityscapesScripts' ``evaluateMatches``), kept here: ground-truth instances under
``min_region`` pixels are ignored, and an unmatched prediction is no false positive when those and void pixels make
up more than the IoU threshold's share of it; a second prediction matching an already matched instance is a false
positive with the lower of the two confidences; unmatched ground truth counts as a miss. A state holds (match,
confidence) pairs and miss counts per threshold: mergeable, and the result does not depend on the order of images.
An image enters as its overlap table (sizes, void overlaps, sparse intersections), so predictions whose confidences
are known only later (the meta classifier's) are matched without keeping maps."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..labels import IGNORE_LABEL
from ..segments.overlap import OverlapTable, instance_ground_truth, overlap_table
from ..segments.components import label_components

OVERLAPS = np.arange(0.5, 1.0, 0.05)
MIN_REGION = 10  # OoDIS; the Cityscapes default is 100
SCORE_COMPONENTS = "8-connected components of score > threshold, confidence = their mean score"


def frame_instances(table: OverlapTable, confidence: np.ndarray, min_region: int = MIN_REGION,
                    overlaps: np.ndarray = OVERLAPS) -> list[tuple[list, list, int]]:
    """Per threshold (matched flags, confidences, misses) of one image given as its overlap table (``overlap_table``
    makes one of id maps); ``confidence[p]`` that of prediction ``p + 1``."""
    gt_size, pred_size, inter = table.gt_size, table.pred_size, table.dense()
    confidence = np.asarray(confidence, np.float64).ravel()
    if confidence.size < pred_size.size:
        raise ValueError(f"{confidence.size} confidences for {pred_size.size} predictions: give one per prediction")
    confidence = confidence[:pred_size.size]
    kept = pred_size > 0
    if np.isnan(confidence[kept]).any():
        raise ValueError("a prediction's confidence is NaN: rank predictions by finite confidences")
    counted = gt_size >= min_region
    iou = inter / np.maximum(gt_size[:, None] + pred_size[None, :] - inter, 1)
    ignored = (table.pred_void + inter[~counted].sum(axis=0)) / np.maximum(pred_size, 1)
    out = []
    for th in overlaps:
        hits = (inter > 0) & (iou > th) & kept[None, :]
        matched, scores = [], []
        for g in np.flatnonzero(counted & hits.any(axis=1)):
            conf = np.sort(confidence[hits[g]])  # the most confident match counts; the others are false positives
            matched += [True] + [False] * (conf.size - 1)
            scores += [conf[-1], *conf[:-1]]
        misses = int(np.count_nonzero(counted & ~hits.any(axis=1)))
        false = kept & ~((inter > 0) & (iou > th)).any(axis=0) & (ignored <= th)
        matched += [False] * int(np.count_nonzero(false))
        scores += confidence[false].tolist()
        out.append((matched, scores, misses))
    return out


def average_precision(matched: np.ndarray, scores: np.ndarray, misses: int) -> float:
    """The reference's AP: precision and recall at each distinct confidence (ascending), a (recall 0, precision 1)
    end, and the recall steps weighted by a centred difference."""
    if not matched.size:
        return 0.0
    order = np.argsort(scores, kind="stable")
    sorted_scores, sorted_true = scores[order], matched[order].astype(np.float64)
    cumsum = np.append(np.cumsum(sorted_true), 0.0)
    _, first = np.unique(sorted_scores, return_index=True)
    n, n_true = sorted_scores.size, cumsum[-2]
    precision, recall = np.zeros(first.size + 1), np.zeros(first.size + 1)
    for k, i in enumerate(first):
        below = cumsum[i - 1]
        tp, fp, fn = n_true - below, n - i - (n_true - below), below + misses
        precision[k] = tp / (tp + fp) if tp + fp else 0.0
        recall[k] = tp / (tp + fn) if tp + fn else 0.0
    precision[-1], recall[-1] = 1.0, 0.0
    steps = np.convolve(np.r_[recall[0], recall, 0.0], [-0.5, 0, 0.5], "valid")
    return float(np.dot(precision, steps))


def predicted_instances(score: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """The instances a score map predicts: 8-connected components of ``score > threshold`` (ids 1..n) and their mean
    scores as confidences."""
    score = np.asarray(score, np.float64)
    ids, n = label_components(score > threshold)
    sizes = np.bincount(ids.ravel(), minlength=n + 1)[1:]
    return ids, np.bincount(ids.ravel(), weights=score.ravel(), minlength=n + 1)[1:] / np.maximum(sizes, 1)


class InstanceMetricState:
    """Instance AP over images: predictions are the 8-connected components of ``score > threshold`` with their
    mean score as confidence (``update``), or given as id maps (``add``) or overlap tables (``add_table``, e.g. the
    meta stage's segments, then named by ``predictions``); ground truth the dataset's instance labels where given,
    else the 8-connected components of the OoD pixels; void the ignored pixels."""

    def __init__(self, threshold: float, min_region: int = MIN_REGION, predictions: str = SCORE_COMPONENTS):
        self.threshold, self.min_region, self.predictions = float(threshold), int(min_region), predictions
        self.matched: list[list[bool]] = [[] for _ in OVERLAPS]
        self.scores: list[list[float]] = [[] for _ in OVERLAPS]
        self.misses = np.zeros(len(OVERLAPS), np.int64)
        self.have_gt = self.have_pred = False
        self.num_gt = self.num_pred = 0
        self.images = self.annotated = 0  # images, and those whose ground truth came from instance labels

    def update(self, label: np.ndarray, score: np.ndarray, instances: np.ndarray | None = None) -> None:
        """One image; ``instances``: the dataset's ground-truth instance ids (else the OoD mask's components)."""
        label = np.asarray(label)
        gt, annotated = instance_ground_truth(label, instances)
        pred, confidence = predicted_instances(score, self.threshold)
        self.add_table(overlap_table(gt, label == IGNORE_LABEL, pred, annotated), confidence)

    def add(self, gt: np.ndarray, void: np.ndarray, pred: np.ndarray, confidence: np.ndarray) -> None:
        """One image given as instance id maps (e.g. a dataset's own instance labels, or a submission's masks)."""
        self.add_table(overlap_table(gt, void, pred), confidence)

    def add_table(self, table: OverlapTable, confidence: np.ndarray) -> None:
        """One image given as its overlap table, ``confidence[p]`` that of prediction ``p + 1``."""
        frame = frame_instances(table, confidence, self.min_region)
        self.have_gt |= bool(np.any(table.gt_size >= self.min_region))
        self.have_pred |= bool(np.any(table.pred_size > 0))
        self.images += 1
        self.annotated += int(table.annotated)
        self.num_gt += int(np.count_nonzero(table.gt_size >= self.min_region))
        self.num_pred += int(np.count_nonzero(table.pred_size > 0))
        for k, (matched, scores, misses) in enumerate(frame):
            self.matched[k] += matched
            self.scores[k] += scores
            self.misses[k] += misses

    def merge(self, other: "InstanceMetricState") -> "InstanceMetricState":
        if (other.threshold, other.min_region, other.predictions) != (self.threshold, self.min_region,
                                                                       self.predictions):
            raise ValueError("cannot merge instance states with different thresholds, region sizes or predictions")
        for k in range(len(OVERLAPS)):
            self.matched[k] += other.matched[k]
            self.scores[k] += other.scores[k]
        self.misses += other.misses
        self.have_gt |= other.have_gt
        self.have_pred |= other.have_pred
        self.num_gt += other.num_gt
        self.num_pred += other.num_pred
        self.images += other.images
        self.annotated += other.annotated
        return self

    def compute(self) -> dict[str, Any]:
        """ap (mean over 0.50:0.05:0.95), ap50, ap per threshold; NaN without ground truth, 0 without predictions."""
        if not self.have_gt:
            per = [float("nan")] * len(OVERLAPS)
        elif not self.have_pred:
            per = [0.0] * len(OVERLAPS)
        else:
            per = [average_precision(np.array(self.matched[k], bool), np.array(self.scores[k], np.float64),
                                     int(self.misses[k])) for k in range(len(OVERLAPS))]
        return {"ap": float(np.mean(per)), "ap50": per[0], "ap_per_overlap": {f"{t:.2f}": v for t, v in
                                                                             zip(OVERLAPS, per)},
                "num_gt_instances": self.num_gt, "num_pred_instances": self.num_pred,
                "threshold": self.threshold, "min_region": self.min_region,
                "ground_truth": f"dataset instance labels on {self.annotated} of {self.images} images, 8-connected "
                                f"OoD components on the others",
                "rules": "Cityscapes instance-level evaluation (OoDIS): IoU > t for t in 0.50:0.05:0.95, ground truth "
                         "under min_region pixels ignored, an unmatched prediction "
                         f"more than t on void or ignored instances excused; predictions: {self.predictions}"}
