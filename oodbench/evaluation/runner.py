"""dataset x method -> metric states -> record. The one place that drives an evaluation."""
from __future__ import annotations

import math
import resource
import tempfile
import time
import warnings
from pathlib import Path
from dataclasses import dataclass, replace
from typing import Any, Sequence

from ..data.base import Dataset, hashing_progress
from ..errors import OodbenchError
from ..outputs import check_output_dir
from ..leaderboard.record import make_record, write_record
from ..methods import Method
from ..metrics.bootstrap import BootstrapCollector
from ..metrics.components import ComponentMetricState
from ..metrics.conventions import create_convention
from ..metrics.instances import InstanceMetricState
from ..metrics.pixel import PixelMetricState
from .categories import PerCategory
from .map_store import MapStore
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


def undefined_where_degenerate(pixel: dict[str, Any], where: str, refuse_empty: bool = True) -> dict[str, Any]:
    """Pixel metrics of a split without both classes are undefined (AP of an all-OoD split is a trivial 1): NaN
    (null in the record) with the reason, so such a record never ranks; a split without labelled pixels is an
    error (unless not ``refuse_empty``: then undefined too, e.g. for one category)."""
    pos, neg = pixel["num_pos"], pixel["num_neg"]
    if pos + neg == 0 and refuse_empty:
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


@dataclass(frozen=True)
class RunOptions:
    """What ``run`` evaluates and how (the ``oodbench run`` options).
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
    the whole split from the cache without running the model (``oodbench merge``)."""

    dataset: str = "synthetic"
    split: str = "test"
    data_root: str | Path | None = None
    out_dir: str | Path | None = None
    seed: int = 0
    batch_size: int = 4
    progress: bool = True
    dataset_options: dict[str, Any] | None = None
    method_options: dict[str, Any] | None = None
    meta_protocol: str | None = None
    deep_fingerprint: bool = False
    checkpoint: str | Path | None = None
    network: str | None = None
    components: bool = True
    threshold: str | float = "oracle"
    track: str | None = None
    bootstrap: int = 0
    conventions: Sequence[str] = ()
    score_cache: bool = True
    cache_root: str | Path | None = None
    shard: tuple[int, int] | None = None
    from_cache: bool = False


def run(method: str | Method, options: RunOptions | None = None, **changes: Any) -> tuple[dict, Path | None]:
    """Evaluate ``method`` with ``options`` (or ``RunOptions`` fields as keywords); write the record into
    ``out_dir`` (if given) only at the end. Under torchrun each rank scores its block and the states are merged
    across ranks; rank 0 writes the record. A shard run returns what it scored and no record."""
    o = replace(options or RunOptions(), **changes)
    ev = _Evaluation(method, o)
    with tempfile.TemporaryDirectory(prefix="oodbench-scores-") as scratch:
        replay = ev.replay(scratch)
        model_seconds, cached = score_pass(ev.scorer, ev.part, o.batch_size, o.progress, ev.title,
                                           [ev.states.consume] + ([replay] if replay is not None else []),
                                           ev.store)
        if o.shard is not None:
            return ev.shard_summary(cached), None
        ev.merge()
        if replay is not None:
            ev.oracle_pass(replay)
    record = ev.record(model_seconds, cached)
    return record, (write_record(record, o.out_dir) if o.out_dir is not None and ev.rank == 0 else None)


