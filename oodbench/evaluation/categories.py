"""Per-category results: one metric state per frame category (``Sample.meta["category"]``, e.g. Road Anomaly's
animals, obstacles, cones, lost, vehicle), filled from the same scored frames as the split's own states."""
from __future__ import annotations

from collections import Counter
from typing import Any, Callable

from .score_pass import Scored


class PerCategory:
    """A state per category, made by ``factory`` on the category's first frame; ``update``, ``merge``, ``compute``
    like the states it holds. Frames without a category count only in the split's own states."""

    def __init__(self, factory: Callable[[], Any]):
        self.factory = factory
        self.states: dict[str, Any] = {}
        self.images: Counter[str] = Counter()

    def update(self, item: Scored) -> None:
        state = self.state_for(item)
        if state is not None:
            state.update(item.sample.label, item.score)

    def state_for(self, item: Scored) -> Any:
        """The state of the item's category (made on its first frame, which is counted), or None without one; for
        callers that feed it what they measured once for several states."""
        category = item.sample.meta.get("category")
        if category is None:
            return None
        if category not in self.states:
            self.states[category] = self.factory()
        self.images[category] += 1
        return self.states[category]

    def merge(self, other: "PerCategory") -> "PerCategory":
        for category, state in other.states.items():
            if category in self.states:
                self.states[category].merge(state)
            else:
                self.states[category] = state
        self.images.update(other.images)
        return self

    def compute(self, finish: Callable[[dict[str, Any], str], dict[str, Any]] = lambda d, _: d) -> dict[str, Any]:
        """``{category: {"num_images": n, **state.compute()}}`` in name order; ``finish(result, category)`` may amend
        each result (e.g. mark pixel metrics of a category without both classes as undefined)."""
        return {category: {"num_images": self.images[category], **finish(self.states[category].compute(), category)}
                for category in sorted(self.states)}

    def __bool__(self) -> bool:
        return bool(self.states)
