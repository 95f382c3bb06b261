"""Percentile-bootstrap confidence intervals over images: pixel AP/FPR95/AUROC, component mean F1/sIoU/PPV.

Images are the resampling unit (pixels of one image are not independent). The collector keeps a
compact summary per image, never its pixels: for pixel metrics a sparse histogram of its scores
rounded to float16 (the 16-bit pattern mapped to a monotone key, with positive and negative counts
per key); for component metrics the image's ``FrameComponents`` sums. A resample's pooled state is
the multiplicity-weighted sum of the chosen images' summaries, computed for a block of resamples at
once as (multiplicities x per-image histograms) matrix products, exact for integer counts < 2**53.

Resampling scheme (so an independent implementation can reproduce it): ``rng =
np.random.default_rng(seed)``; resample r draws ``rng.integers(0, n, n)`` image indices, r = 0, 1, ...;
images are in ``update``/``merge`` order, or sorted by ``image_id`` when every image has one (then
shards merged in any order give the same result). Interval: ``np.percentile`` (linear) at
(1 - confidence) / 2 and (1 + confidence) / 2 over resamples where the metric is defined; standard
error: their standard deviation (ddof=1). Pixel metrics here use float16 scores: the point estimate
to report comes from the canonical state, ``float16_estimate`` shows the approximation's size.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..labels import IGNORE_LABEL
from ..errors import ScoreError
from .components import TAUS, FrameComponents
from .score_keys import float16_histogram
from .curves import summarize_rows
from .pixel_inputs import scores_by_class

__all__ = ["BootstrapCollector", "METHOD"]

METHOD = "percentile bootstrap over images"
FLOAT16_NOTE = ("pixel metrics of the resamples use scores rounded to float16 (ties within one float16 step; "
                "|score| > 65504 saturates to +-inf); report the point estimate from the canonical pixel state")
_NAN_LOW, _NAN_HIGH = 0x03FF, 0xFC00  # keys of -inf and +inf; NaNs lie outside [_NAN_LOW, _NAN_HIGH]
_NT = TAUS.size
_MAX_BLOCK = 1 << 22  # elements of one dense (resamples x keys), (resamples x images) or (images x keys) block
PIXEL_METRICS = ("ap", "fpr95", "auroc")


def _pixel_metrics(pos: np.ndarray, neg: np.ndarray) -> dict[str, np.ndarray]:
    """AP, FPR95, AUROC for each row of (rows x keys) count arrays in ascending key order (``curves``' rules)."""
    pos, neg = pos[:, ::-1], neg[:, ::-1]
    tp, fp = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
    ends = (tp[:, -1], fp[:, -1]) if tp.shape[1] else (np.zeros(tp.shape[0]), np.zeros(tp.shape[0]))
    return summarize_rows(pos, tp, fp, neg, *ends)


def _component_metrics(sums: np.ndarray) -> dict[str, np.ndarray]:
    """f1_mean, siou, ppv for each row of summed ``FrameComponents.vector`` rows."""
    n_gt, n_pred = sums[:, 0], sums[:, 1]
    tp, fn, fp = (sums[:, 5 + k * _NT: 5 + (k + 1) * _NT] for k in range(3))
    with np.errstate(divide="ignore", invalid="ignore"):
        return {"f1_mean": (2 * tp / (2 * tp + fn + fp)).mean(1), "siou": sums[:, 2] / n_gt, "ppv": sums[:, 4] / n_pred}


class BootstrapCollector:
    """Streaming, mergeable per-image summaries; ``compute`` gives bootstrap intervals over images."""

    def __init__(self) -> None:
        self._keys: list[np.ndarray] = []   # per image: distinct float16 keys (uint16, ascending)
        self._counts: list[np.ndarray] = []  # per image: (2, keys) positive and negative counts
        self._comp: list[np.ndarray] = []    # per image: FrameComponents.vector()
        self._ids: list[str | None] = []
        self.component_setting: tuple[float, int, int] | None = None

    def __len__(self) -> int:
        return len(self._keys)

    def update(self, labels: Any, scores: Any, *, components: FrameComponents | None = None,
               image_id: str | None = None, ignore_index: int = IGNORE_LABEL) -> None:
        """Add one image: its pixel histogram, and its component sums (give them for every image or none)."""
        if len(self) and (components is None) != (not self._comp):
            raise ValueError("give component sums for every image or for none")
        if components is not None:
            self._check_setting(components.setting)
        hists = []
        for part in scores_by_class(labels, scores, ignore_index):
            hist = float16_histogram(part)
            if hist[:_NAN_LOW].any() or hist[_NAN_HIGH + 1:].any():
                raise ScoreError(f"{int(hist[:_NAN_LOW].sum() + hist[_NAN_HIGH + 1:].sum())} non-ignored pixel(s) "
                                 "have NaN scores: fix the score function or set those pixels to ignore")
            hists.append(hist)
        keys = np.flatnonzero(hists[0] | hists[1])
        self._keys.append(keys.astype(np.uint16))
        counts = np.stack([hists[0][keys], hists[1][keys]])
        self._counts.append(counts.astype(np.int32) if counts.max(initial=0) < 2**31 else counts)
        if components is not None:
            self._comp.append(components.vector())
        self._ids.append(None if image_id is None else str(image_id))

    def _check_setting(self, setting: tuple[float, int, int] | None) -> None:
        if setting is not None and self.component_setting not in (None, setting):
            raise ValueError(f"component sums of threshold/min_pred/min_gt {setting} do not match "
                             f"{self.component_setting} already collected")
        if setting is not None:
            self.component_setting = setting

    def merge(self, other: "BootstrapCollector") -> "BootstrapCollector":
        """Append another collector's images (another shard or process); return self."""
        if len(self) and len(other) and bool(self._comp) != bool(other._comp):
            raise ValueError("cannot merge a collector with component sums into one without")
        self._check_setting(other.component_setting)
        self._keys += other._keys
        self._counts += other._counts
        self._comp += other._comp
        self._ids += other._ids
        return self

    def state_dict(self) -> dict[str, Any]:
        """Concatenated arrays for saving or sending between processes."""
        sizes = np.array([k.size for k in self._keys], np.int64)
        return {"sizes": sizes, "keys": np.concatenate(self._keys or [np.zeros(0, np.uint16)]),
                "counts": np.concatenate(self._counts or [np.zeros((2, 0), np.int64)], axis=1),
                "components": np.array(self._comp) if self._comp else np.zeros((0, 5 + 3 * _NT)),
                "image_ids": list(self._ids), "component_setting": self.component_setting}

    @classmethod
    def from_state_dict(cls, d: dict[str, Any]) -> "BootstrapCollector":
        out = cls()
        bounds = np.cumsum(d["sizes"])[:-1]
        out._keys = np.split(np.asarray(d["keys"]), bounds) if len(d["sizes"]) else []
        out._counts = np.split(np.asarray(d["counts"]), bounds, axis=1) if len(d["sizes"]) else []
        out._comp = list(np.asarray(d["components"], np.float64))
        out._ids = list(d["image_ids"])
        setting = d["component_setting"]
        out.component_setting = None if setting is None else (float(setting[0]), int(setting[1]), int(setting[2]))
        return out

    def _order(self) -> np.ndarray:
        if self._ids and all(i is not None for i in self._ids):
            return np.argsort(np.array(self._ids), kind="stable")
        return np.arange(len(self))

    def resample_values(self, n_resamples: int, seed: int) -> dict[str, np.ndarray]:
        """Each metric on each resample (arrays of n_resamples), plus ``full`` (the metrics on all images)."""
        n = len(self)
        if n == 0:
            raise ValueError("no images collected")
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
            raise TypeError(f"seed={seed!r}: give an int so the intervals can be reproduced")
        order = self._order()
        keys = [self._keys[i].astype(np.intp) for i in order]
        counts = [self._counts[i] for i in order]
        union = np.unique(np.concatenate(keys))
        cols = [np.searchsorted(union, k) for k in keys]
        comp = np.array([self._comp[i] for i in order]) if self._comp else None
        rng = np.random.default_rng(seed)
        block = max(1, _MAX_BLOCK // max(union.size, 1))
        rows_per_block = max(1, _MAX_BLOCK // max(union.size, n))

        def pooled(mult: np.ndarray) -> dict[str, np.ndarray]:
            pos = np.zeros((mult.shape[0], union.size))
            neg = np.zeros((mult.shape[0], union.size))
            for i0 in range(0, n, block):  # dense (images x keys) blocks, so BLAS does the weighted sums
                dense = np.zeros((2, min(block, n - i0), union.size))
                for j, i in enumerate(range(i0, min(i0 + block, n))):
                    dense[:, j, cols[i]] = counts[i]
                pos += mult[:, i0:i0 + block] @ dense[0]
                neg += mult[:, i0:i0 + block] @ dense[1]
            out = _pixel_metrics(pos, neg)
            if comp is not None:
                out.update(_component_metrics(mult @ comp))
            return out

        full = {k: float(v[0]) for k, v in pooled(np.ones((1, n))).items()}
        parts = []
        for r0 in range(0, n_resamples, rows_per_block):
            rows = min(rows_per_block, n_resamples - r0)
            idx = np.stack([rng.integers(0, n, n) for _ in range(rows)])
            mult = np.bincount((idx + n * np.arange(rows)[:, None]).ravel(), minlength=rows * n).reshape(rows, n)
            parts.append(pooled(mult.astype(np.float64)))
        values = {k: np.concatenate([p[k] for p in parts]) if parts else np.zeros(0) for k in full}
        values["full"] = full
        return values

    def compute(self, n_resamples: int = 1000, seed: int = 0, confidence: float = 0.95) -> dict[str, Any]:
        """Percentile interval, standard error and float16/full-sample value of each metric, with the settings."""
        if not 0.0 < confidence < 1.0:
            raise ValueError(f"confidence={confidence}: use a level in (0, 1), e.g. 0.95")
        if n_resamples < 2:
            raise ValueError(f"n_resamples={n_resamples}: use at least 2 (1000 or more for 95 % intervals)")
        values = self.resample_values(n_resamples, seed)
        full = values.pop("full")
        q = [50 * (1 - confidence), 50 * (1 + confidence)]
        metrics = {}
        for name, v in values.items():
            ok = v[np.isfinite(v)]
            low, high = np.percentile(ok, q) if ok.size else (np.nan, np.nan)
            metrics[name] = {"low": float(low), "high": float(high),
                             "std_error": float(np.std(ok, ddof=1)) if ok.size > 1 else float("nan"),
                             "n_undefined": int(v.size - ok.size),
                             "float16_estimate" if name in PIXEL_METRICS else "full_sample": full[name]}
        return {"method": METHOD, "n_resamples": int(n_resamples), "seed": int(seed), "confidence": float(confidence),
                "num_images": len(self), "interval_rule": "percentile (numpy linear) over resamples where defined",
                "std_error_rule": "standard deviation (ddof=1) of the resampled values",
                "image_order": "sorted by image_id" if self._ids and None not in self._ids else "update/merge order",
                "pixel_scores": FLOAT16_NOTE, "component_setting": self.component_setting, "metrics": metrics}
