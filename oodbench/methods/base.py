"""The method contract (images -> score maps, optionally softmax probabilities) and its registry,
which derives a meta-classified ``<name>_meta`` variant of every method that exposes probabilities."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ..registry import Registry

if TYPE_CHECKING:
    from ..data.base import Sample

META_SUFFIX = "_meta"
PAPER_ENTROPY_THRESHOLD = 0.7


@dataclass
class MethodOutput:
    """Scores (B,H,W) float32, higher = more OoD; probs (B,C,H,W) softmax, needed by the meta stage."""

    scores: np.ndarray
    probs: np.ndarray | None = None


@dataclass
class SegmentStage:
    """How the meta stage forms segments: threshold the score map at a fixed value (the paper: normalized
    entropy >= 0.7), or at a value calibrated on a validation split (``calibrate``: a target pixel TPR)."""

    threshold: float | None = PAPER_ENTROPY_THRESHOLD
    calibrate_tpr: float | None = None
    protocol: str = "grouped"
    n_splits: int = 5


class Method:
    """Base class: ``setup`` loads or trains what the method needs and returns provenance;
    ``predict`` maps a batch of uint8 RGB images (B,H,W,3) to a MethodOutput."""

    name: str = "method"
    provides_probs: bool = False
    cacheable: bool = False  # True: config() and setup()'s checkpoint sha256 identify the maps, so they may be cached
    segment_stage: SegmentStage | None = None
    calibration_split: str | None = None  # set when the stage threshold must be fixed on a validation split

    def bind(self, dataset) -> None:
        """Called with the dataset before ``setup``; model-based methods pick the model fit for its domain."""

    def setup(self, progress: bool = True) -> dict[str, Any]:
        return {}

    def predict(self, images: np.ndarray) -> MethodOutput:
        raise NotImplementedError

    def predict_samples(self, samples: "list[Sample]") -> MethodOutput:
        """Score a batch of equally sized samples; override to use ids or labels (e.g. precomputed scores)."""
        if any(s.image is None for s in samples):
            from ..errors import DatasetError

            raise DatasetError(f"method {self.name!r} needs images, but sample {samples[0].id!r} has none; add the "
                               f"frames (e.g. <root>/images/) or evaluate precomputed scores with `oodbench evaluate`")
        return self.predict(np.stack([s.image for s in samples]))

    def config(self) -> dict[str, Any]:
        return {"name": self.name}

    def maps_config(self) -> dict[str, Any]:
        """What identifies the score maps in the score cache (with ``cache_identity``); by default the config."""
        return self.config()


class MethodRegistry(Registry[Method]):
    """Registry whose lookup also answers ``X_meta`` for every probability-providing method ``X``."""

    def __init__(self):
        super().__init__("method", "oodbench.methods")
        self._meta_capable: set[str] = set()
        # Set by the modules that define them (``model_score``, ``meta``), so this registry imports neither.
        self.score_method: Callable[..., Method] | None = None  # (score name, **kw) -> a baseline-model method
        self.meta_stage: Callable[[Method], Method] | None = None  # method -> the method with the meta stage

    def register(self, name: str | None = None, *, overwrite: bool = False, meta: bool | None = None) -> Callable:
        """``meta``: derive ``<name>_meta``; by default when the factory says ``provides_probs``."""

        def decorator(factory):
            self.add(name or factory.__name__, factory, overwrite=overwrite, meta=meta)
            return factory

        return decorator

    def add(self, name: str, factory: Callable[..., Method], *, overwrite: bool = False, meta: bool | None = None) -> None:
        super().add(name, factory, overwrite=overwrite)
        if meta if meta is not None else getattr(factory, "provides_probs", False):
            self._meta_capable.add(name)

    def _score_methods(self) -> set[str]:
        """Registered scores (plugins' too) that no method wraps yet: each is a baseline-model method."""
        from ..scores import SCORES

        return {n for n in SCORES.list() if n not in self._items}

    def _derived(self) -> dict[str, str]:
        bases = self._meta_capable | self._score_methods()
        return {n + META_SUFFIX: n for n in bases if n + META_SUFFIX not in self._items}

    def names(self) -> set[str]:
        return super().names() | self._score_methods() | set(self._derived())

    def _base_factory(self, name: str) -> Callable[..., Method]:
        if name in self._items:
            return self._items[name]
        return lambda **kw: self.score_method(name, **kw)

    def get(self, name: str) -> Callable[..., Method]:
        self.load_plugins()
        base = self._derived().get(name)
        if base is not None:
            factory = self._base_factory(base)
            return lambda **kw: self.meta_stage(factory(**kw))
        if name in self._score_methods():
            return self._base_factory(name)
        return super().get(name)


METHODS = MethodRegistry()
register_method = METHODS.register


def create_method(name: str, **kwargs: Any) -> Method:
    return METHODS.create(name, **kwargs)


def list_methods(pattern: str = "*") -> list[str]:
    return METHODS.list(pattern)
