"""dataset x method -> metric states -> record. The one place that drives an evaluation."""
from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from tqdm.auto import tqdm

from .data.base import DATASETS, Dataset, Sample
from .errors import LabelError, OodbenchError, ScoreError
from .leaderboard.record import make_record, write_record
from .methods import Method, MethodOutput, create_method
from .metrics.bootstrap import BootstrapCollector
from .metrics.components import ComponentMetricState
from .metrics.conventions import create_convention
from .metrics.pixel import PixelMetricState
from .segments.collector import SegmentCollector
from .thresholds import ThresholdPolicy


def _size(sample: Sample) -> tuple[int, ...]:
    return sample.label.shape if sample.label is not None else sample.image.shape[:2]


def batches(dataset: Dataset, batch_size: int) -> Iterator[list[Sample]]:
    """Consecutive samples of equal image size, at most ``batch_size`` at a time."""
    batch: list[Sample] = []
    for i in range(len(dataset)):
        sample = dataset[i]
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


Consumer = Callable[[Sample, np.ndarray, MethodOutput, int], None]


def score_pass(method: Method, dataset: Dataset, batch_size: int, progress: bool, desc: str,
               consumers: list[Consumer]) -> float:
    """Score every sample once and hand (sample, checked score map, batch output, index) to each consumer;
    return the seconds spent in the method."""
    model_seconds = 0.0
    with tqdm(total=len(dataset), desc=desc, unit="img", disable=not progress) as bar:
        for batch in batches(dataset, batch_size):
            t0 = time.perf_counter()
            out = method.predict_samples(batch)
            model_seconds += time.perf_counter() - t0
            for k, sample in enumerate(batch):
                score = check_scores(method, sample, np.asarray(out.scores[k]))
                try:
                    for consume in consumers:
                        consume(sample, score, out, k)
                except LabelError as exc:
                    raise LabelError(f"{dataset.name}/{dataset.split} sample {sample.id!r}: {exc}") from exc
            bar.update(len(batch))
    return model_seconds


def _updating(state) -> Consumer:
    return lambda sample, score, out, k: state.update(sample.label, score)


def _component_updates(comp_state: ComponentMetricState, boot: BootstrapCollector | None) -> Consumer:
    """Component sums per image, also handed to the bootstrap collector so it can resample them."""
    def consume(sample: Sample, score: np.ndarray, out: MethodOutput, k: int) -> None:
        frame = comp_state.update(sample.label, score)
        if boot is not None:
            boot.update(sample.label, score, components=frame, image_id=sample.id)
    return consume


def _pixel_state(method: Method, dataset: Dataset, batch_size: int, progress: bool, desc: str) -> PixelMetricState:
    state = PixelMetricState()
    score_pass(method, dataset, batch_size, progress, desc, [_updating(state)])
    return state


def _create(name: str, seed: int, checkpoint: str | Path | None) -> Method:
    if checkpoint is None:
        return create_method(name, seed=seed)
    try:
        return create_method(name, seed=seed, checkpoint=checkpoint)
    except TypeError as exc:
        if "checkpoint" not in str(exc):
            raise
        raise OodbenchError(f"method {name!r} loads no checkpoint, so --checkpoint {checkpoint} does not apply") from exc


def _fingerprint_kind(deep: bool) -> str:
    return "content" if deep else "names+sizes"


def _split_info(ds: Dataset, deep: bool) -> dict[str, Any]:
    return {"split": ds.split, "num_images": len(ds), "fingerprint": ds.fingerprint(deep=deep),
            "fingerprint_kind": _fingerprint_kind(deep)}


