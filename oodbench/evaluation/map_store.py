"""Where a pass's scored maps come from and go: the score cache (read, repaired, written in its dtype) and what is
derived from a map there, the meta stage's segments at the threshold the store was built with."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..data.base import Sample
from ..errors import ScoreError
from ..methods import MethodOutput
from ..segments.collector import ImageSegments, image_segments
from .score_cache import BadCacheEntry, ScoreCache


@dataclass
class Scored:
    """One sample after scoring: its checked score map and, with a meta stage, its segments."""

    sample: Sample
    score: np.ndarray
    segments: ImageSegments | None = None


def frame_size(sample: Sample) -> tuple[int, ...]:
    """The shape of a sample's maps: its labels', else its image's."""
    return sample.label.shape if sample.label is not None else sample.image.shape[:2]


class MapStore:
    """A split's score cache (None: maps stay in memory) and the meta stage's ``segment_threshold`` (None: no
    stage), built once by the caller of ``score_pass`` so that the pass itself only scores."""

    def __init__(self, cache: ScoreCache | None = None, segment_threshold: float | None = None):
        self.cache, self.segment_threshold = cache, segment_threshold

    def _cached(self, sample: Sample, repair: bool) -> tuple[np.ndarray, ImageSegments | None] | None:
        """A sample's cached map (and segments), or None on a miss. A bad cache file (unreadable, changed since it
        was written, not the sample's shape) is never used: with ``repair`` (a model scores misses) it is discarded
        with a warning and read as a miss, without (reading the cache only) it is an error naming the file."""
        try:
            return self.cache.get(sample.id, sample.image, self.segment_threshold, shape=frame_size(sample))
        except BadCacheEntry as bad:
            if not repair:
                raise ScoreError(f"{bad}; it was not used. Score sample {sample.id!r} again: rerun `oodbench run` "
                                 f"with the same method, checkpoint, data and options (before a merge: the --shard "
                                 f"I/N that covers the sample, then merge again); it replaces the file") from bad
            self.cache.discard(bad)
            return None

    def lookup(self, batch: list[Sample], repair: bool = True) -> list[Scored] | None:
        """The whole batch from the cache, or None if any map (or segment set the stage needs) is missing."""
        if self.cache is None:
            return None
        scored = []
        for sample in batch:
            hit = self._cached(sample, repair)
            if hit is None:
                return None
            scored.append(Scored(sample, *hit))
        return scored

    def lacking(self, batch: Sequence[Sample]) -> ScoreError:
        """The error for a batch that a pass without a model found incomplete in the cache."""
        missing = [s.id for s in batch if self._cached(s, False) is None]
        return ScoreError(f"score cache {self.cache.folder} lacks samples {missing[:5]} (maps, or segments at "
                          f"threshold {self.segment_threshold}): run the shard(s) that score them first, with "
                          f"the same method, checkpoint, data and options")

    def check_writable(self) -> None:
        """A read-only cache is an error before the model runs, not after."""
        if self.cache is not None:
            self.cache.check_writable()

    def finish(self, batch: list[Sample], out: MethodOutput, scores: list[np.ndarray]) -> list[Scored]:
        """Scored samples of a predicted batch: maps stored in the cache's dtype (metrics see exactly what a resumed
        run reads back), the meta stage's segments formed on them, and both cached."""
        cache, threshold = self.cache, self.segment_threshold
        scored = []
        for k, (sample, score) in enumerate(zip(batch, scores)):
            stored = None
            if cache is not None:
                stored = cache.stored(sample.id, score)
                score = stored.astype(np.float32)
            segments = None
            if threshold is not None:
                segments = image_segments(sample.id, out.probs[k], sample.labels_for_segments, threshold, score,
                                          truth=sample.label, instance_label=sample.instance_label)
            if cache is not None:
                cache.put(sample.id, stored, sample.image, segments, threshold)
            scored.append(Scored(sample, score, segments))
        return scored
