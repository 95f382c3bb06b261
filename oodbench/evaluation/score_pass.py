"""One pass of a method over a dataset split: batches of equally sized frames, checked score maps handed to the
consumers, taken from (and given to) a ``MapStore`` that lets a pass resume or skip the model."""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from tqdm.auto import tqdm

from ..data.base import Dataset, Sample
from ..errors import LabelError, ScoreError
from ..methods import Method, MethodOutput
from .map_store import MapStore, Scored, frame_size


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
        if batch and (len(batch) == batch_size or frame_size(batch[0]) != frame_size(sample)):
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


def _predict(method: Method, batch: list[Sample]) -> tuple[MethodOutput, list[np.ndarray], float]:
    """The method's output for a batch, its checked score maps, and the seconds the method itself took."""
    t0 = time.perf_counter()
    out = method.predict_samples(batch)
    seconds = time.perf_counter() - t0
    return out, [check_scores(method, sample, np.asarray(out.scores[k])) for k, sample in enumerate(batch)], seconds


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


def _finish_and_consume(store: MapStore, batch, out, scores, consumers, dataset) -> None:
    consume(store.finish(batch, out, scores), consumers, dataset)


def score_pass(method: Method | None, dataset: Sequence[Sample], batch_size: int, progress: bool, desc: str,
               consumers: list[Consumer], store: MapStore | None = None, done: int = 0) -> tuple[float, int]:
    """Score every sample once (from the ``store``'s cache where it holds the whole batch) and hand each ``Scored``
    to every consumer (no ``store``: no cache, no segments). ``method=None`` reads the cache only. Returns (seconds in
    the method, samples read from cache). ``done``: samples of the same pass handed over before (counted on the
    progress bar).

    Loading runs ahead in a thread, and everything after the forward pass (the store's caching and segments, the
    consumers) in another, in sample order, up to two batches behind, so that both overlap the model; both
    run inline when the model runs on the CPU (no ``device``, or a CPU one), whose cores its threads already use
    (on 2 cores, overlapping made such runs 10-40 % slower). A pass over the cache alone (no method) overlaps."""
    store = store or MapStore()
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
                scored = store.lookup(batch, repair=method is not None)
                if scored is not None:
                    cached += len(batch)
                    task = submit(consume, scored, consumers, dataset)
                elif method is None:
                    raise store.lacking(batch)
                else:
                    store.check_writable()
                    out, scores, seconds = _predict(method, batch)
                    model_seconds += seconds
                    task = submit(_finish_and_consume, store, batch, out, scores, consumers, dataset)
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
