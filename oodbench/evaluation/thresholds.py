"""How a score threshold for component metrics is chosen, and the record of that choice.

Component metrics need a binary prediction. The official SegmentMeIfYouCan leaderboard takes each split's own
best pixel-F1 threshold (an oracle that sees the test labels); a threshold given up front or fixed on a
validation split is the honest alternative. Every record says which was used."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import OodbenchError
from ..metrics.pixel import PixelMetricState

RULES = ("best_f1", "tpr95")
ORACLE_RULES = ("best_f1", "smiyc_code")  # smiyc_code: as road-anomaly-benchmark's code picks it


@dataclass(frozen=True)
class ThresholdPolicy:
    """``given`` (a value), ``validation`` (``rule`` applied on ``split``) or ``oracle`` (best F1 on the
    evaluated split itself; rule ``smiyc_code``: the threshold SegmentMeIfYouCan's code picks as its best F1)."""

    kind: str
    value: float | None = None
    split: str | None = None
    rule: str = "best_f1"

    @classmethod
    def parse(cls, text: str | float) -> "ThresholdPolicy":
        """``0.5`` | ``oracle`` | ``oracle:smiyc_code`` | ``SPLIT`` or ``SPLIT:RULE`` (rule ``best_f1`` or ``tpr95``),
        e.g. ``val:tpr95``."""
        try:
            value = float(text)
        except ValueError:
            value = None
        if value is not None:
            if not np.isfinite(value):
                raise OodbenchError(f"threshold {text!r}: give a finite number")
            return cls("given", value=value)
        text = str(text)
        split, _, rule = text.partition(":")
        if split == "oracle":
            if (rule or "best_f1") not in ORACLE_RULES:
                raise OodbenchError(f"threshold {text!r}: the oracle rules are {', '.join(ORACLE_RULES)}")
            return cls("oracle", rule=rule or "best_f1")
        rule = rule or "best_f1"
        if not split or rule not in RULES:
            raise OodbenchError(f"threshold {text!r}: write a number (0.5), 'oracle' (or 'oracle:smiyc_code'), or "
                                f"SPLIT[:RULE] with RULE one of {', '.join(RULES)}, e.g. val:best_f1")
        return cls("validation", split=split, rule=rule)

    def choose(self, state: PixelMetricState | None) -> float:
        """The threshold from ``state``: the validation split's (``validation``) or the evaluated split's
        (``oracle``) pooled pixel state; ``given`` needs none."""
        if self.kind == "given":
            return float(self.value)
        if state is None:
            raise ValueError(f"threshold policy {self.kind!r} needs a pixel state")
        if self.rule == "tpr95" and self.kind == "validation":
            return self.below(state.threshold_at_tpr(0.95))
        return self.below(state.threshold_at_best_f1()[0])

    def needs_conventions(self) -> list[str]:
        """Conventions whose bins the rule reads (``smiyc_code``: smiyc768's), to be counted in the first pass."""
        return ["smiyc768"] if self.kind == "oracle" and self.rule == "smiyc_code" else []

    def oracle(self, pixel: PixelMetricState, conventions: dict[str, Any]) -> tuple[float, float]:
        """(threshold, its pixel F1) on the evaluated split's states: best F1 of the pooled pixel state, or
        (``smiyc_code``) the reference code's own pick on the smiyc768 bins, used as it uses it (score > t)."""
        if self.rule == "smiyc_code":
            threshold, best_f1 = conventions["smiyc768"].code_best_f1_threshold()
            return self.checked(threshold), best_f1
        edge, best_f1 = pixel.threshold_at_best_f1()
        return self.below(edge), best_f1

    def below(self, edge: float) -> float:
        """The component threshold for a pixel state's lower bin ``edge``; a NaN edge (no OoD pixels) is refused."""
        edge = self.checked(edge)
        # the state selects score >= edge; components predict score > t (SegmentMeIfYouCan), so t sits just below
        return float(np.nextafter(np.float32(edge), np.float32(-np.inf)))

    def checked(self, threshold: float) -> float:
        """``threshold``, unless it is NaN: the split it was chosen on has no OoD pixels, an error naming the fix."""
        if not np.isfinite(threshold):
            where = f"split {self.split!r}" if self.kind == "validation" else "the evaluated split"
            raise OodbenchError(f"no component threshold: {where} has no OoD pixels to choose one from; give a "
                                f"number (--threshold 0.5) or another split")
        return float(threshold)

    def describe(self, threshold: float, **extra: Any) -> dict[str, Any]:
        """What goes into the record next to the component metrics."""
        text = {
            "given": "given before evaluation",
            "validation": f"fixed on split {self.split!r} by rule {self.rule}",
            "oracle": "best pixel-F1 threshold of the evaluated split itself (oracle: it sees the test labels; "
                      "what the SegmentMeIfYouCan leaderboard uses)",
        }[self.kind]
        if self.kind == "oracle" and self.rule == "smiyc_code":
            text = ("the threshold SegmentMeIfYouCan's code returns as the best pixel F1 of the evaluated split "
                    "(road-anomaly-benchmark curves_from_cmats on smiyc768 bins: the best point of the curve with "
                    "repeated thresholds collapsed indexes the uncollapsed thresholds); components score > t")
        return {"threshold": float(threshold), "source": self.kind, "rule": None if self.kind == "given" else self.rule,
                "split": self.split, "description": text, **extra}
