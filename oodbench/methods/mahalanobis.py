"""``mahalanobis``: class-conditional Gaussians with one shared (tied) covariance over the network's penultimate
features (Lee et al., NeurIPS 2018, per pixel as segmentation papers use it). Per class, the mean feature of the fit
frames' pixels (grouped by predicted class, or by label with ``by="label"``); one covariance of the features about
their class means; the score is the smallest Mahalanobis distance of a pixel's feature to a class mean (higher = more
OoD). Lee et al.'s input perturbation and multi-layer ensemble are not part of it."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np
import scipy.linalg
import torch

from ..data.base import Sample
from ..errors import OodbenchError
from ..labels import IGNORE_LABEL
from .base import register_method
from .fitted import FittedMethod

BY = ("predicted", "label")


class GaussianFit:
    """Streaming sums for class means and the tied covariance: per class the pixel count and feature sum, and the
    sum of outer products over all pixels (float64); no pixel is kept, and partial fits merge by addition."""

    def __init__(self, num_classes: int, dim: int):
        self.counts = torch.zeros(num_classes, dtype=torch.float64)
        self.sums = torch.zeros(num_classes, dim, dtype=torch.float64)
        self.outer = torch.zeros(dim, dim, dtype=torch.float64)

    def update(self, feats: torch.Tensor, classes: torch.Tensor) -> None:
        """(N,D) features and (N,) classes; pixels of a class outside 0..K-1 (e.g. ignore 255) are left out."""
        keep = (classes >= 0) & (classes < len(self.counts))
        f, c = feats[keep].double(), classes[keep].long()
        self.counts += torch.bincount(c, minlength=len(self.counts)).double()
        self.sums.index_add_(0, c, f)
        self.outer += f.T @ f

    def merge(self, other: "GaussianFit") -> None:
        self.counts += other.counts
        self.sums += other.sums
        self.outer += other.outer

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(counts (K,), means (K,D) with zeros for unseen classes, tied covariance (D,D)): the mean over pixels of
        (f - mean[c]) (f - mean[c])^T, i.e. the maximum-likelihood estimate, as scikit-learn's EmpiricalCovariance."""
        total = self.counts.sum()
        if total == 0:
            raise OodbenchError("mahalanobis: no fit pixel has a class to fit (every pixel ignored)")
        means = self.sums / self.counts.clamp(min=1)[:, None]
        cov = (self.outer - (self.counts[:, None] * means).T @ means) / total
        return self.counts.numpy(), means.numpy(), ((cov + cov.T) / 2).numpy()


