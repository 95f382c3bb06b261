"""One pass of a method over a dataset split: batches of equally sized frames, checked score maps, the meta
stage's per-image segments, and the score cache that lets a pass resume or skip the model."""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from tqdm.auto import tqdm

from ..data.base import Dataset, Sample
from ..errors import LabelError, ScoreError
from ..methods import Method, MethodOutput
from .score_cache import BadCacheEntry, ScoreCache
from ..segments.collector import ImageSegments, image_segments


@dataclass
class Scored:
    """One sample after scoring: its checked score map and, with a meta stage, its segments."""

    sample: Sample
    score: np.ndarray
    segments: ImageSegments | None = None


Consumer = Callable[[Scored], None]


class Part(Sequence[Sample]):
    """The samples of a dataset at some positions, in their order."""

    def __init__(self, dataset: Sequence[Sample], positions: range):
        self.dataset, self.positions = dataset, positions
        self.name, self.split = getattr(dataset, "name", "?"), getattr(dataset, "split", "?")

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, k: int) -> Sample:  # type: ignore[override]
        return self.dataset[self.positions[k]]


class Shard(Part):
    """Block ``index`` of ``count`` contiguous, nearly equal blocks of a dataset (deterministic, order kept)."""

    def __init__(self, dataset: Dataset, index: int, count: int):
        if not 0 <= index < count:
            raise ValueError(f"shard {index}/{count}: write i/N with 0 <= i < N")
        bounds = np.linspace(0, len(dataset), count + 1).round().astype(int)
        super().__init__(dataset, range(bounds[index], bounds[index + 1]))
        self.index, self.count = index, count


def _size(sample: Sample) -> tuple[int, ...]:
    return sample.label.shape if sample.label is not None else sample.image.shape[:2]


