"""Named pixel-metric conventions of published evaluation code, each a streaming, mergeable state.

Papers disagree by several AP points because their evaluation code differs (README, "Conventions");
each convention here is one such code path, selected by name and recorded with its numbers. ``canonical``
is oodbench's default. Labels: 0 in-distribution, 1 OoD (the positive class), 255 ignore; higher score =
more OoD. One ``update`` call is one frame. The pooled conventions bin scores as ``PixelMetricState(bits)``
does (exact for float16 scores, float32 to ``bits`` key bits), so each differs from ``canonical`` only in
the rule it names. Undefined values are NaN (no OoD pixels; no in-distribution pixels for AUROC/FPR95).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..labels import IGNORE_LABEL, OOD_LABEL
from ..errors import ScoreError
from ..registry import Registry
from .curves import fpr95_interpolated, fpr95_nearest, fpr95_strict, summarize, trapezoid_ap
from .pixel import PixelMetricState
from .pixel_inputs import finite_scores_by_class

__all__ = ["CONVENTIONS", "ConventionState", "convention_from_state_dict", "create_convention", "list_conventions"]

CONVENTIONS: Registry = Registry("convention", "oodbench.conventions")
NAN = float("nan")


def create_convention(name: str, **kwargs: Any) -> "ConventionState":
    """A fresh state of the named convention; unknown names raise ``UnknownNameError`` with close names."""
    return CONVENTIONS.create(name, **kwargs)


def list_conventions(pattern: str = "*") -> list[str]:
    """Registered convention names matching a glob pattern, sorted."""
    return CONVENTIONS.list(pattern)


def convention_from_state_dict(d: dict) -> "ConventionState":
    """Rebuild any convention's state from its ``state_dict`` (the name travels inside it)."""
    return CONVENTIONS.get(str(d["convention"])).from_state_dict(d)


# ---- validation shared by the conventions (their curve rules: ``curves``) -----------------------------


def as_float16(part: np.ndarray, what: str) -> np.ndarray:
    """Finite scores cast to float16, as SegmentMeIfYouCan stores them; overflow is an error, not inf."""
    with np.errstate(over="ignore"):
        half = part.astype(np.float16)
    if not np.isfinite(half).all():
        n = int(np.count_nonzero(~np.isfinite(half)))
        raise ScoreError(
            f"{n} non-ignored pixel(s) have |score| > 65504, beyond float16, which {what} casts scores to: "
            "rescale the scores into float16 range (e.g. probabilities) or use another convention"
        )
    return half


# ---- the states ---------------------------------------------------------------------------------------

class ConventionState:
    """One named convention as a torchmetrics-style state: ``update`` per frame, ``merge``, ``compute``."""

    name = ""
    description = ""
    _SETTINGS: tuple[str, ...] = ()

    def update(self, labels: Any, scores: Any, *, ignore_index: int = IGNORE_LABEL) -> None:
        raise NotImplementedError

    def compute(self) -> dict:
        raise NotImplementedError

    def _merge(self, other: "ConventionState") -> None:
        raise NotImplementedError

    def _arrays(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _load(self, d: dict) -> None:
        raise NotImplementedError

    def _settings(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._SETTINGS}

    def reset(self) -> None:
        """Forget every counted frame; the convention and its settings stay."""
        self.__dict__.update(type(self)(**self._settings()).__dict__)

    def share(self, pixel: PixelMetricState) -> bool:
        """Read its counts from ``pixel``, a state fed with the same frames elsewhere (the record's own), instead
        of counting every pixel again; True if it does, and then the owner alone updates and merges ``pixel``."""
        return False

    def merge(self, other: "ConventionState") -> "ConventionState":
        """Add another state of this convention and settings in place (a shard, a process); return self.
        Frame-ordered states append the other's frames after their own."""
        if type(other) is not type(self) or other._settings() != self._settings():
            raise ValueError(f"cannot merge {other!r} into {self!r}: the same convention and settings are needed")
        self._merge(other)
        return self

    def state_dict(self) -> dict[str, np.ndarray]:
        """Arrays only (np.savez-able), the convention name and settings included."""
        settings = {k: np.array(v) for k, v in self._settings().items()}
        return {"convention": np.array(self.name), **settings, **self._arrays()}

    @classmethod
    def from_state_dict(cls, d: dict) -> "ConventionState":
        """Rebuild a state written by ``state_dict``."""
        if str(d["convention"]) != cls.name:
            raise ValueError(f"state_dict of convention {str(d['convention'])!r} given to {cls.name!r}")
        state = cls(**{k: np.asarray(d[k]).item() for k in cls._SETTINGS})
        state._load(d)
        return state

    def _result(self, **values: Any) -> dict:
        return {"convention": self.name, **values, "description": self.description}

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self._settings().items())
        return f"{type(self).__name__}({settings})"


