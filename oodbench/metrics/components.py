"""Component-level metrics of SegmentMeIfYouCan (sIoU, PPV, F1 over tau) as a mergeable state.

Semantics follow the official ``SegEval``: predicted components are 8-connected regions of
``score > threshold`` outside ignore, those under ``min_pred`` pixels dropped; ground-truth
components are 8-connected OoD regions, those under ``min_gt`` pixels turned into ignore, and
every statistic counts only pixels left in the region of interest. Per-component sums come from
one count over (ground-truth id, predicted id) pairs instead of one full-image mask per component.
The same counts are broken down by object size (``size_bins``, see ``oodbench.metrics.size_bins``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..labels import IGNORE_LABEL, OOD_LABEL
from ..errors import ScoreError
from ..segments.components import label_components
from .component_kernels import roi_counts
from .size_bins import DEFAULT_SIZE_EDGES, SizeBinState

TAUS = np.linspace(0.25, 0.75, 11)  # the official grid; its value at index 7 (the 8th) is 0.6000000000000001
TRACKS = {"anomaly": (500, 100), "obstacle": (50, 10)}  # (min_pred, min_gt)


def instances(label: np.ndarray, score: np.ndarray, threshold: float, min_pred: int, min_gt: int):
    """(ground-truth areas, predicted areas, (gt id, predicted id) codes of the pixels on both) over the
    region-of-interest pixels, after the size filters; areas are indexed by component id (0: none)."""
    if label.shape != score.shape:
        raise ScoreError(f"score map shape {score.shape} does not match label map {label.shape}")
    label = np.ascontiguousarray(label)
    gt, n_gt = label_components(label == OOD_LABEL)
    pred, n_pred = label_components((score > np.float64(threshold)) & (label != IGNORE_LABEL))  # not rounded to float16
    return roi_counts(label.ravel(), gt.ravel(), pred.ravel(), n_gt, n_pred, min_gt, min_pred, IGNORE_LABEL)


def component_stats(size_g: np.ndarray, size_p: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, ...]:
    """(sIoU per gt component, sIoU and PPV per predicted component, gt areas, predicted areas) from the ROI
    areas and overlap codes of ``instances``, components in id order."""
    ng, npred = size_g.size, size_p.size
    codes, counts = np.unique(codes, return_counts=True)
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
    return siou_gt, siou_pred, ppv, size_g[gt_ids], size_p[pred_ids]


@dataclass(frozen=True)
class FrameComponents:
    """One image's component sums: what ``ComponentMetricState.update`` adds, and what a bootstrap over
    images resamples (``vector`` lays them out as n_gt, n_pred, sIoU/sIoU_pred/PPV sums, TP, FN, FP)."""

    setting: tuple[float, int, int]  # (threshold, min_pred, min_gt)
    num_gt: int
    num_pred: int
    siou_gt: float
    siou_pred: float
    ppv: float
    tp: np.ndarray
    fn: np.ndarray
    fp: np.ndarray

    def vector(self) -> np.ndarray:
        head = [self.num_gt, self.num_pred, self.siou_gt, self.siou_pred, self.ppv]
        return np.concatenate([np.array(head, np.float64), self.tp, self.fn, self.fp]).astype(np.float64)


@dataclass
class ComponentMetricState:
    """Sums over images: sIoU and PPV totals and per-tau TP/FN/FP, also per object-size bin
    (``size_edges`` in pixels, see ``oodbench.metrics.size_bins``); ``merge`` adds two states."""

    threshold: float
    min_pred: int = TRACKS["anomaly"][0]
    min_gt: int = TRACKS["anomaly"][1]
    sums: dict[str, float] = field(default_factory=lambda: {"siou_gt": 0.0, "siou_pred": 0.0, "ppv": 0.0})
    counts: dict[str, int] = field(default_factory=lambda: {"gt": 0, "pred": 0})
    tp: np.ndarray = field(default_factory=lambda: np.zeros(TAUS.size, np.int64))
    fn: np.ndarray = field(default_factory=lambda: np.zeros(TAUS.size, np.int64))
    fp: np.ndarray = field(default_factory=lambda: np.zeros(TAUS.size, np.int64))
    size_edges: tuple[int, ...] = DEFAULT_SIZE_EDGES
    size_names: tuple[str, ...] | None = None  # default: small, medium, large for two edges
    size_bins: SizeBinState = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.size_bins = SizeBinState(TAUS, self.size_edges, self.size_names)
        self.size_edges, self.size_names = self.size_bins.edges, self.size_bins.names

    @classmethod
    def for_track(cls, threshold: float, track: str = "anomaly", **size_bins: Any) -> "ComponentMetricState":
        """Preset size filters of a SegmentMeIfYouCan track; ``size_edges``/``size_names`` pass through."""
        if track not in TRACKS:
            raise ValueError(f"unknown track {track!r}; choose one of {sorted(TRACKS)} or give min_pred/min_gt")
        return cls(threshold, *TRACKS[track], **size_bins)

    @property
    def setting(self) -> tuple[float, int, int]:
        return float(self.threshold), int(self.min_pred), int(self.min_gt)

    def reset(self) -> None:
        """Forget every counted image; threshold, size filters and size bins stay."""
        fresh = type(self)(self.threshold, self.min_pred, self.min_gt, size_edges=self.size_edges,
                           size_names=self.size_names)
        self.__dict__.update(fresh.__dict__)

    def update(self, label: np.ndarray, score: np.ndarray) -> FrameComponents:
        """Add one image; return its own sums (e.g. for ``oodbench.metrics.bootstrap``)."""
        return self.add(self.measure(label, score))

    def measure(self, label: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, ...]:
        """One image's per-component statistics (sIoU per gt, sIoU and PPV per prediction, gt and predicted areas)
        at this state's setting, which ``add`` counts: measured once, they can feed several states of one setting
        (e.g. the split's and its frame category's)."""
        return component_stats(*instances(np.asarray(label), np.asarray(score), self.threshold, self.min_pred,
                                          self.min_gt))

    def add(self, measured: tuple[np.ndarray, ...]) -> FrameComponents:
        """Count one image's ``measure``; return its sums."""
        siou_gt, siou_pred, ppv, gt_area, pred_area = measured
        tp = (siou_gt[None, :] >= TAUS[:, None]).sum(1)
        frame = FrameComponents(self.setting, siou_gt.size, ppv.size, float(siou_gt.sum()), float(siou_pred.sum()),
                                float(ppv.sum()), tp, siou_gt.size - tp, (ppv[None, :] < TAUS[:, None]).sum(1))
        self.sums["siou_gt"] += frame.siou_gt
        self.sums["siou_pred"] += frame.siou_pred
        self.sums["ppv"] += frame.ppv
        self.counts["gt"] += frame.num_gt
        self.counts["pred"] += frame.num_pred
        self.tp += frame.tp
        self.fn += frame.fn
        self.fp += frame.fp
        self.size_bins.update(gt_area, siou_gt, pred_area, ppv)
        return frame

    def merge(self, other: "ComponentMetricState") -> "ComponentMetricState":
        if self.setting != other.setting:
            raise ValueError("cannot merge component states with different threshold or size filters")
        self.size_bins.merge(other.size_bins)
        for k in self.sums:
            self.sums[k] += other.sums[k]
        for k in self.counts:
            self.counts[k] += other.counts[k]
        self.tp += other.tp
        self.fn += other.fn
        self.fp += other.fp
        return self

    def compute(self) -> dict[str, Any]:
        """Mean sIoU (gt), mean PPV, F1 per tau and mean F1 (NaN where nothing was counted); the same per
        size bin under ``size_bins``, with the bin edges and the binning rule."""
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
            "size_bins": self.size_bins.compute(),
        }


def component_metrics(labels: Any, scores: Any, threshold: float, *, track: str = "anomaly") -> dict[str, Any]:
    """Functional form of ``ComponentMetricState``: sIoU, PPV and F1 of one image (HxW arrays) or of several
    (N x H x W arrays or sequences of HxW arrays), components at ``scores > threshold``, size filters of ``track``."""
    state = ComponentMetricState.for_track(threshold, track)
    single = np.ndim(labels) == 2
    for label, score in zip([labels] if single else labels, [scores] if single else scores, strict=True):
        state.update(np.asarray(label), np.asarray(score))
    return state.compute()