def prefetched(dataset: Sequence[Sample], depth: int = 8) -> Iterator[Sample]:
    """The samples in order, decoded by a background thread up to ``depth`` ahead, so that reading and decoding
    files overlaps the model (decoders and numpy release the GIL). Errors surface in the caller, at their sample."""
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def hand_over(item: object) -> bool:
        """Queue ``item`` unless the caller stopped listening; False once it has."""
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def load() -> None:
        try:
            for i in range(len(dataset)):
                if not hand_over(dataset[i]):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, which re-raises it
            hand_over(exc)
            return
        hand_over(done)

    worker = threading.Thread(target=load, name="oodbench-prefetch", daemon=True)
    worker.start()
    try:
        while (item := ready.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


def batches(dataset: Sequence[Sample], batch_size: int, ahead: bool = True) -> Iterator[list[Sample]]:
    """Consecutive samples of equal image size, at most ``batch_size`` at a time (``ahead``: loaded ahead in a
    thread)."""
    batch: list[Sample] = []
    for sample in prefetched(dataset) if ahead else (dataset[i] for i in range(len(dataset))):
        if batch and (len(batch) == batch_size or _size(batch[0]) != _size(sample)):
            yield batch
            batch = []
        batch.append(sample)
    if batch:
        yield batch


def check_scores(method: Method, sample: Sample, score: np.ndarray) -> np.ndarray:
    """Reject score maps that would silently corrupt metrics: wrong shape, NaN or inf."""
    if score.shape != sample.label.shape:
        raise ScoreError(f"method {method.name!r} returned a score map of shape {score.shape} for sample "
                         f"{sample.id!r}, whose label map has shape {sample.label.shape}; return one score per pixel "
                         f"at label resolution (upsample logits before scoring)")
    bad = ~np.isfinite(score)
    if bad.any():
        y, x = np.argwhere(bad)[0]
        raise ScoreError(f"method {method.name!r} returned {int(bad.sum())} NaN/inf scores for sample {sample.id!r} "
                         f"(first at row {y}, column {x}: {score[y, x]}); scores must be finite")
    return score.astype(np.float32, copy=False)


def _cached(cache: ScoreCache, sample: Sample, segment_threshold: float | None,
            repair: bool) -> tuple[np.ndarray, ImageSegments | None] | None:
    """A sample's cached map (and segments), or None on a miss. A bad cache file (unreadable, changed since it was
    written, not the sample's shape) is never used: with ``repair`` (a model scores misses) it is discarded with a
    warning and read as a miss, without (reading the cache only) it is an error naming the file."""
    try:
        return cache.get(sample.id, sample.image, segment_threshold, shape=_size(sample))
    except BadCacheEntry as bad:
        if not repair:
            raise ScoreError(f"{bad}; it was not used. Score sample {sample.id!r} again: rerun `oodbench run` with "
                             f"the same method, checkpoint, data and options (before a merge: the --shard I/N that "
                             f"covers the sample, then merge again); it replaces the file") from bad
        cache.discard(bad)
        return None


def _from_cache(batch: list[Sample], cache: ScoreCache | None, segment_threshold: float | None,
                repair: bool = True) -> list[Scored] | None:
    """The whole batch from the cache, or None if any map (or segment set the stage needs) is missing."""
    if cache is None:
        return None
    scored = []
    for sample in batch:
        hit = _cached(cache, sample, segment_threshold, repair)
        if hit is None:
            return None
        scored.append(Scored(sample, *hit))
    return scored


def _predict(method: Method, batch: list[Sample]) -> tuple[MethodOutput, list[np.ndarray], float]:
    """The method's output for a batch, its checked score maps, and the seconds the method itself took."""
    t0 = time.perf_counter()
    out = method.predict_samples(batch)
    seconds = time.perf_counter() - t0
    return out, [check_scores(method, sample, np.asarray(out.scores[k])) for k, sample in enumerate(batch)], seconds


def _finish(batch: list[Sample], out: MethodOutput, scores: list[np.ndarray], cache: ScoreCache | None,
            segment_threshold: float | None) -> list[Scored]:
    """Scored samples of a predicted batch: maps (and the meta stage's segments) cached, segments formed."""
    scored = []
    for k, (sample, score) in enumerate(zip(batch, scores)):
        stored = None
        if cache is not None:
            stored = cache.stored(sample.id, score)
            score = stored.astype(np.float32)  # metrics see exactly what a resumed run will read back
        segments = None
        if segment_threshold is not None:
            segments = image_segments(sample.id, out.probs[k], sample.labels_for_segments, segment_threshold, score,
                                      truth=sample.label, instance_label=sample.instance_label)
        if cache is not None:
            cache.put(sample.id, stored, sample.image, segments, segment_threshold)
        scored.append(Scored(sample, score, segments))
    return scored


def consume(scored: list[Scored], consumers: list[Consumer], dataset: Sequence[Sample]) -> None:
    """Hand each scored sample to every consumer; a label error names the split and sample."""
    for item in scored:
        try:
            for consumer in consumers:
                consumer(item)
        except LabelError as exc:
            where = f"{getattr(dataset, 'name', '?')}/{getattr(dataset, 'split', '?')}"
            raise LabelError(f"{where} sample {item.sample.id!r}: {exc}") from exc


def _now(fn: Callable, *args: Any) -> Future:
    """``fn(*args)`` run at once, as a finished future (the executor's interface without the thread)."""
    done: Future = Future()
    try:
        done.set_result(fn(*args))
    except BaseException as exc:  # noqa: BLE001 - re-raised by done.result(), as a worker's would be
        done.set_exception(exc)
    return done


def _finish_and_consume(batch, out, scores, cache, segment_threshold, consumers, dataset) -> None:
    consume(_finish(batch, out, scores, cache, segment_threshold), consumers, dataset)


def score_pass(method: Method | None, dataset: Sequence[Sample], batch_size: int, progress: bool, desc: str,
               consumers: list[Consumer], cache: ScoreCache | None = None,
               segment_threshold: float | None = None, done: int = 0) -> tuple[float, int]:
    """Score every sample once (from the cache where it holds the whole batch) and hand each ``Scored`` to every
    consumer. ``method=None`` reads the cache only. Returns (seconds in the method, samples read from cache).
    ``done``: samples of the same pass handed over before (counted on the progress bar).

    Loading runs ahead in a thread, and everything after the forward pass (caching, the meta stage's segments,
    the consumers) in another, in sample order, up to two batches behind, so that both overlap the model; both
    run inline when the model runs on the CPU (no ``device``, or a CPU one), whose cores its threads already use
    (on 2 cores, overlapping made such runs 10-40 % slower). A pass over the cache alone (no method) overlaps."""
    model_seconds, cached = 0.0, 0
    device = getattr(method, "device", None)
    overlap = method is None or getattr(device, "type", str(device or "cpu")) != "cpu"
    pending: list[tuple[Future, int]] = []
    with ThreadPoolExecutor(1, thread_name_prefix="oodbench-metrics") as worker, \
            tqdm(total=done + len(dataset), initial=done, desc=desc, unit="img", disable=not progress) as bar:
        submit = worker.submit if overlap else _now

        def collect(keep: int) -> None:
            """Wait for finished work until at most ``keep`` batches are pending; a task's error cancels the rest."""
            while len(pending) > keep or (pending and pending[0][0].done()):
                finished, n = pending.pop(0)
                try:
                    finished.result()
                except BaseException:
                    for waiting, _ in pending:
                        waiting.cancel()
                    raise
                bar.update(n)

        try:
            for batch in batches(dataset, batch_size, ahead=overlap):
                scored = _from_cache(batch, cache, segment_threshold, repair=method is not None)
                if scored is not None:
                    cached += len(batch)
                    task = submit(consume, scored, consumers, dataset)
                elif method is None:
                    missing = [s.id for s in batch if _cached(cache, s, segment_threshold, False) is None]
                    raise ScoreError(f"score cache {cache.folder} lacks samples {missing[:5]} (maps, or segments at "
                                     f"threshold {segment_threshold}): run the shard(s) that score them first, with "
                                     f"the same method, checkpoint, data and options")
                else:
                    if cache is not None:
                        cache.check_writable()  # a read-only cache is an error before the model runs, not after
                    out, scores, seconds = _predict(method, batch)
                    model_seconds += seconds
                    task = submit(_finish_and_consume, batch, out, scores, cache, segment_threshold,
                                  consumers, dataset)
                pending.append((task, len(batch)))
                collect(2)
            collect(0)
        except BaseException:
            # the model or loading failed (or was interrupted): batches already scored are finished and cached,
            # as they would be inline, so that a resumed run need not score them again
            for waiting, _ in pending:
                try:
                    waiting.result()
                except BaseException:  # noqa: BLE001 - the first error is the one to report
                    break
            raise
    return model_seconds, cached