class _PooledState(ConventionState):
    """Pooled over every non-ignored pixel; scores binned as ``PixelMetricState(bits)`` bins them."""

    _SETTINGS = ("bits",)
    _KEYS: tuple[str, ...] = ("auroc", "ap", "fpr95")  # the numbers this convention reports

    def __init__(self, bits: int = 32):
        self.bits = int(bits)
        self._hist = PixelMetricState(self.bits)

    def update(self, labels: Any, scores: Any, *, ignore_index: int = IGNORE_LABEL) -> None:
        self._hist.update(labels, scores, ignore_index=ignore_index)

    def share(self, pixel: PixelMetricState) -> bool:
        """A fresh pooled state binned like ``pixel`` differs from it only in the rule: it adopts its counts."""
        if pixel.bits != self.bits or self._hist._total:
            return False
        self._hist = pixel
        return True

    def _merge(self, other: "_PooledState") -> None:
        self._hist.merge(other._hist)

    def _arrays(self) -> dict[str, np.ndarray]:
        d = self._hist.state_dict()
        return {"index": d["index"], "pos": d["pos"], "neg": d["neg"]}

    def _load(self, d: dict) -> None:
        self._hist = PixelMetricState.from_state_dict({"bits": self.bits, **{k: d[k] for k in ("index", "pos", "neg")}})

    def _rule(self, pos: np.ndarray, neg: np.ndarray, tp: np.ndarray, fp: np.ndarray) -> dict:
        """The convention's numbers from per-threshold and cumulative counts (descending scores, >= 1 OoD)."""
        raise NotImplementedError

    def compute(self) -> dict:
        _, pos, neg = self._hist.descending_bins()
        tp, fp = np.cumsum(pos), np.cumsum(neg)
        num_pos, num_neg = (int(tp[-1]), int(fp[-1])) if tp.size else (0, 0)
        with np.errstate(divide="ignore", invalid="ignore"):  # rates without negatives become NaN below
            values = self._rule(pos, neg, tp, fp) if num_pos else {}
        values = {k: values.get(k, NAN) for k in self._KEYS}
        if not num_neg:
            values.update({k: NAN for k in ("auroc", "fpr95") if k in values})
        # the binned scores' resolution, as the canonical metrics report it (32: exact for the float32 scores)
        return self._result(**values, num_pos=num_pos, num_neg=num_neg, resolution_bits=self._hist.resolution_bits(),
                            **self._counters())

    def _counters(self) -> dict:
        return {}


@CONVENTIONS.register("canonical")
class CanonicalState(_PooledState):
    name = "canonical"
    description = ("oodbench default = PixelMetricState: pooled; AP step sum (sklearn average_precision_score), "
                   "trapezoid AUROC, FPR at the first threshold with TPR >= 0.95 (Fishyscapes, SegmentMeIfYouCan)")

    def _rule(self, pos, neg, tp, fp):
        return summarize(pos, tp, fp, neg, int(fp[-1]))


@CONVENTIONS.register("trapezoid_ap")
class TrapezoidAPState(_PooledState):
    name = "trapezoid_ap"
    description = ("AP = trapezoid area under sklearn precision_recall_curve incl. its (0, 1) end; pooled "
                   "(SegmentMeIfYouCan before Aug 2023: np.trapz(precisions, recalls), binned, no (0, 1) end)")
    _KEYS = ("ap",)

    def _rule(self, pos, neg, tp, fp):
        return {"ap": trapezoid_ap(tp, fp)}


@CONVENTIONS.register("fpr95_nearest")
class FPR95NearestState(_PooledState):
    name = "fpr95_nearest"
    description = ("FPR at the threshold whose TPR is nearest 0.95, ties to the lower threshold, none past full "
                   "recall (PEBAL code/utils/pyt_utils.py fpr_and_fdr_at_recall; meta-ood's own variant is hist100)")
    _KEYS = ("fpr95",)

    def _rule(self, pos, neg, tp, fp):
        return {"fpr95": fpr95_nearest(tp, fp)}


@CONVENTIONS.register("fpr95_strict")
class FPR95StrictState(_PooledState):
    name = "fpr95_strict"
    description = ("FPR at the first point of sklearn roc_curve (drop_intermediate=True) with TPR > 0.95 "
                   "(RbA support.py, DenseHybrid evaluations/base.py calculate_auroc); pooled")
    _KEYS = ("fpr95",)

    def _rule(self, pos, neg, tp, fp):
        return {"fpr95": fpr95_strict(tp, fp)}


@CONVENTIONS.register("fpr95_interpolated")
class FPR95InterpolatedState(_PooledState):
    name = "fpr95_interpolated"
    description = ("Mask2Anomaly anomaly_utils/anomaly_inference.py: frames without OoD pixels skipped; pooled "
                   "sklearn AUROC and AP; FPR = np.interp(0.95, tpr, fpr) on roc_curve (ood_metrics.fpr_at_95_tpr)")

    def __init__(self, bits: int = 32):
        super().__init__(bits)
        self.num_frames = 0
        self.num_frames_skipped = 0

    def update(self, labels: Any, scores: Any, *, ignore_index: int = IGNORE_LABEL) -> None:
        if np.any(np.asarray(labels) == OOD_LABEL):
            self._hist.update(labels, scores, ignore_index=ignore_index)
        else:
            finite_scores_by_class(labels, scores, ignore_index)  # a skipped frame must still be a valid one
            self.num_frames_skipped += 1
        self.num_frames += 1

    def _rule(self, pos, neg, tp, fp):
        return {**summarize(pos, tp, fp, neg, int(fp[-1])), "fpr95": fpr95_interpolated(tp, fp)}

    def share(self, pixel: PixelMetricState) -> bool:
        return False  # it skips frames without OoD pixels, so its counts are not the record's

    def _counters(self) -> dict:
        return {"num_frames": self.num_frames, "num_frames_skipped": self.num_frames_skipped}

    def _merge(self, other: "FPR95InterpolatedState") -> None:
        super()._merge(other)
        self.num_frames += other.num_frames
        self.num_frames_skipped += other.num_frames_skipped

    def _arrays(self) -> dict[str, np.ndarray]:
        return {**super()._arrays(), "num_frames": np.array(self.num_frames),
                "num_frames_skipped": np.array(self.num_frames_skipped)}

    def _load(self, d: dict) -> None:
        super()._load(d)
        self.num_frames, self.num_frames_skipped = int(d["num_frames"]), int(d["num_frames_skipped"])