class Mahalanobis(FittedMethod):
    """Min over classes of the Mahalanobis distance of a pixel's penultimate feature (resized to the frame as the
    logits are) under the tied covariance; the precision is the covariance's pseudo-inverse (as scikit-learn's).
    ``pixels_per_image``: fit on that many pixels per frame, drawn by ``seed`` (None: every pixel)."""

    fit_kind = "mahalanobis"
    fit_params = ("means", "precision")

    def __init__(self, *args: Any, by: str = "predicted", pixels_per_image: int | None = None, **kwargs: Any):
        super().__init__("mahalanobis", *args, **kwargs)
        if by not in BY:
            raise OodbenchError(f"mahalanobis: by={by!r}; group the fit pixels by one of {', '.join(BY)}")
        if pixels_per_image is not None and (isinstance(pixels_per_image, bool) or int(pixels_per_image) < 1):
            raise OodbenchError(f"mahalanobis: pixels_per_image={pixels_per_image!r} must be a whole number >= 1, or "
                                f"None for every pixel")
        self.by, self.pixels_per_image = by, None if pixels_per_image is None else int(pixels_per_image)

    def fit_options(self) -> dict[str, Any]:
        subsample = self.pixels_per_image is not None
        return {"by": self.by, "pixels_per_image": self.pixels_per_image, "seed": self.seed if subsample else None}

    def check_model(self) -> None:
        self.require_features()

    def fit(self, batches: Iterable[list[Sample]]) -> dict[str, Any]:
        acc, index = None, 0
        for batch in batches:
            logits, feats = self.logits_and_features(np.stack([s.image for s in batch]))
            if acc is None:
                acc = GaussianFit(logits.shape[1], feats.shape[1])
            for sample, lg, f in zip(batch, logits, feats):
                classes = lg.argmax(dim=0) if self.by == "predicted" else self._labels(sample)
                self._update(acc, f.flatten(1).T, classes.flatten().to(f.device), index)
                index += 1
        counts, means, cov = acc.result()
        return {"by": self.by, "dim": int(cov.shape[0]), "pixels": int(counts.sum()),
                "pixels_per_class": counts.astype(int).tolist(), "classes_used": int((counts > 0).sum()),
                "means": means.tolist(), "precision": scipy.linalg.pinvh(cov).tolist()}

    def _labels(self, sample: Sample) -> torch.Tensor:
        if sample.label is None:
            raise OodbenchError(f"mahalanobis by='label' needs labelled fit frames, and frame {sample.id!r} of "
                                f"{sample.meta.get('dataset')} has none; use by='predicted', or a labelled split")
        label = torch.from_numpy(sample.label.astype(np.int64))
        return torch.where(label == IGNORE_LABEL, -1, label)

    def _update(self, acc: GaussianFit, feats: torch.Tensor, classes: torch.Tensor, index: int) -> None:
        """One frame's (N,D) features into the sums, subsampled by a generator seeded per frame."""
        if self.pixels_per_image is not None and len(feats) > self.pixels_per_image:
            g = torch.Generator().manual_seed(self.seed * 100_003 + index)
            pick = torch.randperm(len(feats), generator=g)[: self.pixels_per_image].to(feats.device)
            feats, classes = feats[pick], classes[pick]
        acc.update(feats.cpu(), classes.cpu())

    def use_fit(self, stats: dict[str, Any]) -> None:
        seen = np.asarray(stats["pixels_per_class"]) > 0
        eigval, eigvec = np.linalg.eigh(np.asarray(stats["precision"], dtype=np.float64))
        whiten = (eigvec * np.sqrt(eigval.clip(min=0))).T  # whiten.T @ whiten = precision
        centers = np.asarray(stats["means"], dtype=np.float64)[seen] @ whiten.T
        self.whiten = torch.as_tensor(whiten, dtype=torch.float32, device=self.device)
        self.centers = torch.as_tensor(centers, dtype=torch.float32, device=self.device)
        self.score_fn = self.distance

    def distance(self, feats: torch.Tensor) -> torch.Tensor:
        """(B,D,H,W) features -> (B,H,W) min over classes of the Mahalanobis distance."""
        z = torch.einsum("ed,bdhw->behw", self.whiten, feats.float())
        best = None
        for center in self.centers:
            d2 = (z - center[:, None, None]).square().sum(dim=1)
            best = d2 if best is None else torch.minimum(best, d2)
        return best.sqrt()

    def score_batch(self, images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        logits, feats = self.logits_and_features(images)
        return logits, self.distance(feats)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "score": "min class-conditional Mahalanobis distance, tied covariance",
                "features": "penultimate", **self.fit_options()}


@register_method("mahalanobis", meta=True)
def mahalanobis(seed: int = 0, checkpoint: str | Path | None = None, network: str | None = None,
                device: str | None = None, amp: bool | None = None, fit_dataset: str | None = None,
                fit_split: str | None = None, fit_root: str | Path | None = None, by: str = "predicted",
                pixels_per_image: int | None = None) -> Mahalanobis:
    """Min class-conditional Mahalanobis distance on the baseline network's penultimate features, class means and
    tied covariance fitted on in-distribution frames (by predicted class, or by="label")."""
    return Mahalanobis(seed=seed, checkpoint=checkpoint, network=network, device=device, amp=amp,
                       fit_dataset=fit_dataset, fit_split=fit_split, fit_root=fit_root, by=by,
                       pixels_per_image=pixels_per_image)
