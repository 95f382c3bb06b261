"""The fit stage of methods whose score needs parameters estimated on in-distribution frames (``sml``, ``mahalanobis``,
plugins' own): the fit split is chosen (``fit_split``), the parameters are fitted once and cached in
``$OODBENCH_HOME/fit/`` under a content key (fit code and options, network weights and protocol, split fingerprint),
and the record names the split, its fingerprint and a digest of the parameters."""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any, Iterable

from ..data.base import Dataset, Sample
from ..errors import OodbenchError
from ..files import atomic_write
from ..paths import home
from .fit_split import fit_split, frame_batches
from .model_score import ModelScoreMethod, _source

SMALL_FIT = 50  # frames: fewer is fitted, with a warning that the statistics are rough


class FittedMethod(ModelScoreMethod):
    """A network + score whose parameters come from in-distribution frames. A subclass (a plugin's too) names its
    ``fit_kind``, implements ``fit(batches)`` (batches of samples -> a JSON-able dict) and ``use_fit(stats)`` (set
    ``score_fn`` or whatever scoring needs), lists in ``fit_params`` the keys of fitted parameters (recorded by
    digest only) and in ``fit_options()`` whatever else changes the fit. ``fit_dataset``/``fit_split``/``fit_root``
    choose the frames (default: see ``fit_split``)."""

    fit_kind = "fit"
    fit_params: tuple[str, ...] = ()

    def __init__(self, name: str, score_name: str = "maxlogit", stage: str = "baseline", card: str = "baseline", *,
                 fit_dataset: str | None = None, fit_split: str | None = None, fit_root: str | Path | None = None,
                 **kwargs: Any):
        super().__init__(name, score_name, stage, card, **kwargs)
        self.fit_dataset, self.fit_split, self.fit_root = fit_dataset, fit_split, fit_root
        self.near: Path | None = None
        self.stats: dict[str, Any] = {}

    def bind(self, dataset) -> None:
        super().bind(dataset)
        root = getattr(dataset, "root", None)
        self.near = Path(root) if root is not None else None

    # -- what a subclass provides ---------------------------------------------------------------
    def fit(self, batches: Iterable[list[Sample]]) -> dict[str, Any]:
        raise NotImplementedError

    def use_fit(self, stats: dict[str, Any]) -> None:
        raise NotImplementedError

    def fit_options(self) -> dict[str, Any]:
        return {}

    def check_model(self) -> None:
        """Called after the network is loaded, before fitting: refuse a network the method cannot use."""

    @property
    def fit_batch_size(self) -> int:
        return 4 if self.network_card is None else 1  # real frames are large (logits and features at full size)

    # -- the stage ------------------------------------------------------------------------------
    def setup(self, progress: bool = True) -> dict[str, Any]:
        info = super().setup(progress)
        self.check_model()
        self.stats = self._fitted(info, progress)
        self.use_fit(self.stats)
        return {**info, "fit": self.fit_record()}

    def fit_frames(self) -> Dataset:
        embedded = self.domain == "embedded" and self.network is None
        try:
            return fit_split(self.fit_dataset, self.fit_split, self.fit_root, embedded, self.near)
        except OodbenchError as exc:
            raise OodbenchError(f"method {self.name!r} fits on in-distribution frames, and none are available: {exc}"
                                ) from exc

    def fit_key(self, info: dict[str, Any], data: Dataset, fingerprint: str) -> str:
        """The content key of a fit: everything that changes the fitted parameters."""
        parts = [self.fit_kind, self.fit_options(), _source(type(self).fit), info.get("checkpoint_sha256"),
                 self.model_label, self.protocol.describe(), data.name, data.split, fingerprint]
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()

    def _fitted(self, info: dict[str, Any], progress: bool) -> dict[str, Any]:
        data = self.fit_frames()
        fingerprint = data.fingerprint()
        path = home() / "fit" / f"{self.fit_kind}-{self.fit_key(info, data, fingerprint)[:32]}.json"
        if len(data) < SMALL_FIT:
            warnings.warn(f"method {self.name!r} fits on {len(data)} frames of {data.name}/{data.split}: a tiny fit "
                          f"set, so its statistics are rough (the published methods fit on thousands of frames)",
                          stacklevel=3)
        if path.is_file():
            try:
                return json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                warnings.warn(f"{path}: the cached fit is damaged ({exc}); fitting again", stacklevel=3)
        if len(data) == 0:
            raise OodbenchError(f"{self.name}: the fit split {data.name}/{data.split} has no frames; give an "
                                f"in-distribution split with frames")
        batches: Iterable[list[Sample]] = frame_batches(data, self.fit_batch_size)
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc=f"fitting {self.name} on {data.name}/{data.split}", unit="batch")
        stats = {"kind": self.fit_kind, "dataset": data.name, "split": data.split, "fingerprint": fingerprint,
                 "num_images": len(data), "options": self.fit_options(), **self.fit(batches)}
        atomic_write(path, json.dumps(stats))
        return stats

    def params_digest(self) -> str:
        params = {k: self.stats.get(k) for k in self.fit_params}
        return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]

    def fit_record(self) -> dict[str, Any]:
        """What the record says of the fit: split, fingerprint, counts, and the parameters by digest."""
        return {**{k: v for k, v in self.stats.items() if k not in self.fit_params}, "params": self.params_digest()}

    def maps_config(self) -> dict[str, Any]:
        """The maps depend on the fitted parameters too."""
        fit = {k: self.stats.get(k) for k in ("dataset", "split", "fingerprint")}
        return {**super().maps_config(), "fit": {**fit, "stats": self.params_digest()}}
