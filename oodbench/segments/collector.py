"""Per-image accumulation of segment features, targets and segment/ground-truth touches, and the
paper's segment counts (FP/FN before and after meta classification) over a split.

Only (n, F) features, n targets, the ground-truth component count, the sparse touch pairs and the
segments' overlap table with the ground-truth instances (for instance AP once the meta classifier's
confidences are known) are kept per image, never the maps. Counting follows meta-ood
``meta_classification.py`` (``meta_classification.remove``): FP = segments that touch no ground-truth OoD pixel; FN =
ground-truth OoD components (8-connectivity) that no (remaining) segment pixel touches. The paper
code's "FP after" is the number of deleted true positives (``paper_code_fp_after`` here); the
correct count is the number of false positives that survive the deletion.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from ..labels import IGNORE_LABEL, OOD_LABEL
from ..errors import ScoreError
from .components import label_components
from .overlap import OverlapTable, instance_ground_truth, overlap_table
from .features import feature_names, segment_features
from .meta_classifier import cross_val_proba, protocol_scaling

__all__ = ["ImageSegments", "OverlapTable", "SegmentCollector", "count_errors", "image_segments",
           "instance_ground_truth", "overlap_table", "removed_mask"]


@dataclass
class ImageSegments:
    """What one image contributes: features (n, F), targets (n,), #gt components, touch pairs, and the segments'
    overlap table with the ground-truth instances (None where formed without it)."""

    image_id: str
    features: np.ndarray
    targets: np.ndarray  # 1 = false positive (touches no OoD pixel), 0 = true positive
    num_gt: int
    pairs: np.ndarray  # (k, 2) int64: (gt component, segment), both 0-based, unique
    instances: OverlapTable | None = None  # prediction p = segment p + 1 = feature row p


def image_segments(image_id: str, probs: np.ndarray, label: np.ndarray,
                   threshold: float = 0.7, score: np.ndarray | None = None, *,
                   truth: np.ndarray | None = None, instance_label: np.ndarray | None = None) -> ImageSegments:
    """Segments, features, targets and touch pairs of one image (label: 0 / 1 OoD / 255 ignore);
    segments come from ``score >= threshold`` (default score: normalized entropy). Their overlap table is taken
    against the instances of ``truth`` (the evaluated labels, default ``label``) and ``instance_label``."""
    label = np.asarray(label)
    if label.shape != np.shape(probs)[1:]:
        raise ScoreError(f"label shape {label.shape} does not match probs {np.shape(probs)}")
    sf = segment_features(probs, label == IGNORE_LABEL, threshold, segment_score=score)
    gt, num_gt = label_components(label == OOD_LABEL)
    n = sf.n
    both = (gt > 0) & (sf.segments > 0)
    codes = np.unique(gt[both].astype(np.int64) * (n + 1) + sf.segments[both])
    pairs = np.stack([codes // (n + 1) - 1, codes % (n + 1) - 1], axis=1).astype(np.int64)
    touched = np.zeros(n, dtype=bool)
    touched[pairs[:, 1]] = True
    truth = label if truth is None else np.asarray(truth)
    if instance_label is None and truth is label:
        instances, annotated = gt, False  # the components just labelled
    else:
        instances, annotated = instance_ground_truth(truth, instance_label)
    table = overlap_table(instances, truth == IGNORE_LABEL, sf.segments, annotated)
    return ImageSegments(str(image_id), sf.features, (~touched).astype(np.int8), int(num_gt), pairs, table)


def count_errors(targets: np.ndarray, removed: np.ndarray, num_gt: int,
                 pairs: np.ndarray) -> dict[str, int]:
    """FP/FN counts before and after deleting the ``removed`` segments.

    ``pairs``: (k, 2) global (gt component, segment) touch pairs; ``num_gt``: total gt components.
    """
    targets = np.asarray(targets).astype(bool)
    removed = np.asarray(removed, dtype=bool)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    kept_pairs = pairs[~removed[pairs[:, 1]]]
    return {
        "fp_before": int(targets.sum()),
        "fn_before": int(num_gt - np.unique(pairs[:, 0]).size),
        "fp_after": int((targets & ~removed).sum()),
        "fn_after": int(num_gt - np.unique(kept_pairs[:, 0]).size),
        "paper_code_fp_after": int((removed & ~targets).sum()),
    }


class SegmentCollector:
    """Accumulates images (``update``), merges shards (``merge``), then ``compute``s the counts. Images are kept in
    image-id order, so the meta classifier's folds, and every result, do not depend on the order images were
    added, shards scored or merged."""

    def __init__(self) -> None:
        self.images: list[ImageSegments] = []
        self._ids: list[str] = []

    def add(self, item: ImageSegments) -> None:
        """Add one image's segments computed elsewhere (e.g. read back from the score cache)."""
        at = bisect.bisect_left(self._ids, item.image_id)
        if at < len(self._ids) and self._ids[at] == item.image_id:
            raise ValueError(f"image {item.image_id!r} was already added to this SegmentCollector")
        self._ids.insert(at, item.image_id)
        self.images.insert(at, item)

    def update(self, image_id: str, probs: np.ndarray, label: np.ndarray, threshold: float = 0.7,
               score: np.ndarray | None = None) -> None:
        """Add one image: softmax probs (C, H, W), canonical label (H, W), optional segment score map."""
        self.add(image_segments(image_id, probs, label, threshold, score))

    def merge(self, other: "SegmentCollector") -> "SegmentCollector":
        """Add every image of ``other`` (image ids must not repeat); returns self."""
        for item in other.images:
            self.add(item)
        return self

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, np.ndarray]:
        """Concatenated features, targets, groups (image index), total #gt, global touch pairs."""
        nf = self.images[0].features.shape[1] if self.images else len(feature_names())
        feats = [im.features for im in self.images] or [np.zeros((0, nf))]
        x = np.concatenate(feats).astype(np.float64)
        y = np.concatenate([im.targets for im in self.images] or [np.zeros(0, np.int8)]).astype(np.int64)
        groups = np.repeat(np.arange(len(self.images)), [im.targets.size for im in self.images])
        seg_off = gt_off = 0
        pairs = []
        for im in self.images:
            pairs.append(im.pairs + np.array([gt_off, seg_off], dtype=np.int64))
            seg_off += im.targets.size
            gt_off += im.num_gt
        pairs_all = np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64)
        return x, y, groups, gt_off, pairs_all

    def out_of_fold(self, protocol: str = "grouped", n_splits: int = 5, seed: int = 0, *,
                    scaling: str | None = None, n_jobs: int = 1, progress: bool = False) -> np.ndarray:
        """Out-of-fold P(FP) of every segment, images in id order (``cross_val_proba``; NaN: untestable).
        ``progress``: a bar over the leave-one-out fits (stderr)."""
        x, y, groups, _, _ = self.arrays()
        return cross_val_proba(x, y, groups, protocol=protocol, n_splits=n_splits, seed=seed,
                               scaling=scaling, n_jobs=n_jobs, progress=progress)

    def per_image(self, values: np.ndarray) -> list[np.ndarray]:
        """One value per segment of the split (as ``out_of_fold`` returns them) cut into each image's rows."""
        values = np.asarray(values)
        sizes = [im.targets.size for im in self.images]
        if values.shape[:1] != (sum(sizes),):
            raise ValueError(f"{values.shape[0] if values.ndim else 0} values for {sum(sizes)} segments: pass one "
                             f"per segment of the collector, in image-id order (out_of_fold)")
        return np.split(values, np.cumsum(sizes)[:-1]) if sizes else []

    def compute(self, protocol: str = "grouped", n_splits: int = 5, seed: int = 0,
                remove_threshold: float = 0.5, *, scaling: str | None = None, n_jobs: int = 1,
                progress: bool = False, proba: np.ndarray | None = None) -> dict:
        """Counts and meta-classifier quality over all images.

        Segments with out-of-fold P(FP) > ``remove_threshold`` are deleted (NaN, i.e. untestable,
        deletes nothing). ``meta_auroc``/``meta_ap`` are NaN with one class; ``meta_accuracy`` is
        NaN only when no segment has a prediction. ``proba``: ``out_of_fold``'s result with the same arguments,
        when the caller needs it too (the cross-validation runs once).
        """
        _, y, _, num_gt, pairs = self.arrays()
        if proba is None:
            proba = self.out_of_fold(protocol, n_splits, seed, scaling=scaling, n_jobs=n_jobs, progress=progress)
        elif np.shape(proba) != y.shape:
            raise ValueError(f"proba of shape {np.shape(proba)} for {y.size} segments: pass out_of_fold's result")
        removed = removed_mask(proba, remove_threshold)
        result = {"num_images": len(self.images), "num_segments": int(y.size),
                  "num_gt_components": int(num_gt)}
        result.update(count_errors(y, removed, num_gt, pairs))
        result.update(_meta_scores(y, proba, remove_threshold))
        result.update({"protocol": protocol, "n_splits": int(n_splits) if protocol == "grouped" else None,
                       "seed": int(seed), "scaling": protocol_scaling(protocol, scaling),
                       "remove_threshold": float(remove_threshold)})
        return result

    def image_predictions(self, protocol: str = "grouped", n_splits: int = 5, seed: int = 0,
                          remove_threshold: float = 0.5, *, scaling: str | None = None,
                          n_jobs: int = 1, progress: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per image id: (out-of-fold P(FP), removed mask) of its segments, row k = segment k + 1 of
        its segment map; the very cross-validation ``compute`` runs with the same arguments."""
        proba = self.out_of_fold(protocol, n_splits, seed, scaling=scaling, n_jobs=n_jobs, progress=progress)
        return {im.image_id: (p, removed_mask(p, remove_threshold))
                for im, p in zip(self.images, self.per_image(proba))}


def removed_mask(proba: np.ndarray, remove_threshold: float) -> np.ndarray:
    """Segments the meta classifier deletes: P(FP) > threshold; NaN (untestable) deletes nothing."""
    return np.nan_to_num(proba, nan=-np.inf) > remove_threshold


def _meta_scores(y: np.ndarray, proba: np.ndarray, threshold: float) -> dict[str, float]:
    ok = np.isfinite(proba)
    y, p = y[ok], proba[ok]
    nan = math.nan
    if y.size == 0:
        return {"meta_auroc": nan, "meta_ap": nan, "meta_accuracy": nan}
    acc = float(np.mean((p > threshold) == y.astype(bool)))
    if np.unique(y).size < 2:
        return {"meta_auroc": nan, "meta_ap": nan, "meta_accuracy": acc}
    return {"meta_auroc": float(roc_auc_score(y, p)), "meta_ap": float(average_precision_score(y, p)),
            "meta_accuracy": acc}
