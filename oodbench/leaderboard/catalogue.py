"""The metric catalogue: each metric the leaderboard tables, the CI comparison and the paper view read from a
record, where it lives, which way is better, whether it is a rate (a fraction, which sources may give in percent)
or a count, and whether its value depends on the pixel-metric convention."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Metric:
    path: str  # dotted, under the record's "metrics"
    higher_is_better: bool
    rate: bool = True
    by_convention: bool = False

    @property
    def section(self) -> str:
        return self.path.split(".")[0]


CATALOGUE: dict[str, Metric] = {
    "auroc": Metric("pixel.auroc", True, by_convention=True),
    "ap": Metric("pixel.ap", True, by_convention=True),
    "fpr95": Metric("pixel.fpr95", False, by_convention=True),
    "siou": Metric("components.siou", True),
    "ppv": Metric("components.ppv", True),
    "f1_mean": Metric("components.f1_mean", True),
    "fp_before": Metric("segments.fp_before", False, rate=False),
    "fn_before": Metric("segments.fn_before", False, rate=False),
    "fp_after": Metric("segments.fp_after", False, rate=False),
    "fn_after": Metric("segments.fn_after", False, rate=False),
    "meta_auroc": Metric("segments.meta_auroc", True),
    "meta_ap": Metric("segments.meta_ap", True),
    "meta_accuracy": Metric("segments.meta_accuracy", True),
    "miou": Metric("segmentation.miou", True),
}
RATES = ("auroc", "ap", "fpr95", "siou", "ppv", "f1_mean")  # the leaderboard's metric columns
COUNTS = ("fp_before", "fp_after", "fn_before", "fn_after")  # the paper's segment counts


def lookup(metrics: Any, path: str) -> Any:
    """The value at a dotted ``path`` in a record's metrics; None where any part is absent."""
    node = metrics
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node
