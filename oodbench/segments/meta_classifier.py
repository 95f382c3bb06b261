"""Meta classifier of meta-ood: logistic regression on segment features -> P(false positive).

meta-ood (``meta_classification.py``) z-scores the features over all segments of the test set
(``helper.metrics_to_nparray``: (x - mean) / (std + 1e-10)) and then runs leave-one-out over the
segments with ``LogisticRegression(solver="liblinear")``. Our default is the honest variant: the
scaler is part of the Pipeline, so it is fitted on each training fold only (``scaling="fold"``),
and folds are grouped by image so no image is in both the training and the test part.
``scaling="all"`` reproduces the paper's global z-scoring, and is what the leave-one-out protocol uses unless told
otherwise, so that ``protocol="loo"`` is the paper's protocol as a whole.
"""
from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from typing import Iterator

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, LeaveOneOut, StratifiedGroupKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

__all__ = ["make_meta_classifier", "cross_val_proba", "fold_splits", "PROTOCOLS"]

PROTOCOLS = ("grouped", "loo")


def _logistic(random_state: int) -> LogisticRegression:
    # L2 is the default penalty in every scikit-learn version; passing penalty="l2" explicitly is
    # deprecated from 1.8 (removed in 1.10), so it is left at its default.
    return LogisticRegression(solver="liblinear", C=1.0, random_state=random_state)


def make_meta_classifier(random_state: int = 0) -> Pipeline:
    """StandardScaler + LogisticRegression(liblinear, L2, C=1) as in the paper code.

    ``random_state`` fixes liblinear's internal shuffling so that fits are reproducible.
    """
    return make_pipeline(StandardScaler(), _logistic(random_state))


def fold_splits(targets: np.ndarray, groups: np.ndarray, *, protocol: str = "grouped",
                n_splits: int = 5, seed: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index pairs of a protocol.

    "grouped": StratifiedGroupKFold (shuffled with ``seed``) over images, with
    min(n_splits, #images) folds; plain GroupKFold when only one class is present. Yields nothing
    when there are fewer than 2 images (no held-out image is possible).
    "loo": sklearn LeaveOneOut over segments (the paper's protocol; images may share folds).
    """
    y = np.asarray(targets)
    if protocol == "loo":
        if y.size >= 2:
            yield from LeaveOneOut().split(np.zeros((y.size, 1)))
        return
    if protocol != "grouped":
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {PROTOCOLS}")
    groups = np.asarray(groups)
    if groups.shape != y.shape:
        raise ValueError(f"groups shape {groups.shape} does not match targets {y.shape}")
    k = min(int(n_splits), np.unique(groups).size)
    if k < 2:
        return
    dummy = np.zeros((y.size, 1))
    if np.unique(y).size == 2:
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    else:
        splitter = GroupKFold(n_splits=k)
    with warnings.catch_warnings():  # "least populated class has only m members" is expected
        warnings.simplefilter("ignore", UserWarning)
        splits = list(splitter.split(dummy, y, groups))
    yield from splits


def _fit_predict(x_train, y_train, x_test, seed: int, scaling: str) -> np.ndarray:
    classes = np.unique(y_train)
    if classes.size == 1:  # nothing to learn: predict the one class seen, with certainty
        return np.full(x_test.shape[0], float(classes[0]))
    # the steps of make_meta_classifier() run by hand: same numbers, without the Pipeline's
    # per-fit overhead (~30 % of a leave-one-out run)
    if scaling == "fold":
        scaler = StandardScaler()
        x_train = scaler.fit_transform(x_train)
        x_test = scaler.transform(x_test)
    model = _logistic(seed).fit(x_train, y_train)
    column = list(model.classes_).index(1)
    return model.predict_proba(x_test)[:, column]


def protocol_scaling(protocol: str, scaling: str | None = None) -> str:
    """``scaling``, or by default the protocol's own: "all" for the paper's leave-one-out, "fold" for grouped folds."""
    return scaling if scaling is not None else ("all" if protocol == "loo" else "fold")


def cross_val_proba(features: np.ndarray, targets: np.ndarray, groups: np.ndarray | None = None, *,
                    protocol: str = "grouped", n_splits: int = 5, seed: int = 0,
                    scaling: str | None = None, n_jobs: int = 1, progress: bool = False) -> np.ndarray:
    """Out-of-fold P(false positive) per segment, float64 (n,).

    ``targets``: 1 = false positive, 0 = true positive; ``groups``: image of each segment.
    A fold whose training part holds one class predicts that class (1.0 or 0.0). Segments no
    fold can test (grouped protocol with < 2 images, or a single segment) get NaN.
    ``scaling``: "fold" (z-score on the training fold) or "all" (paper: over all segments,
    (x - mean) / (std + 1e-10)); by default "all" under leave-one-out, "fold" under grouped folds.
    ``n_jobs`` > 1 fits folds in threads (liblinear releases the GIL); results do not depend on it.
    ``progress``: a tqdm bar on stderr counting the leave-one-out fits (one per segment); grouped folds show none.
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(targets).astype(np.int64).ravel()
    if x.ndim != 2 or x.shape[0] != y.size:
        raise ValueError(f"features must be (n, F) with n = len(targets); got {x.shape}, {y.size}")
    if not set(np.unique(y).tolist()) <= {0, 1}:
        raise ValueError("targets must be 0 (true positive) or 1 (false positive)")
    scaling = protocol_scaling(protocol, scaling)
    if scaling not in ("fold", "all"):
        raise ValueError(f"scaling must be 'fold' or 'all', got {scaling!r}")
    if groups is None:
        if protocol == "grouped":
            raise ValueError("the grouped protocol needs groups (the image of each segment)")
        groups = np.zeros(y.size, dtype=np.int64)
    if scaling == "all" and x.shape[0]:
        x = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-10)
    out = np.full(y.size, np.nan)
    splits = fold_splits(y, groups, protocol=protocol, n_splits=n_splits, seed=seed)

    def run(split):
        train, test = split
        return test, _fit_predict(x[train], y[train], x[test], seed, scaling)

    with tqdm(total=y.size if y.size >= 2 else 0, desc="meta classifier (leave-one-out)", unit="fit",
              disable=not (progress and protocol == "loo")) as bar:
        if n_jobs > 1:
            with ThreadPoolExecutor(max_workers=n_jobs) as pool:
                while chunk := list(islice(splits, 8 * n_jobs)):  # lazily: LOO index sets are O(n^2)
                    for test, proba in pool.map(run, chunk):
                        out[test] = proba
                        bar.update()
        else:
            for test, proba in map(run, splits):
                out[test] = proba
                bar.update()
    return out
