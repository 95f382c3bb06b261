"""Pooled pixel-level OoD metrics (AUROC, AP, FPR95): a mergeable bounded-memory state and an exact function.

Conventions (DESIGN.md): labels 0 = in-distribution, 1 = OoD (the positive class), 255 = ignore;
higher score = more OoD; metrics are pooled over every non-ignored pixel. AP is scikit-learn's
``average_precision_score`` (step sum), AUROC the trapezoid area under the ROC curve, FPR95 the FPR at
the first threshold (descending, tied scores form one threshold) whose TPR >= 0.95.

Undefined values are NaN: AP without positives; AUROC and FPR95 without positives or without
negatives. AP with positives but no negatives is 1.0, as in scikit-learn.
"""
from __future__ import annotations

from typing import Any

import numba
import numpy as np

from ..labels import ID_LABEL, IGNORE_LABEL, OOD_LABEL
from .curves import first_reaching, summarize, thinned_curves
from .pixel_inputs import _check_labels, _flat_pair, raise_nonfinite
from .sorted_counts import exact_counts, scores_by_class
from .key_hist import KeyHistogram
from .score_keys import HALF_NONFINITE, HALF_ORDER, count_float16, half_as_monotone_keys, key_as_float

__all__ = ["PixelMetricState", "pixel_metrics", "summarize"]