class _Evaluation:
    """One evaluation's set-up and the steps after its score pass: merging, the oracle pass, the record."""

    def __init__(self, method: str | Method, o: RunOptions):
        self.o, self.start = o, time.perf_counter()
        if o.out_dir is not None and world()[0] == 0:
            check_output_dir(o.out_dir, "--out")
        self.policy = ThresholdPolicy.parse(o.threshold) if o.components else None
        self.oracle = self.policy is not None and self.policy.kind == "oracle"
        names = list(o.conventions) + (self.policy.needs_conventions() if self.policy else [])
        self.named = {name: create_convention(name) for name in dict.fromkeys(names)}
        self.prep = prepare(method, o.dataset, o.split, o.data_root, o.dataset_options, o.seed, o.checkpoint,
                            o.batch_size, o.progress, o.score_cache, o.cache_root, network=o.network,
                            method_options=o.method_options,
                            need_cache="sharded runs and merging" if o.shard or o.from_cache else "")
        self.ds, self.method = self.prep.ds, self.prep.method
        self.setup_seconds = time.perf_counter() - self.start
        self.scorer = None if o.from_cache else self.method
        self.title = f"{self.method.name} on {o.dataset}/{o.split}"
        self.segment_threshold, val = self.prep.segment_threshold(o.from_cache)
        self.calibration = None if val is None else {
            "target_tpr": self.method.segment_stage.calibrate_tpr, "on_evaluated_split": val.split == self.ds.split,
            **_split_info(val, o.deep_fingerprint, o.progress)}
        self.component_threshold, self.threshold_extra = self._fixed_component_threshold()
        if o.shard is not None and o.shard[1] > len(self.ds):
            raise OodbenchError(f"--shard {o.shard[0]}/{o.shard[1]}: {o.dataset}/{o.split} has {len(self.ds)} images, "
                                f"so N can be at most {len(self.ds)}")
        self.score_cache = self.prep.cache(self.ds)
        self.store = MapStore(self.score_cache, self.segment_threshold)
        self.rank, self.size = world()
        self.part = (Shard(self.ds, *o.shard) if o.shard is not None else
                     Shard(self.ds, self.rank, self.size) if self.size > 1 else self.ds)
        self.track = o.track or self.ds.component_track
        self.categorized = type(self.ds).category is not Dataset.category
        self.states = EvaluationStates(
            conventions=self.named, segments=SegmentCollector() if self.method.segment_stage is not None else None,
            components=(ComponentMetricState.for_track(self.component_threshold, self.track)
                        if self.component_threshold is not None else None),
            bootstrap=BootstrapCollector() if o.bootstrap > 0 and not self.oracle else None,
            instances=(InstanceMetricState(self.component_threshold) if self.component_threshold is not None
                       else None),
            pixel_by_category=PerCategory(PixelMetricState) if self.categorized else None,
            components_by_category=self._components_by_category())

    def _components_by_category(self) -> PerCategory | None:
        if not self.categorized or self.component_threshold is None:
            return None
        return PerCategory(lambda: ComponentMetricState.for_track(self.component_threshold, self.track))

    def _fixed_component_threshold(self) -> tuple[float | None, dict[str, Any]]:
        """A given threshold, or one fixed on a validation split (scored first); None for the oracle or none."""
        if self.policy is None or self.oracle:
            return None, {}
        if self.policy.kind != "validation":
            return self.policy.choose(None), {}
        other, state = self.prep.pixel_pass(self.policy.split, "component threshold", self.o.from_cache)
        return self.policy.choose(state), {"validation": _split_info(other, self.o.deep_fingerprint, self.o.progress)}

    def replay(self, scratch: str) -> Replay | None:
        """The oracle pass replays labels and maps held in memory and reads the rest back from the cache (without
        one, from this run's own float32 maps of the frames not held) instead of running the model again."""
        if not self.oracle or self.o.shard is not None:
            return None
        self.spill = None if self.score_cache is not None else ScoreCache("pass", scratch, dtype="float32")
        return Replay((self.score_cache or self.spill).dtype, self.spill)

    def shard_summary(self, cached: int) -> dict[str, Any]:
        return {"shard": list(self.o.shard), "num_images": len(self.part), "scored": len(self.part) - cached,
                "from_cache": cached, "score_cache": self.score_cache.describe()}

    def merge(self) -> None:
        """The states of every process; the pooled pixel metrics (undefined where the split lacks a class)."""
        self.states = all_merged(self.states)
        where = f"{self.o.dataset}/{self.o.split}"
        self.pixel = undefined_where_degenerate(self.states.pixel.compute(), where)
        if self.policy is not None and self.policy.kind == "given":
            warn_outside_scores(self.component_threshold, self.states.pixel, where)

    def oracle_pass(self, replay: Replay) -> None:
        """Components (and bootstrap) at the split's own best-F1 threshold, from the replayed maps."""
        self.component_threshold, best_f1 = self.policy.oracle(self.states.pixel, self.states.conventions)
        self.threshold_extra = {"pixel_f1": best_f1}
        self.states.components = ComponentMetricState.for_track(self.component_threshold, self.track)
        self.states.components_by_category = self._components_by_category()
        self.states.instances = InstanceMetricState(self.component_threshold)
        self.states.bootstrap = BootstrapCollector() if self.o.bootstrap > 0 else None
        second_pass(replay, self.part, self.o.batch_size, self.o.progress, "components at the oracle threshold",
                    [self.states.consume_components], self.score_cache or self.spill)
        self.states = all_merged(self.states, ("components", "bootstrap", "instances", "components_by_category"))

    def metrics(self) -> dict[str, Any]:
        o, states = self.o, self.states
        metrics: dict[str, Any] = {"pixel": self.pixel, "curves": states.pixel.curves()}
        if self.named:
            metrics["conventions"] = {name: c.compute() for name, c in states.conventions.items()}
        if states.components is not None:
            metrics["components"] = {**states.components.compute(), "track": self.track, "threshold_choice":
                                     self.policy.describe(self.component_threshold, **self.threshold_extra)}
        if states.instances is not None:
            metrics["instances"] = states.instances.compute()
        if states.bootstrap is not None:
            metrics["bootstrap"] = states.bootstrap.compute(n_resamples=o.bootstrap, seed=o.seed)
        if states.pixel_by_category:
            metrics["categories"] = self.categories()
        if states.segments is not None:
            stage = self.method.segment_stage
            protocol = o.meta_protocol or stage.protocol
            proba = states.segments.out_of_fold(protocol, stage.n_splits, o.seed, progress=o.progress)
            seg = states.segments.compute(protocol=protocol, n_splits=stage.n_splits, seed=o.seed, proba=proba)
            seg.update({"segment_threshold": float(self.segment_threshold),
                        "threshold_source": "calibrated" if self.calibration else "fixed",
                        "calibration": self.calibration})
            instances = states.meta_instances(proba, self.segment_threshold)
            if instances is not None:
                seg["instances"] = instances
            metrics["segments"] = seg
        return metrics

    def categories(self) -> dict[str, Any]:
        """Pixel metrics (and components at the split's threshold) per frame category."""
        where = f"{self.o.dataset}/{self.o.split}"
        pixel = self.states.pixel_by_category.compute(
            lambda d, c: undefined_where_degenerate(d, f"{where} category {c!r}", refuse_empty=False))
        out = {c: {"num_images": r.pop("num_images"), "pixel": r} for c, r in pixel.items()}
        if self.states.components_by_category is not None:
            for c, r in self.states.components_by_category.compute().items():
                out[c]["components"] = {k: r[k] for k in ("siou", "ppv", "f1_mean", "num_gt_components",
                                                          "num_pred_components")}
        return out

    def record(self, model_seconds: float, cached: int) -> dict[str, Any]:
        o, ds, cache = self.o, self.ds, self.score_cache
        metrics = self.metrics()
        described = ds.describe()
        if o.deep_fingerprint:
            described["fingerprint"] = _fingerprint(ds, True, o.progress)
        described["fingerprint_kind"] = _fingerprint_kind(o.deep_fingerprint)
        wall = time.perf_counter() - self.start
        evaluation = wall - self.setup_seconds
        return make_record(
            method={**self.method.config(), **self.prep.info},
            dataset={**described, "data_root": str(ds.root), "options": self.prep.options},
            metrics=metrics,
            cost={"wall_seconds": round(wall, 3), "setup_seconds": round(self.setup_seconds, 3),
                  "evaluation_seconds": round(evaluation, 3), "model_seconds": round(model_seconds, 3),
                  "images_per_second": round(len(ds) / max(evaluation, 1e-9), 3),
                  "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)},
            extra={"seed": o.seed, "scores": {"storage": STORAGE if cache is not None else "float32",
                                              "cache": cache.key if cache is not None else None,
                                              "from_cache": cached, "processes": self.size}},
        )
