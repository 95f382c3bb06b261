"""What one image's diagnostic panel shows: the frame, its labels, the method's score map and, for methods with
a meta stage, the segments before and after meta classification. The meta classifier's predictions come from
the same out-of-fold procedure ``run`` uses (all images of the split, the run's protocol and seed), so the
panel shows what the record counts, not a classifier refitted on the one image."""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.base import Dataset
from ..labels import IGNORE_LABEL
from ..errors import OodbenchError
from ..methods import Method
from ..evaluation.map_store import MapStore
from ..evaluation.prepare import prepare  # the run's own set-up and score-cache keys: show reads what run wrote
from ..evaluation.score_pass import Scored, score_pass
from ..segments.collector import SegmentCollector, count_errors
from ..segments.features import form_segments

__all__ = ["PanelData", "PanelSegments", "find_index", "panel_data", "segment_map"]


@dataclass
class PanelSegments:
    """The chosen image's segments (int32 HxW, 0 = none, k = segment k) and, per segment k - 1: out-of-fold
    P(false positive) (NaN: untestable), whether the meta classifier removes it, whether it is a false
    positive (touches no OoD pixel); FP/FN counts of the image and of the whole split, before and after."""

    segments: np.ndarray
    proba: np.ndarray
    removed: np.ndarray
    false_positive: np.ndarray
    threshold: float
    image_counts: dict[str, int]
    split_counts: dict[str, int]
    protocol: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.proba.size)


@dataclass
class PanelData:
    """Everything the panel draws for one image; ``segments`` is None for methods without a meta stage."""

    method: str
    dataset: str
    split: str
    image_id: str
    image: np.ndarray | None
    label: np.ndarray
    score: np.ndarray
    segments: PanelSegments | None = None
    segment_label: np.ndarray | None = None  # the meta stage's labels where they differ from ``label``


def find_index(ds: Dataset, image_id: str) -> int:
    """Position of ``image_id`` in the split; an unknown id raises an error naming the closest ids."""
    ids = ds.ids
    try:
        return ids.index(image_id)
    except ValueError:
        lower = {i.lower(): i for i in ids}
        close = [i for i in ids if image_id.lower() in i.lower()][:5] or \
            [lower[c] for c in difflib.get_close_matches(image_id.lower(), list(lower), n=5, cutoff=0.3)]
        hint = f"closest ids: {', '.join(close)}" if close else f"first ids: {', '.join(ids[:5])}"
        raise OodbenchError(f"no image {image_id!r} in {ds.name}/{ds.split} ({len(ids)} images); {hint}") from None


def segment_map(score: np.ndarray, label: np.ndarray, threshold: float) -> np.ndarray:
    """The segments ``image_segments`` forms (components of score >= threshold off ignore pixels), 1..n in
    the order of its feature rows."""
    return form_segments(score, label == IGNORE_LABEL, threshold)[0]


def _meta_pass(m: Method, ds: Dataset, chosen: str, threshold: float, batch_size: int, progress: bool,
               protocol: str, seed: int, cache) -> tuple[Scored, PanelSegments]:
    """Score the whole split as ``run`` does (same cache, same per-image segments), keep the chosen frame."""
    collector, kept = SegmentCollector(), {}

    def consume(item: Scored) -> None:
        collector.add(item.segments)
        if item.sample.id == chosen:
            kept["item"] = item

    score_pass(m, ds, batch_size, progress, f"{m.name} on {ds.name}/{ds.split}", [consume],
               MapStore(cache, threshold))
    stage = m.segment_stage
    preds = collector.image_predictions(protocol=protocol, n_splits=stage.n_splits, seed=seed, progress=progress)
    item = kept["item"]
    seg_map = segment_map(item.score, item.sample.labels_for_segments, threshold)
    proba, removed = preds[chosen]
    if int(seg_map.max(initial=0)) != proba.size:
        raise RuntimeError(f"{chosen}: {seg_map.max()} segments on the map but {proba.size} predictions")
    _, y, _, num_gt, pairs = collector.arrays()
    all_removed = np.concatenate([preds[im.image_id][1] for im in collector.images] or [np.zeros(0, bool)])
    mine = item.segments
    segs = PanelSegments(
        segments=seg_map, proba=proba, removed=removed, false_positive=mine.targets.astype(bool), threshold=threshold,
        image_counts=count_errors(mine.targets, removed, mine.num_gt, mine.pairs),
        split_counts=count_errors(y, all_removed, num_gt, pairs),
        protocol={"protocol": protocol, "n_splits": stage.n_splits, "seed": seed, "num_images": len(collector.images)})
    return item, segs


def panel_data(method: str | Method, dataset: str = "synthetic", image_id: str = "", split: str = "test",
               data_root: str | Path | None = None, seed: int = 0, batch_size: int = 4,
               dataset_options: dict[str, Any] | None = None, meta_protocol: str | None = None,
               score_cache: bool = True, cache_root: str | Path | None = None, progress: bool = False,
               checkpoint: str | Path | None = None, network: str | None = None) -> PanelData:
    """The panel content of ``image_id`` in ``dataset/split`` for ``method``, set up exactly as ``run`` sets
    it up (``prepare``: seed, checkpoint, network, segment threshold, and the score cache, whose float16 maps a run with
    the same settings evaluates and a later ``show`` reads instead of running the model; then the run's
    cross-validation). Without a meta stage only that frame is scored; with one, the whole split is: the
    out-of-fold predictions need every image."""
    prep = prepare(method, dataset, split, data_root, dataset_options, seed, checkpoint, batch_size, progress,
                   score_cache, cache_root, network=network)
    ds, m = prep.ds, prep.method
    index = find_index(ds, image_id)
    if m.segment_stage is None:
        kept: list[Scored] = []
        score_pass(m, [ds[index]], batch_size, False, "", [kept.append], MapStore(prep.cache(ds)))
        sample, score = kept[0].sample, kept[0].score
        return PanelData(m.name, ds.name, ds.split, sample.id, sample.image, sample.label, score)
    threshold, _ = prep.segment_threshold()
    protocol = meta_protocol or m.segment_stage.protocol
    item, segs = _meta_pass(m, ds, ds.ids[index], threshold, batch_size, progress, protocol, seed, prep.cache(ds))
    s = item.sample
    return PanelData(m.name, ds.name, ds.split, s.id, s.image, s.label, item.score, segs, s.segment_label)
