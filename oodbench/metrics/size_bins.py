"""Component metrics by object size: a mergeable state of per-bin counts, sums and per-tau TP/FN/FP.

Bins are half-open pixel-area ranges ``[edge[k-1], edge[k])`` at label resolution. A ground-truth
component goes to the bin of its pixel count; a predicted component to the bin of its pixel count
inside the region of interest (the denominator of its PPV: pixels on ignore or on voided small
objects do not count). TP and FN belong to ground-truth components, FP to predicted ones, so a bin's
F1 = 2 TP / (2 TP + FN + FP) pairs the bin's objects with the bin's predictions of the same size;
it is reported only where the bin holds ground-truth components (NaN otherwise, where 2 TP + FN = 0
and F1 would measure nothing but false positives). Summed over bins, TP/FN/FP equal the totals.

Default edges, 7,000 and 63,000 px: COCO's small/medium/large limits, 32² and 96² px on ~640x480
images, are 0.33 % and 3.0 % of the frame; the same fractions of a 1024x2048 road frame are 6,991 and
62,915 px, rounded. With the anomaly track's ``min_gt`` of 100 px, "small" spans 100 to 6,999 px
(a ~10x10 to ~84x84 object: distant obstacles), "large" starts near a 250x250 object (close by).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["DEFAULT_SIZE_EDGES", "DEFAULT_SIZE_NAMES", "SizeBinState"]

DEFAULT_SIZE_EDGES = (7_000, 63_000)
DEFAULT_SIZE_NAMES = ("small", "medium", "large")
AREA_RULE = ("bins [low, high) of pixel area: a gt component by its pixel count, a predicted component "
             "by its pixel count in the region of interest (its PPV denominator); TP/FN per gt bin, "
             "FP per predicted bin; F1 = 2TP/(2TP+FN+FP) within a bin, NaN where the bin has no gt component")


class SizeBinState:
    """Per size bin: gt count, sIoU sum, TP per tau; predicted count, PPV sum, FP per tau. Sums over images."""

    def __init__(self, taus: Sequence[float], edges: Sequence[int] = DEFAULT_SIZE_EDGES,
                 names: Sequence[str] | None = None):
        self.taus = np.asarray(taus, dtype=np.float64)
        self.edges = tuple(int(e) for e in edges)
        if not self.edges or self.edges[0] <= 0 or any(b <= a for a, b in zip(self.edges, self.edges[1:])):
            raise ValueError(f"size edges {tuple(edges)}: give one or more increasing positive pixel areas")
        if names is None:
            names = DEFAULT_SIZE_NAMES if len(self.edges) == 2 else [f"bin{k}" for k in range(len(self.edges) + 1)]
        self.names = tuple(str(n) for n in names)
        if len(self.names) != len(self.edges) + 1 or len(set(self.names)) != len(self.names):
            raise ValueError(f"size bin names {self.names}: give {len(self.edges) + 1} distinct names")
        nb, nt = len(self.names), self.taus.size
        self.gt, self.pred = np.zeros(nb, np.int64), np.zeros(nb, np.int64)
        self.siou_sum, self.ppv_sum = np.zeros(nb), np.zeros(nb)
        self.tp, self.fp = np.zeros((nb, nt), np.int64), np.zeros((nb, nt), np.int64)

    def bin_of(self, area: np.ndarray) -> np.ndarray:
        """Bin index of each area: 0 below the first edge, k for edge[k-1] <= area < edge[k]."""
        return np.searchsorted(np.asarray(self.edges), np.asarray(area), side="right")

    def _per_tau(self, bins: np.ndarray, hits: np.ndarray) -> np.ndarray:
        """(bins x taus) counts of ``hits`` (taus x components, bool)."""
        nb, nt = len(self.names), self.taus.size
        codes = bins[None, :] * nt + np.arange(nt)[:, None]
        return np.bincount(codes[hits], minlength=nb * nt).reshape(nb, nt)

    def update(self, gt_area: np.ndarray, siou: np.ndarray, pred_area: np.ndarray, ppv: np.ndarray) -> None:
        """Add one image's components: gt areas with their sIoU, predicted areas with their PPV."""
        nb = len(self.names)
        bg, bp = self.bin_of(gt_area), self.bin_of(pred_area)
        self.gt += np.bincount(bg, minlength=nb)
        self.siou_sum += np.bincount(bg, weights=siou, minlength=nb)
        self.tp += self._per_tau(bg, siou[None, :] >= self.taus[:, None])
        self.pred += np.bincount(bp, minlength=nb)
        self.ppv_sum += np.bincount(bp, weights=ppv, minlength=nb)
        self.fp += self._per_tau(bp, ppv[None, :] < self.taus[:, None])

    def merge(self, other: "SizeBinState") -> "SizeBinState":
        if (self.edges, self.names) != (other.edges, other.names) or not np.array_equal(self.taus, other.taus):
            raise ValueError(f"cannot merge size bins {self.edges} {self.names} with {other.edges} {other.names}")
        for name in ("gt", "pred", "siou_sum", "ppv_sum", "tp", "fp"):
            getattr(self, name)[...] += getattr(other, name)
        return self

    def compute(self) -> dict[str, Any]:
        """``edges``, ``names``, ``rule`` and, per bin name, counts, means, TP/FN/FP lists and F1 per tau."""
        out: dict[str, Any] = {"edges": list(self.edges), "names": list(self.names), "rule": AREA_RULE, "bins": {}}
        lows, highs = (0,) + self.edges, self.edges + (None,)
        for k, name in enumerate(self.names):
            ng, npred, tp, fp = int(self.gt[k]), int(self.pred[k]), self.tp[k], self.fp[k]
            fn = ng - tp
            f1 = 2 * tp / (2 * tp + fn + fp) if ng else np.full(self.taus.size, np.nan)
            out["bins"][name] = {
                "min_area": lows[k], "max_area": highs[k],  # [min_area, max_area); None: no upper limit
                "num_gt_components": ng,
                "siou": float(self.siou_sum[k] / ng) if ng else float("nan"),
                "tp": tp.tolist(), "fn": fn.tolist(),
                "num_pred_components": npred,
                "ppv": float(self.ppv_sum[k] / npred) if npred else float("nan"),
                "fp": fp.tolist(),
                "f1": {f"{t:.2f}": float(v) for t, v in zip(self.taus, f1)},
                "f1_mean": float(np.mean(f1)),
            }
        return out
