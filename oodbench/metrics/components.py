"""Component-level metrics of SegmentMeIfYouCan (sIoU, PPV, F1 over tau) as a mergeable state.

Semantics follow the official ``SegEval``: predicted components are 8-connected regions of
``score > threshold`` outside ignore, those under ``min_pred`` pixels dropped; ground-truth
components are 8-connected OoD regions, those under ``min_gt`` pixels turned into ignore, and
every statistic counts only pixels left in the region of interest. Per-component sums come from
one count over (ground-truth id, predicted id) pairs instead of one full-image mask per component."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..data.base import IGNORE_LABEL, OOD_LABEL
from ..errors import ScoreError
from ..segments.components import label_components

TAUS = np.linspace(0.25, 0.75, 11)  # the official grid; its 7th value is 0.6000000000000001
TRACKS = {"anomaly": (500, 100), "obstacle": (50, 10)}  # (min_pred, min_gt)


def instances(label: np.ndarray, score: np.ndarray, threshold: float, min_pred: int, min_gt: int):
    """(gt ids, predicted ids) over the region-of-interest pixels, as flat arrays, after size filters."""
    if label.shape != score.shape:
        raise ScoreError(f"score map shape {score.shape} does not match label map {label.shape}")
    pred_mask = (score > threshold) & (label != IGNORE_LABEL)
    gt, n_gt = label_components(label == OOD_LABEL)
    pred, n_pred = label_components(pred_mask)
    pred_sizes = np.bincount(pred.ravel(), minlength=n_pred + 1)
    small_pred = pred_sizes < min_pred
    small_pred[0] = True
    pred = np.where(small_pred[pred], 0, pred)
    gt_sizes = np.bincount(gt.ravel(), minlength=n_gt + 1)
    small_gt = gt_sizes < min_gt  # entry 0 too: the official code also voids a background under min_gt
    roi = (label != IGNORE_LABEL) & ~small_gt[gt]
    return gt[roi].astype(np.int64), pred[roi].astype(np.int64)


def component_scores(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """sIoU per gt component, sIoU and PPV per predicted component, from flat ROI id arrays."""
    ng, npred = int(gt.max(initial=0)) + 1, int(pred.max(initial=0)) + 1
    size_g = np.bincount(gt, minlength=ng)
    size_p = np.bincount(pred, minlength=npred)
    both = (gt > 0) & (pred > 0)
    codes, counts = np.unique(gt[both] * npred + pred[both], return_counts=True)
    gi, pj = codes // npred, codes % npred
    on_gt_p = np.bincount(pj, weights=counts, minlength=npred)  # pixels of pred j on any gt component
    on_pred_g = np.bincount(gi, weights=counts, minlength=ng)   # pixels of gt i under any prediction
    # gt i: P = union of predictions touching i; A = pixels of P on other gt components.
    inter_g = on_pred_g
    p_union = np.bincount(gi, weights=size_p[pj], minlength=ng)
    adjust_g = np.bincount(gi, weights=on_gt_p[pj] - counts, minlength=ng)
    # pred j, symmetrically.
    g_union = np.bincount(pj, weights=size_g[gi], minlength=npred)
    adjust_p = np.bincount(pj, weights=on_pred_g[gi] - counts, minlength=npred)
    gt_ids = np.flatnonzero(size_g[1:]) + 1
    pred_ids = np.flatnonzero(size_p[1:]) + 1
    siou_gt = inter_g[gt_ids] / (p_union[gt_ids] + size_g[gt_ids] - inter_g[gt_ids] - adjust_g[gt_ids])
    siou_pred = on_gt_p[pred_ids] / (g_union[pred_ids] + size_p[pred_ids] - on_gt_p[pred_ids] - adjust_p[pred_ids])
    ppv = on_gt_p[pred_ids] / size_p[pred_ids]
    return siou_gt, siou_pred, ppv


@dataclass
class ComponentMetricState:
    """Sums over images: sIoU and PPV totals and per-tau TP/FN/FP; ``merge`` adds two states."""

    threshold: float
    min_pred: int = TRACKS["anomaly"][0]
    min_gt: int = TRACKS["anomaly"][1]
    sums: dict[str, float] = field(default_factory=lambda: {"siou_gt": 0.0, "siou_pred": 0.0, "ppv": 0.0})
    counts: dict[str, int] = field(default_factory=lambda: {"gt": 0, "pred": 0})
    tp: np.ndarray = field(default_factory=lambda: np.zeros(TAUS.size, np.int64))
    fn: np.ndarray = field(default_factory=lambda: np.zeros(TAUS.size, np.int64))
    fp: np.ndarray = field(default_factory=lambda: np.zeros(TAUS.size, np.int64))

    @classmethod
    def for_track(cls, threshold: float, track: str = "anomaly") -> "ComponentMetricState":
        if track not in TRACKS:
            raise ValueError(f"unknown track {track!r}; choose one of {sorted(TRACKS)} or give min_pred/min_gt")
        return cls(threshold, *TRACKS[track])

    def update(self, label: np.ndarray, score: np.ndarray) -> None:
        siou_gt, siou_pred, ppv = component_scores(*instances(np.asarray(label), np.asarray(score),
                                                              self.threshold, self.min_pred, self.min_gt))
        self.sums["siou_gt"] += float(siou_gt.sum())
        self.sums["siou_pred"] += float(siou_pred.sum())
        self.sums["ppv"] += float(ppv.sum())
        self.counts["gt"] += siou_gt.size
        self.counts["pred"] += ppv.size
        self.tp += (siou_gt[None, :] >= TAUS[:, None]).sum(1)
        self.fn += (siou_gt[None, :] < TAUS[:, None]).sum(1)
        self.fp += (ppv[None, :] < TAUS[:, None]).sum(1)

    def merge(self, other: "ComponentMetricState") -> "ComponentMetricState":
        if (self.threshold, self.min_pred, self.min_gt) != (other.threshold, other.min_pred, other.min_gt):
            raise ValueError("cannot merge component states with different threshold or size filters")
        for k in self.sums:
            self.sums[k] += other.sums[k]
        for k in self.counts:
            self.counts[k] += other.counts[k]
        self.tp += other.tp
        self.fn += other.fn
        self.fp += other.fp
        return self

    def compute(self) -> dict[str, Any]:
        """Mean sIoU (gt), mean PPV, F1 per tau and mean F1; NaN where nothing was counted."""
        denom = 2 * self.tp + self.fn + self.fp
        f1 = np.divide(2 * self.tp, denom, out=np.full(TAUS.size, np.nan), where=denom > 0)
        ng, npred = self.counts["gt"], self.counts["pred"]
        return {
            "siou": self.sums["siou_gt"] / ng if ng else float("nan"),
            "siou_pred": self.sums["siou_pred"] / npred if npred else float("nan"),
            "ppv": self.sums["ppv"] / npred if npred else float("nan"),
            "f1_mean": float(np.mean(f1)),
            "f1": {f"{t:.2f}": float(v) for t, v in zip(TAUS, f1)},
            "tp": self.tp.tolist(), "fn": self.fn.tolist(), "fp": self.fp.tolist(),
            "num_gt_components": ng, "num_pred_components": npred,
            "threshold": float(self.threshold), "min_pred": self.min_pred, "min_gt": self.min_gt,
        }
