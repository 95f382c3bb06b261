"""dataset x method -> metric states -> record. The one place that drives an evaluation."""
from __future__ import annotations

import math
import resource
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

from ..data.base import Dataset, hashing_progress
from ..errors import OodbenchError
from ..outputs import check_output_dir
from ..leaderboard.record import make_record, write_record
from ..methods import Method
from ..metrics.bootstrap import BootstrapCollector
from ..metrics.components import ComponentMetricState
from ..metrics.conventions import create_convention
from .prepare import prepare
from .replay import Replay, second_pass
from .score_cache import STORAGE, ScoreCache
from .score_pass import Shard, score_pass
from ..segments.collector import SegmentCollector
from .states import EvaluationStates, all_merged, world
from .thresholds import ThresholdPolicy


def _fingerprint_kind(deep: bool) -> str:
    return "content" if deep else "names+sizes"


def _fingerprint(ds: Dataset, deep: bool, progress: bool) -> str:
    with hashing_progress(progress):
        return ds.fingerprint(deep=deep)


def _split_info(ds: Dataset, deep: bool, progress: bool = False) -> dict[str, Any]:
    return {"split": ds.split, "num_images": len(ds), "fingerprint": _fingerprint(ds, deep, progress),
            "fingerprint_kind": _fingerprint_kind(deep)}


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/N"`` -> (i, N)."""
    if text is None:
        return None
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise OodbenchError(f"--shard {text!r}: write i/N, e.g. 0/4 for the first of four parts") from None
    if not 0 <= i < n:
        raise OodbenchError(f"--shard {text!r}: i must be in 0..N-1")
    return i, n


def undefined_where_degenerate(pixel: dict[str, Any], where: str) -> dict[str, Any]:
    """Pixel metrics of a split without both classes are undefined (AP of an all-OoD split is a trivial 1): NaN
    (null in the record) with the reason, so such a record never ranks; a split without labelled pixels is an
    error."""
    pos, neg = pixel["num_pos"], pixel["num_neg"]
    if pos + neg == 0:
        raise OodbenchError(f"{where}: every pixel is ignored (label 255), so there is nothing to evaluate; check that "
                            f"the labels use 0 (in-distribution) and 1 (OoD), or the dataset's mapping option")
    if pos and neg:
        return pixel
    missing = "OoD" if pos == 0 else "in-distribution"
    return {**pixel, "auroc": math.nan, "ap": math.nan, "fpr95": math.nan,
            "undefined": f"the split has no {missing} pixels: AUROC, AP and FPR95 need both classes"}


def warn_outside_scores(threshold: float, pixel: Any, where: str) -> None:
    """A given component threshold beyond the split's scores makes every pixel, or none, a component: say so."""
    low, high = pixel.score_range()
    if not low <= threshold <= high and not math.isnan(low):
        side = "above every" if threshold > high else "below every"
        warnings.warn(f"--threshold {threshold:g} lies {side} score of {where} (scores from {low:.4g} to about "
                      f"{high:.4g}), so component metrics see {'no' if threshold > high else 'one all-covering'} "
                      f"component per frame; check the score's scale", stacklevel=2)