class PixelMetricState:
    """Mergeable pooled state: positive and negative pixel counts per bin of the float32 score, in bounded memory.

    Scores are cast to float32 and binned by their bit pattern (``key_hist.KeyHistogram``, under 64 MiB):
    each bin keeps the top r of 32 key bits, r = 32 (one float32 value per bin, so the metrics are exact) where
    the occupied score range is narrow, e.g. all scores in [0.90, 0.91]; wide ranges get r = 28-29 where the
    pixels are dense (probability maps over (0, 1), max-logit maps over both signs) and fewer in sparse tails.
    Scores sharing a bin are ties, so ``compute`` reports ``resolution_bits``, the fewest
    key bits of a bin where that can change a metric. float16 scores are always exact (>= 19 bits over the
    float16 range) and take a faster path: counted per float16 value (one compiled pass, ``count_float16``),
    they join the key histogram only when it is read with other counts. ``bits`` caps r (9..32; 19 and up keep float16 scores exact). Merged or sharded
    states hold the same counts as one state over all pixels, in any order.
    """

    _histogram = KeyHistogram  # the storage class (tests use one with a smaller budget)

    def __init__(self, bits: int = 32):
        if not 9 <= bits <= 32:
            raise ValueError(f"bits={bits}: use 9..32 (32, the default, keeps every float32 score apart "
                             "where memory allows; 19 and up keep float16 scores exact)")
        self.bits = bits
        self.reset()

    def reset(self) -> None:
        """Forget every counted pixel (same ``bits``), e.g. at the start of an epoch."""
        self._keys = self._histogram(self.bits)
        self._float16: np.ndarray | None = None  # (negatives, positives) per float16 bit pattern, not yet in ``_keys``
        self._thread_counts: np.ndarray | None = None  # per-thread counts of one float16 image
        self._total = 0

    @property
    def _hist(self) -> KeyHistogram:
        """The key histogram, holding every counted pixel (float16 counts are added to it when it is read)."""
        if self._float16 is not None:
            half = self._float16_by_key()
            self._float16 = None
            fine = np.flatnonzero(half[0] | half[1])
            keys = half_as_monotone_keys(fine) & self._keys.mask
            cap = self._keys.max_extra
            self._total -= int(half.sum())
            self._add_entries((keys >> 16, (keys & 0xFFFF) >> (16 - cap), np.full(fine.size, cap, np.int64),
                               half[1, fine], half[0, fine]))
        return self._keys

    def update(self, labels: Any, scores: Any, *, ignore_index: int = IGNORE_LABEL) -> None:
        """Add one image (any shape; labels in {0, 1, ignore_index}; scores cast to float32). float16 scores (the
        score cache's) are counted per float16 value in one compiled pass."""
        flat_l, flat_s = _flat_pair(labels, scores)
        if isinstance(flat_s, np.ndarray) and flat_s.dtype == np.float16:
            return self._update_float16(labels, scores, flat_l, flat_s, ignore_index)
        n_pos, n_neg = _check_labels(flat_l, ignore_index)
        if flat_l.dtype != np.uint8 or ignore_index in (ID_LABEL, OOD_LABEL):  # uint8 codes: 0, 1, 2 = ignore
            flat_l = np.where(flat_l == OOD_LABEL, 1, np.where(flat_l == ID_LABEL, 0, 2)).astype(np.uint8)
        with np.errstate(over="ignore"):  # beyond float32 range becomes inf: reported below
            flat_s = np.ascontiguousarray(flat_s, dtype=np.float32)
        if self._total + n_pos + n_neg > self._hist.narrow_limit and self._hist.dtype != np.int64:
            if not np.isfinite(flat_s[flat_l <= 1]).all():  # refused before widening: a refused image changes nothing
                self._refuse(labels, scores, ignore_index)
            self._hist.widen()
        if not self._hist.add(flat_s, flat_l):
            self._refuse(labels, scores, ignore_index)
        self._total += n_pos + n_neg

    def _update_float16(self, labels: Any, scores: Any, flat_l: np.ndarray, flat_s: np.ndarray, ignore_index: int) -> None:
        """Exact counts of float16 scores; a refused image (bad label, NaN/inf where labels count) changes nothing."""
        ignore = ignore_index
        if flat_l.dtype != np.uint8 or ignore_index in (ID_LABEL, OOD_LABEL) or not 0 <= ignore_index <= 255:
            _check_labels(flat_l, ignore_index)
            flat_l, ignore = np.where(flat_l == OOD_LABEL, 1, np.where(flat_l == ID_LABEL, 0, 2)).astype(np.uint8), 2
        counts = self._thread_counts
        if counts is None or counts.shape[0] != numba.get_num_threads():
            counts = self._thread_counts = np.zeros((numba.get_num_threads(), 3, 1 << 16), np.int32)
        else:
            counts.fill(0)
        if count_float16(np.ascontiguousarray(flat_s).view(np.uint16), np.ascontiguousarray(flat_l), ignore, counts):
            _check_labels(flat_l, ignore_index)
        if counts[:, :2, HALF_NONFINITE].any():
            self._refuse(labels, scores, ignore_index)
        if self._float16 is None:
            self._float16 = np.zeros((2, 1 << 16), np.int64)
        for thread in counts:
            self._float16 += thread[:2]
        self._total += int(counts[:, :2].sum())

    def _float16_by_key(self) -> np.ndarray:
        """The float16 counts in score order (columns: float16 keys), -0.0 counted with +0.0 (equal scores)."""
        half = np.zeros_like(self._float16)
        half[:, HALF_ORDER] = self._float16
        half[:, 0x8000] += half[:, 0x7FFF]
        half[:, 0x7FFF] = 0
        return half

    def __getstate__(self) -> dict:
        """Pickled (e.g. gathered from other processes) as its ``state_dict``."""
        return self.state_dict()

    def __setstate__(self, d: dict) -> None:
        vars(self).update(vars(self.from_state_dict(d)))

    @staticmethod
    def _refuse(labels: Any, scores: Any, ignore_index: int) -> None:
        """The ScoreError of an image with NaN/inf (or beyond float32) scores where labels count."""
        raise_nonfinite(labels, scores, ignore_index, float32=True)

    def _reserve(self, n: int) -> None:
        """Switch to int64 counts before the state would hold more pixels than int32 counts allow."""
        if self._total + n > self._hist.narrow_limit:
            self._hist.widen()

    def merge(self, other: "PixelMetricState") -> "PixelMetricState":
        """Add another state (another image set, shard or process) in place; return self."""
        if type(other) is not type(self) or other.bits != self.bits:
            raise ValueError(f"cannot merge {other!r} into a {type(self).__name__} with bits={self.bits}")
        if other._float16 is not None and other._keys.slots_used <= 1:  # float16 counts alone: add them as they are
            self._float16 = other._float16.copy() if self._float16 is None else self._float16 + other._float16
            self._total += int(other._float16.sum())
        else:
            self._add_entries(other._hist.entries())
        return self

    def _add_entries(self, entries: tuple) -> None:
        """Add (hi, sub, e, pos, neg) bin counts of another state or a state_dict."""
        hi, _, e, pos, neg = entries
        self._hist.check_bins(hi, e)
        n = int(pos.sum() + neg.sum())
        self._reserve(n)
        self._hist.merge_bins(*entries)
        self._total += n

    def descending_bins(self, edges: bool = True) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
        """(lowest key, positives, negatives) per nonzero bin in descending score order (keys None if not asked)."""
        neg, pos, order = self._hist.counts()
        nz = self._hist.nonzero(neg, pos, order)[::-1]
        return self._hist.edges(nz) if edges else None, pos[nz].astype(np.int64), neg[nz].astype(np.int64)

    def compute(self) -> dict:
        """auroc, ap, fpr95 (floats, NaN when undefined), num_pos, num_neg and resolution_bits (ints): the
        fewest key bits kept by a bin holding a positive and another pixel, the only bins whose width can
        change a metric (32: each is one float32 value, so the metrics are exact for the float32 scores)."""
        if self._float16 is not None and self._keys.slots_used <= 1 and self.bits >= 19:  # float16 counts alone: exact
            neg, pos = self._float16_by_key()[:, ::-1]
            fp, at = np.cumsum(neg), np.flatnonzero(pos)
            return {**summarize(pos[at], np.cumsum(pos[at]), fp[at], neg[at], int(fp[-1])), "resolution_bits": 32}
        at, pos, neg_at, fp, num_neg = self._hist.positive_bins()
        out = summarize(pos, np.cumsum(pos), fp, neg_at, num_neg)
        out["resolution_bits"] = self._resolution_bits(at, pos, neg_at)
        return out

    def resolution_bits(self) -> int:
        """``compute``'s resolution_bits alone (e.g. for conventions that read these counts by other rules)."""
        at, pos, neg_at, _, _ = self._hist.positive_bins()
        return self._resolution_bits(at, pos, neg_at)

    def _resolution_bits(self, at: np.ndarray, pos: np.ndarray, neg_at: np.ndarray) -> int:
        tied = at[pos + neg_at > 1]  # bins where a coarser bin can change a metric
        return min(16 + int(self._hist.describe(tied)[2].min()), self.bits) if tied.size else 32

    def score_range(self) -> tuple[float, float]:
        """(lowest score, lower edge of the highest bin): where the counted scores lie; (NaN, NaN) when empty."""
        keys, _, _ = self.descending_bins()
        if not keys.size:
            return float("nan"), float("nan")
        return key_as_float(int(keys[-1])), key_as_float(int(keys[0]))

    def threshold_at_tpr(self, tpr: float) -> float:
        """Score threshold t of the first bin (scanning down) whose TPR reaches ``tpr``: its lower edge, so
        ``score >= t`` on the float32 scores selects exactly that bin and those above. NaN without
        positives. -0.0 and +0.0 share one key; the edge of their bin is given as -0.0."""
        if not 0.0 < tpr <= 1.0:
            raise ValueError(f"tpr={tpr}: use a rate in (0, 1]")
        at, pos, _, _, _ = self._hist.positive_bins()
        if not at.size:
            return float("nan")
        tp = np.cumsum(pos)
        return key_as_float(int(self._hist.edges(at[[first_reaching(tp, int(tp[-1]), tpr)]])[0]))

    def threshold_at_best_f1(self) -> tuple[float, float]:
        """(t, F1): the lower edge of the bin where pixel F1 of ``score >= t`` is largest (the first such bin
        scanning down), and that F1. (NaN, NaN) without positives."""
        at, pos, _, fp, _ = self._hist.positive_bins()
        if not at.size:
            return float("nan"), float("nan")
        tp = np.cumsum(pos)
        f1 = 2 * tp / (tp + fp + tp[-1])
        best = int(np.argmax(f1))
        return key_as_float(int(self._hist.edges(at[[best]])[0])), float(f1[best])

    def curves(self, max_points: int = 200) -> dict[str, dict[str, list[float]]]:
        """ROC and PR curves thinned to about ``max_points`` points (``curves.thinned_curves``), for plots."""
        _, pos, neg = self.descending_bins(edges=False)
        return thinned_curves(pos, neg, max_points)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Compact form for saving or sending between processes: nonzero bins only, each ``index`` encoding
        the bin's lowest monotone key and its resolution as (key << 5) | e, e the key bits kept below 16."""
        hi, sub, e, pos, neg = self._hist.entries()
        return {"bits": np.array(self.bits), "index": (((hi << 16) | (sub << (16 - e))) << 5) | e,
                "pos": pos, "neg": neg}

    @classmethod
    def from_state_dict(cls, d: dict[str, np.ndarray]) -> "PixelMetricState":
        """Rebuild a state written by ``state_dict``."""
        state = cls(int(d["bits"]))
        index = np.asarray(d["index"], np.int64)
        pos, neg = np.asarray(d["pos"], np.int64), np.asarray(d["neg"], np.int64)
        e, pattern = index & 31, index >> 5
        if index.size and (e.max() > 16 or pattern.max() >> 32 or min(pos.min(), neg.min()) < 0):
            raise ValueError("not a PixelMetricState.state_dict: bin indices or counts out of range")
        state._add_entries((pattern >> 16, (pattern & 0xFFFF) >> (16 - e), e, pos, neg))
        return state

    def nbytes(self) -> int:
        """Memory held by the state's arrays (under 64 MiB)."""
        return self._hist.nbytes()

    def __repr__(self) -> str:
        return f"PixelMetricState(bits={self.bits}, pixels={self._total}, level={self._hist.level})"


def pixel_metrics(labels: Any, scores: Any, *, ignore_index: int = IGNORE_LABEL, exact: bool = True) -> dict:
    """Pooled AUROC, AP, FPR95, num_pos, num_neg of one label/score array pair (e.g. a stacked split).

    ``exact=True`` sorts positives and negatives separately and counts negatives at or above each distinct
    positive score (``sorted_counts``): equal to scikit-learn; float16 scores are counted per value by
    ``PixelMetricState`` instead, also exact and faster again.
    ``exact=False`` uses ``PixelMetricState`` (bounded memory; its result adds ``resolution_bits``).
    """
    if not exact or np.asarray(scores).dtype == np.float16:  # float16: the state's counts are exact, and faster
        state = PixelMetricState()
        state.update(labels, scores, ignore_index=ignore_index)
        out = state.compute()
        return out if not exact else {k: out[k] for k in ("auroc", "ap", "fpr95", "num_pos", "num_neg")}
    pos, neg = scores_by_class(labels, scores, ignore_index)
    if pos.size == 0:
        return summarize(pos, pos, pos, pos, neg.size)
    count, fp, neg_at = exact_counts(pos, neg)
    return summarize(count, np.cumsum(count), fp, neg_at, neg.size)
