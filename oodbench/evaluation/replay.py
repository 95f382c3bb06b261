"""Labels and score maps of a pass kept in memory, so that a second pass over the split (components at the oracle
threshold) neither decodes images again nor reads cached maps back."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..data.base import Sample
from .map_store import MapStore
from .score_cache import ScoreCache
from .score_pass import Consumer, Part, Scored, consume, score_pass


class Replay:
    """A consumer that keeps the first samples of a pass, in order, while they fit in ``budget`` bytes: id, label
    and a copy of the score map in ``dtype`` (float16 holds a float16-cached map exactly). Images are dropped.
    Maps of the samples that do not fit go to ``spill``, if given (a run without a score cache)."""

    budget = 256 << 20

    def __init__(self, dtype: str | np.dtype = np.float32, spill: ScoreCache | None = None):
        self.dtype, self.spill = np.dtype(dtype), spill
        self.items: list[tuple[Sample, np.ndarray]] = []
        self.used, self.full = 0, False

    def __call__(self, item: Scored) -> None:
        label, instances = item.sample.label, item.sample.instance_label
        size = item.score.size * self.dtype.itemsize + sum(a.nbytes for a in (label, instances) if a is not None)
        if self.full or self.used + size > self.budget:
            self.full = True  # later samples would leave a gap: the rest is read again
            if self.spill is not None:
                self.spill.put(item.sample.id, self.spill.stored(item.sample.id, item.score), item.sample.image)
            return
        sample = Sample(item.sample.id, None, label, item.sample.meta,  # no segment labels: components only
                        instance_label=instances)
        self.items.append((sample, np.array(item.score, dtype=self.dtype)))  # a copy: methods may reuse buffers
        self.used += size

    def __len__(self) -> int:
        return len(self.items)


def second_pass(replay: Replay, dataset: Sequence[Sample], batch_size: int, progress: bool, desc: str,
                consumers: list[Consumer], cache: ScoreCache) -> None:
    """Hand every sample of ``dataset`` to ``consumers`` again, in order: the held ones from memory, the rest
    from ``cache`` (which must hold their maps)."""
    for sample, score in replay.items:
        consume([Scored(sample, score.astype(np.float32))], consumers, dataset)
    score_pass(None, Part(dataset, range(len(replay), len(dataset))), batch_size, progress, desc, consumers,
               MapStore(cache), done=len(replay))
