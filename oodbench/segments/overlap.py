"""An image as instance matching sees it, without its maps: ground-truth instance and prediction sizes, the
predictions' void pixels and their sparse intersections, built from id maps (disjoint predictions) or from one
binary mask per prediction (which may overlap, as in Cityscapes-format submissions)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from ..errors import ScoreError
from ..labels import OOD_LABEL
from .components import label_components


@dataclass
class OverlapTable:
    """One image as instance matching sees it, without its maps: the size of each ground-truth instance and of
    each prediction, a prediction's void pixels, and the sparse instance/prediction intersections."""

    gt_size: np.ndarray  # (G,) int64: pixels of instance g + 1 of the id map
    pred_size: np.ndarray  # (P,) int64: pixels of prediction p + 1 (0 for an id the map lacks)
    pred_void: np.ndarray  # (P,) int64: of them on void (ignored) pixels
    pairs: np.ndarray  # (k, 2) int64: (instance, prediction), both 0-based, unique
    inter: np.ndarray  # (k,) int64: pixels in both
    annotated: bool = False  # ground truth from the dataset's instance labels, not the OoD mask's components

    def dense(self) -> np.ndarray:
        """The (G, P) intersection matrix."""
        out = np.zeros((self.gt_size.size, self.pred_size.size), np.int64)
        out[self.pairs[:, 0], self.pairs[:, 1]] = self.inter
        return out


def instance_ground_truth(label: np.ndarray, instance_label: np.ndarray | None = None) -> tuple[np.ndarray, bool]:
    """Ground-truth instance ids (0 none): the dataset's ``instance_label`` on OoD pixels where it gives one, else
    the 8-connected components of the OoD pixels; and whether they came from the dataset."""
    label = np.asarray(label)
    if instance_label is None:
        return label_components(label == OOD_LABEL)[0], False
    instance_label = np.asarray(instance_label)
    if instance_label.shape != label.shape:
        raise ScoreError(f"instance label shape {instance_label.shape} does not match the label's {label.shape}")
    return np.where(label == OOD_LABEL, instance_label, 0).astype(np.int64), True


def overlap_table(gt: np.ndarray, void: np.ndarray, pred: np.ndarray, annotated: bool = False) -> OverlapTable:
    """The overlap table of ground-truth and predicted instance id maps (0 none) and the void pixels."""
    gt, pred = np.asarray(gt).astype(np.int64, copy=False), np.asarray(pred).astype(np.int64, copy=False)
    if gt.shape != pred.shape or np.shape(void) != gt.shape:
        raise ScoreError(f"instance maps differ in shape: ground truth {gt.shape}, predictions {pred.shape}, "
                         f"void {np.shape(void)}")
    if gt.min(initial=0) < 0 or pred.min(initial=0) < 0:
        raise ScoreError("instance ids must be >= 0 (0: no instance)")
    n_gt, n_pred = int(gt.max(initial=0)), int(pred.max(initial=0))
    both = (gt > 0) & (pred > 0)
    codes, inter = np.unique(gt[both] * (n_pred + 1) + pred[both], return_counts=True)
    pairs = np.stack([codes // (n_pred + 1) - 1, codes % (n_pred + 1) - 1], axis=1).astype(np.int64)
    return OverlapTable(np.bincount(gt.ravel(), minlength=n_gt + 1)[1:].astype(np.int64),
                        np.bincount(pred.ravel(), minlength=n_pred + 1)[1:].astype(np.int64),
                        np.bincount(pred[np.asarray(void, bool)], minlength=n_pred + 1)[1:].astype(np.int64),
                        pairs.reshape(-1, 2), inter.astype(np.int64), bool(annotated))


def masks_table(gt: np.ndarray, void: np.ndarray, masks: Iterable[np.ndarray], annotated: bool = False) -> OverlapTable:
    """The overlap table of ground-truth instance ids (0 none), the void pixels and one binary mask per prediction,
    read one at a time (masks may overlap: each is matched on its own, as cityscapesScripts does)."""
    gt = np.asarray(gt).astype(np.int64, copy=False)
    void = np.asarray(void, bool)
    if np.shape(void) != gt.shape:
        raise ScoreError(f"instance maps differ in shape: ground truth {gt.shape}, void {void.shape}")
    n_gt = int(gt.max(initial=0))
    sizes, voids, pairs, inter = [], [], [], []
    for p, mask in enumerate(masks):
        mask = np.asarray(mask, bool)
        if mask.shape != gt.shape:
            raise ScoreError(f"prediction {p + 1}: mask of shape {mask.shape}, the ground truth's is {gt.shape}")
        sizes.append(int(np.count_nonzero(mask)))
        voids.append(int(np.count_nonzero(mask & void)))
        hits = np.bincount(gt[mask], minlength=n_gt + 1)[1:]
        g = np.flatnonzero(hits)
        pairs.append(np.stack([g, np.full(g.size, p)], axis=1))
        inter.append(hits[g])
    return OverlapTable(np.bincount(gt.ravel(), minlength=n_gt + 1)[1:].astype(np.int64),
                        np.asarray(sizes, np.int64), np.asarray(voids, np.int64),
                        np.concatenate(pairs).astype(np.int64).reshape(-1, 2) if pairs else np.zeros((0, 2), np.int64),
                        np.concatenate(inter).astype(np.int64) if inter else np.zeros(0, np.int64), bool(annotated))