def run(method: str | Method, dataset: str = "synthetic", split: str = "test", data_root: str | Path | None = None,
        out_dir: str | Path | None = None, seed: int = 0, batch_size: int = 4, progress: bool = True,
        dataset_options: dict[str, Any] | None = None, meta_protocol: str | None = None,
        deep_fingerprint: bool = False, checkpoint: str | Path | None = None, network: str | None = None,
        components: bool = True, threshold: str | float = "oracle", track: str | None = None,
        bootstrap: int = 0, conventions: Sequence[str] = (), score_cache: bool = True,
        cache_root: str | Path | None = None, shard: tuple[int, int] | None = None,
        from_cache: bool = False) -> tuple[dict, Path | None]:
    """Evaluate ``method`` on ``dataset/split``; write the record into ``out_dir`` (if given) only at the end.
    ``meta_protocol`` overrides the meta stage's cross-validation ("grouped" by image, or "loo").
    ``deep_fingerprint``: the record's dataset fingerprint hashes file contents, not only names and sizes.
    ``checkpoint``: a local weights file for a model-based method, instead of its card's download.
    ``network``: the network card (``methods/networks/``) a score method runs on, instead of its method card's.
    ``components``: add SegmentMeIfYouCan component metrics at the threshold ``threshold`` chooses (see
    ``ThresholdPolicy.parse``), with the size filters of ``track`` (default: the dataset's).
    ``bootstrap``: that many seeded resamples of the images give confidence intervals of AP, FPR95 and mean F1.
    ``conventions``: named pixel-metric conventions (``list_conventions()``) computed next to the canonical ones.
    ``score_cache``: keep float16 score maps (and meta-stage segments) under a content key, so an interrupted run
    resumes and a second pass skips the model; metrics are then computed on the float16 maps, as recorded.
    ``shard=(i, N)``: only score block i of N into the cache and return no record; ``from_cache`` then evaluates
    the whole split from the cache without running the model (``oodbench merge``). Under torchrun each rank
    scores its block and the states are merged across ranks; rank 0 writes the record."""
    start = time.perf_counter()
    if out_dir is not None and world()[0] == 0:
        check_output_dir(out_dir, "--out")
    policy = ThresholdPolicy.parse(threshold) if components else None
    code_rule = policy is not None and policy.kind == "oracle" and policy.rule == "smiyc_code"
    names = list(conventions) + (["smiyc768"] if code_rule else [])  # whose bins that rule reads
    named = {name: create_convention(name) for name in dict.fromkeys(names)}
    prep = prepare(method, dataset, split, data_root, dataset_options, seed, checkpoint, batch_size, progress,
                   score_cache, cache_root, need_cache="sharded runs and merging" if shard or from_cache else "",
                   network=network)
    ds, m, method_info, opts = prep.ds, prep.method, prep.info, prep.options
    setup_seconds = time.perf_counter() - start
    scorer = None if from_cache else m

    stage = m.segment_stage
    seg_threshold, val = prep.segment_threshold(from_cache)
    calibration = None if val is None else {"target_tpr": stage.calibrate_tpr, "on_evaluated_split": val.split == ds.split,
                                            **_split_info(val, deep_fingerprint, progress)}
    comp_threshold, comp_extra = None, {}
    if policy is not None and policy.kind != "oracle":
        val_state = None
        if policy.kind == "validation":
            other, val_state = prep.pixel_pass(policy.split, "component threshold", from_cache)
            comp_extra = {"validation": _split_info(other, deep_fingerprint, progress)}
        comp_threshold = policy.choose(val_state)

    if shard is not None and shard[1] > len(ds):
        raise OodbenchError(f"--shard {shard[0]}/{shard[1]}: {dataset}/{split} has {len(ds)} images, so N can be at "
                            f"most {len(ds)}")
    cache = prep.cache(ds)
    rank, size = world()
    part = Shard(ds, *shard) if shard is not None else Shard(ds, rank, size) if size > 1 else ds
    track = track or ds.component_track
    oracle = policy is not None and policy.kind == "oracle"
    states = EvaluationStates(
        conventions=named, segments=SegmentCollector() if stage is not None else None,
        components=ComponentMetricState.for_track(comp_threshold, track) if comp_threshold is not None else None,
        bootstrap=BootstrapCollector() if bootstrap > 0 and not oracle else None)
    with tempfile.TemporaryDirectory(prefix="oodbench-scores-") as scratch:
        # the oracle pass replays labels and maps held in memory, and reads the rest back from the cache (without
        # one, from this run's own float32 maps of the frames not held) instead of running the model again
        replay, spill = None, None
        if oracle and shard is None:
            spill = None if cache is not None else ScoreCache("pass", scratch, dtype="float32")
            replay = Replay((cache or spill).dtype, spill)
        consumers = [states.consume] + ([replay] if replay is not None else [])
        model_seconds, cached = score_pass(scorer, part, batch_size, progress, f"{m.name} on {dataset}/{split}",
                                           consumers, cache, seg_threshold)
        if shard is None:
            states = all_merged(states)
            pixel = undefined_where_degenerate(states.pixel.compute(), f"{dataset}/{split}")
            if policy is not None and policy.kind == "given":
                warn_outside_scores(comp_threshold, states.pixel, f"{dataset}/{split}")
            if oracle:
                if code_rule:  # the reference's own pick, used as it uses it: components score > t
                    comp_threshold, best_f1 = states.conventions["smiyc768"].code_best_f1_threshold()
                    comp_threshold = policy.checked(comp_threshold)
                else:
                    edge, best_f1 = states.pixel.threshold_at_best_f1()
                    comp_threshold = policy.below(edge)
                comp_extra = {"pixel_f1": best_f1}
                states.components = ComponentMetricState.for_track(comp_threshold, track)
                states.bootstrap = BootstrapCollector() if bootstrap > 0 else None
                second_pass(replay, part, batch_size, progress, "components at the oracle threshold",
                            [states.consume_components], cache or spill)
                states = all_merged(states, ("components", "bootstrap"))
    if shard is not None:
        return {"shard": list(shard), "num_images": len(part), "scored": len(part) - cached, "from_cache": cached,
                "score_cache": cache.describe()}, None
    metrics: dict[str, Any] = {"pixel": pixel, "curves": states.pixel.curves()}
    if named:
        metrics["conventions"] = {name: c.compute() for name, c in states.conventions.items()}
    if states.components is not None:
        metrics["components"] = {**states.components.compute(), "track": track,
                                 "threshold_choice": policy.describe(comp_threshold, **comp_extra)}
    if states.bootstrap is not None:
        metrics["bootstrap"] = states.bootstrap.compute(n_resamples=bootstrap, seed=seed)
    if states.segments is not None:
        seg = states.segments.compute(protocol=meta_protocol or stage.protocol, n_splits=stage.n_splits, seed=seed,
                                      progress=progress)
        seg.update({"segment_threshold": float(seg_threshold),
                    "threshold_source": "calibrated" if calibration else "fixed", "calibration": calibration})
        metrics["segments"] = seg
    described = ds.describe()
    if deep_fingerprint:
        described["fingerprint"] = _fingerprint(ds, True, progress)
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
        extra={"seed": seed, "scores": {"storage": STORAGE if cache is not None else "float32",
                                        "cache": cache.key if cache is not None else None,
                                        "from_cache": cached, "processes": size}},
    )
    path = write_record(record, out_dir) if out_dir is not None and rank == 0 else None
    return record, path
