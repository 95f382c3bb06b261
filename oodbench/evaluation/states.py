"""Every metric state one evaluation fills, as one object that consumes scored samples, merges with the
states of other shards or ranks, and reduces across ``torch.distributed`` processes."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..metrics.bootstrap import BootstrapCollector
from ..metrics.components import ComponentMetricState
from ..metrics.conventions import ConventionState
from ..metrics.instances import InstanceMetricState
from ..metrics.pixel import PixelMetricState
from .categories import PerCategory
from .score_pass import Scored
from ..segments.collector import SegmentCollector


META_SEGMENTS = ("the meta stage's segments (8-connected components of segment score >= threshold off ignored "
                 "pixels), confidence = 1 - the meta classifier's out-of-fold P(false positive)")


@dataclass
class EvaluationStates:
    """Pixel state, named conventions, the meta stage's segments, component metrics and the bootstrap."""

    pixel: PixelMetricState = field(default_factory=PixelMetricState)
    conventions: dict[str, ConventionState] = field(default_factory=dict)
    segments: SegmentCollector | None = None
    components: ComponentMetricState | None = None
    bootstrap: BootstrapCollector | None = None
    instances: InstanceMetricState | None = None
    pixel_by_category: PerCategory | None = None  # where the dataset names frame categories
    components_by_category: PerCategory | None = None

    def __post_init__(self) -> None:
        # pooled conventions binned like the pixel state read its counts instead of counting every pixel again
        self.shared = {name for name, state in self.conventions.items() if state.share(self.pixel)}

    def consume(self, item: Scored) -> None:
        label, score = item.sample.label, item.score
        self.pixel.update(label, score)
        for name, state in self.conventions.items():
            if name not in self.shared:
                state.update(label, score)
        if self.segments is not None and item.segments is not None:
            self.segments.add(item.segments)
        if self.pixel_by_category is not None:
            self.pixel_by_category.update(item)
        self.consume_components(item)

    def consume_components(self, item: Scored) -> None:
        """Component sums and the bootstrap (which needs them); alone, the oracle threshold's second pass."""
        frame = None
        if self.components is not None:
            measured = self.components.measure(item.sample.label, item.score)  # once, for the split and its category
            frame = self.components.add(measured)
            by_category = self.components_by_category
            category = by_category.state_for(item) if by_category is not None else None
            if category is not None:
                category.add(measured)
        if self.instances is not None:
            self.instances.update(item.sample.label, item.score, item.sample.instance_label)
        if self.bootstrap is not None:
            self.bootstrap.update(item.sample.label, item.score, components=frame, image_id=item.sample.id)

    def meta_instances(self, proba: np.ndarray, threshold: float) -> dict[str, Any] | None:
        """Instance AP of the meta stage's segments formed at ``threshold``, ranked by 1 - ``proba`` (the collector's
        ``out_of_fold`` P(FP)); None when some image's segments carry no overlap table. Undefined (NaN, with the
        reason) when the meta classifier could not test every segment (cross-validation needs two images)."""
        if self.segments is None or any(im.instances is None for im in self.segments.images):
            return None
        state = InstanceMetricState(threshold, predictions=META_SEGMENTS)
        for im, p in zip(self.segments.images, self.segments.per_image(proba)):
            state.add_table(im.instances, 1.0 - np.nan_to_num(p, nan=1.0))
        result = state.compute()
        untested = int(np.isnan(np.asarray(proba, np.float64)).sum())
        if untested:
            nan = float("nan")
            result.update(ap=nan, ap50=nan, ap_per_overlap=dict.fromkeys(result["ap_per_overlap"], nan),
                          undefined=f"the meta classifier tested {np.size(proba) - untested} of {np.size(proba)} "
                                    f"segments (its cross-validation needs two images or more), so the others have "
                                    f"no confidence")
        return result

    def merge(self, other: "EvaluationStates") -> "EvaluationStates":
        """Add another shard's states (shards in dataset order keep order-dependent states equal to one pass)."""
        if other.shared != self.shared:
            raise ValueError(f"cannot merge states whose conventions share the pixel state differently "
                             f"({sorted(other.shared)} into {sorted(self.shared)})")
        self.pixel.merge(other.pixel)
        for name, state in self.conventions.items():
            if name not in self.shared:
                state.merge(other.conventions[name])
        for part in ("segments", "components", "bootstrap", "instances", "pixel_by_category", "components_by_category"):
            mine, theirs = getattr(self, part), getattr(other, part)
            if mine is not None and theirs is not None:
                mine.merge(theirs)
        return self


def world() -> tuple[int, int]:
    """(rank, world size) of an initialized torch.distributed group; (0, 1) otherwise."""
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover - torch is a dependency
        return 0, 1
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_merged(states: EvaluationStates, parts: tuple[str, ...] | None = None) -> EvaluationStates:
    """Every rank's states merged in rank order, on every rank (gloo or nccl); the states themselves when alone.
    ``parts`` limits the exchange to some fields (e.g. the oracle pass's components and bootstrap)."""
    rank, size = world()
    if size == 1:
        return states
    import torch.distributed as dist

    payload: dict[str, Any] = {p: getattr(states, p) for p in parts} if parts else {"all": states}
    gathered: list[Any] = [None] * size
    dist.all_gather_object(gathered, payload)
    if not parts:
        merged = gathered[0]["all"]
        for other in gathered[1:]:
            merged.merge(other["all"])
        return merged
    for p in parts:
        first = gathered[0][p]
        if first is None:
            continue
        for other in gathered[1:]:
            first.merge(other[p])
        setattr(states, p, first)
    return states