def run(method: str | Method, dataset: str = "synthetic", split: str = "test", data_root: str | Path | None = None,
        out_dir: str | Path | None = None, seed: int = 0, batch_size: int = 4, progress: bool = True,
        dataset_options: dict[str, Any] | None = None, meta_protocol: str | None = None,
        deep_fingerprint: bool = False, checkpoint: str | Path | None = None,
        components: bool = True, threshold: str | float = "oracle", track: str | None = None,
        bootstrap: int = 0, conventions: Sequence[str] = ()) -> tuple[dict, Path | None]:
    """Evaluate ``method`` on ``dataset/split``; write the record into ``out_dir`` (if given) only at the end.
    ``meta_protocol`` overrides the meta stage's cross-validation ("grouped" by image, or "loo").
    ``deep_fingerprint``: the record's dataset fingerprint hashes file contents, not only names and sizes.
    ``checkpoint``: a local weights file for a model-based method, instead of its card's download.
    ``components``: add SegmentMeIfYouCan component metrics at the threshold ``threshold`` chooses (see
    ``ThresholdPolicy.parse``), with the size filters of ``track`` (default: the dataset's).
    ``bootstrap``: that many seeded resamples of the images give confidence intervals of AP, FPR95 and mean F1.
    ``conventions``: named pixel-metric conventions (``list_conventions()``) computed next to the canonical ones."""
    start = time.perf_counter()
    opts = dict(dataset_options or {})
    ds = DATASETS.create(dataset, root=data_root, split=split, **opts)
    if ds.label_kind != "ood":
        raise ValueError(f"dataset {dataset!r} split {split!r} has {ds.label_kind} labels, not OoD labels; "
                         f"choose an OoD benchmark (`oodbench list datasets`)")
    policy = ThresholdPolicy.parse(threshold) if components else None
    named = {name: create_convention(name) for name in dict.fromkeys(conventions)}
    m = _create(method, seed, checkpoint) if isinstance(method, str) else method
    bind = getattr(m, "bind", None)
    if bind is not None:
        bind(ds)
    method_info = m.setup(progress=progress)
    setup_seconds = time.perf_counter() - start

    def other_split(name: str) -> Dataset:
        return DATASETS.create(dataset, root=data_root, split=name, **opts)

    stage = m.segment_stage
    seg_threshold, calibration = None, None
    if stage is not None:
        seg_threshold = stage.threshold
        if seg_threshold is None:
            val = other_split(m.calibration_split)
            seg_threshold = _pixel_state(m, val, batch_size, progress, f"calibrating on {val.split}").threshold_at_tpr(
                stage.calibrate_tpr)
            calibration = {"target_tpr": stage.calibrate_tpr, **_split_info(val, deep_fingerprint)}
    comp_threshold, comp_extra = None, {}
    if policy is not None and policy.kind != "oracle":
        val_state = None
        if policy.kind == "validation":
            val = other_split(policy.split)
            val_state = _pixel_state(m, val, batch_size, progress, f"component threshold on {val.split}")
            comp_extra = {"validation": _split_info(val, deep_fingerprint)}
        comp_threshold = policy.choose(val_state)

    state = PixelMetricState()
    consumers: list[Consumer] = [_updating(state), *(_updating(c) for c in named.values())]
    collector = SegmentCollector() if stage is not None else None
    if collector is not None:
        consumers.append(lambda sample, score, out, k: collector.update(sample.id, out.probs[k], sample.label,
                                                                        threshold=seg_threshold, score=score))
    track = track or ds.component_track
    boot = BootstrapCollector() if bootstrap > 0 else None
    comp_state = ComponentMetricState.for_track(comp_threshold, track) if comp_threshold is not None else None
    if comp_state is not None:
        consumers.append(_component_updates(comp_state, boot))
    elif boot is not None and policy is None:
        consumers.append(lambda sample, score, out, k: boot.update(sample.label, score, image_id=sample.id))
    model_seconds = score_pass(m, ds, batch_size, progress, f"{m.name} on {dataset}/{split}", consumers)
    metrics: dict[str, Any] = {"pixel": state.compute(), "curves": state.curves()}
    if named:
        metrics["conventions"] = {name: c.compute() for name, c in named.items()}
    if policy is not None and policy.kind == "oracle":
        comp_threshold, best_f1 = policy.choose(state), state.threshold_at_best_f1()[1]
        comp_extra = {"pixel_f1": best_f1}
        comp_state = ComponentMetricState.for_track(comp_threshold, track)
        model_seconds += score_pass(m, ds, batch_size, progress, "components at the oracle threshold",
                                    [_component_updates(comp_state, boot)])
    if comp_state is not None:
        metrics["components"] = {**comp_state.compute(), "track": track,
                                 "threshold_choice": policy.describe(comp_threshold, **comp_extra)}
    if boot is not None:
        metrics["bootstrap"] = boot.compute(n_resamples=bootstrap, seed=seed)
    if collector is not None:
        seg = collector.compute(protocol=meta_protocol or stage.protocol, n_splits=stage.n_splits, seed=seed)
        seg.update({"segment_threshold": float(seg_threshold),
                    "threshold_source": "calibrated" if calibration else "fixed", "calibration": calibration})
        metrics["segments"] = seg
    described = ds.describe()
    if deep_fingerprint:
        described["fingerprint"] = ds.fingerprint(deep=True)
    described["fingerprint_kind"] = _fingerprint_kind(deep_fingerprint)
    wall = time.perf_counter() - start
    evaluation = wall - setup_seconds
    record = make_record(
        method={**m.config(), **method_info},
        dataset={**described, "data_root": str(ds.root), "options": opts},
        metrics=metrics,
        cost={"wall_seconds": round(wall, 3), "setup_seconds": round(setup_seconds, 3),
              "evaluation_seconds": round(evaluation, 3), "model_seconds": round(model_seconds, 3),
              "images_per_second": round(len(ds) / max(evaluation, 1e-9), 3),
              "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)},
        extra={"seed": seed},
    )
    path = write_record(record, out_dir) if out_dir is not None else None
    return record, path
