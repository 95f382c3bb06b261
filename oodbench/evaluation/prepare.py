"""The set-up that ``run`` and ``show`` share: dataset, method (with a local checkpoint), score caches under the
run's keys, and the pixel passes over other splits (segment-threshold calibration, component thresholds), each
scored once. ``show`` built the same way reads exactly the maps a run with the same options wrote."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.base import DATASETS, Dataset
from ..errors import OodbenchError, UnknownSplitError
from ..methods import Method, create_method
from ..metrics.pixel import PixelMetricState
from .map_store import MapStore
from .score_cache import ScoreCache, cache_key
from .score_pass import score_pass


RESERVED = {"seed": "--seed", "checkpoint": "--checkpoint", "network": "--network"}


def _create(name: str, seed: int, checkpoint: str | Path | None, network: str | None,
            options: dict[str, Any]) -> Method:
    """The method, given ``checkpoint`` and ``network`` only when set, so that a method taking neither still
    builds, and one that cannot apply them, or an option, says so."""
    taken = sorted(set(options) & set(RESERVED))
    if taken:
        raise OodbenchError(f"method option {taken[0]!r} has its own flag: give {RESERVED[taken[0]]} instead of "
                            f"--method-option {taken[0]}=...")
    given = {k: v for k, v in (("checkpoint", checkpoint), ("network", network)) if v is not None}
    try:
        return create_method(name, seed=seed, **given, **options)
    except TypeError as exc:
        flag = next((k for k in given if repr(k) in str(exc)), None)
        option = next((k for k in options if repr(k) in str(exc)), None)
        if option is not None:
            raise OodbenchError(f"method {name!r} takes no option {option!r} (--method-option {option}="
                                f"{options[option]}); drop it, or see the method's documentation for its options"
                                ) from exc
        if flag is None:
            raise
        what = {"checkpoint": "loads no checkpoint", "network": "runs no network card"}[flag]
        raise OodbenchError(f"method {name!r} {what}, so --{flag} {given[flag]} does not apply") from exc


@dataclass
class Prepared:
    """A method set up on a dataset split, with the options that locate its score caches."""

    ds: Dataset
    method: Method
    info: dict[str, Any]  # what ``setup`` reports: checkpoint hash, model card, ...
    options: dict[str, Any]
    data_root: str | Path | None
    batch_size: int
    progress: bool
    score_cache: bool
    cache_root: str | Path | None
    method_options: dict[str, Any] = field(default_factory=dict)
    passes: dict[str, tuple[Dataset, PixelMetricState]] = field(default_factory=dict)

    def split(self, name: str) -> Dataset:
        """Another split of the same dataset, with the same options (the prepared split itself for its name)."""
        if name == self.ds.split:
            return self.ds
        return DATASETS.create(self.ds.name, root=self.data_root, split=name, **self.options)

    def cache(self, ds: Dataset) -> ScoreCache | None:
        """The split's score cache: keyed by method config and code, checkpoint, data fingerprint and options."""
        m = self.method
        if not self.score_cache or not getattr(m, "cacheable", False):
            return None
        identity = {**getattr(m, "maps_config", m.config)(), **getattr(m, "cache_identity", dict)()}
        if self.method_options:  # what a plugin's config() may not show still keys its maps
            identity["method_options"] = self.method_options
        key = cache_key(identity, self.info.get("checkpoint_sha256"), ds.name, ds.split, ds.fingerprint(),
                        self.options)
        return ScoreCache(key, self.cache_root)

    def pixel_pass(self, name: str, purpose: str, from_cache: bool = False) -> tuple[Dataset, PixelMetricState]:
        """A split's pixel state, scored once even when several purposes use it (``from_cache``: the cache only)."""
        if name not in self.passes:
            other, state = self.split(name), PixelMetricState()
            score_pass(None if from_cache else self.method, other, self.batch_size, self.progress,
                       f"{purpose} on {name}", [lambda item: state.update(item.sample.label, item.score)],
                       MapStore(self.cache(other)))
            self.passes[name] = other, state
        return self.passes[name]

    def segment_threshold(self, from_cache: bool = False) -> tuple[float | None, Dataset | None]:
        """The meta stage's threshold (None without a stage): fixed, or reaching its pixel TPR on the calibration
        split, which is returned too."""
        stage = self.method.segment_stage
        if stage is None:
            return None, None
        if stage.threshold is not None:
            return float(stage.threshold), None
        val, state = self.pixel_pass(self.calibration_split(), "calibrating", from_cache)
        return float(state.threshold_at_tpr(stage.calibrate_tpr)), val

    def calibration_split(self) -> str:
        """The method's calibration split where the dataset has it, else the dataset's own validation split
        (``Dataset.validation_split``), else the evaluated split itself (e.g. Road Anomaly, a single test split):
        the record then says that the threshold saw the evaluated labels, as an oracle threshold does."""
        wanted, own = self.method.calibration_split, self.ds.validation_split
        if wanted in (own, self.ds.split):
            return wanted
        try:
            self.split(wanted)
            return wanted
        except UnknownSplitError:  # no such split here: fall back, and say so (a missing copy stays an error)
            fallback = own or self.ds.split
        warnings.warn(f"{self.ds.name} has no {wanted!r} split to fix the meta stage's segment threshold on; using "
                      f"{fallback!r}" + (", the evaluated split itself (the record says so)" if fallback ==
                                          self.ds.split else ""), stacklevel=2)
        return fallback


def prepare(method: str | Method, dataset: str = "synthetic", split: str = "test",
            data_root: str | Path | None = None, dataset_options: dict[str, Any] | None = None, seed: int = 0,
            checkpoint: str | Path | None = None, batch_size: int = 4, progress: bool = True,
            score_cache: bool = True, cache_root: str | Path | None = None, need_cache: str = "",
            network: str | None = None, method_options: dict[str, Any] | None = None) -> Prepared:
    """Create the split (OoD labels only) and the method (``checkpoint``: local weights instead of its card's
    download), bind the method to the data and set it up. ``need_cache`` names what needs the score cache (e.g.
    sharded runs), refused before the set-up loads anything when the method keeps no cache. ``network``: the network
    card a model-based method runs on (default: its method card's). ``method_options``: keywords of the method's
    factory (by name only), recorded as the method's ``options``."""
    opts = dict(dataset_options or {})
    ds = DATASETS.create(dataset, root=data_root, split=split, **opts)
    if ds.label_kind != "ood":
        raise OodbenchError(f"dataset {dataset!r} split {split!r} has {ds.label_kind} labels, not OoD labels; "
                            f"choose an OoD benchmark (`oodbench list datasets`)")
    method_options = dict(method_options or {})
    if method_options and not isinstance(method, str):
        raise OodbenchError(f"method options {sorted(method_options)} apply to a method given by name; "
                            f"{method.name!r} is already built: pass them to create_method instead")
    m = _create(method, seed, checkpoint, network, method_options) if isinstance(method, str) else method
    cacheable = getattr(m, "cacheable", False)
    if need_cache and not (score_cache and cacheable):
        fixes = [fix for fix, needed in (("drop --no-score-cache", not score_cache), (
            "give the method cacheable = True once its config() identifies its maps", not cacheable)) if needed]
        raise OodbenchError(f"method {m.name!r}: {need_cache} need the score cache; {' and '.join(fixes)}")
    bind = getattr(m, "bind", None)
    if bind is not None:
        bind(ds)
    info = m.setup(progress=progress)
    if method_options:
        info = {**info, "options": method_options}
    return Prepared(ds, m, info, opts, data_root, batch_size, progress, score_cache, cache_root, method_options)
