"""Methods with a fit stage on in-distribution data: ``sml``, standardized max logit (Jung et al., ICCV 2021): per
predicted class, the mean and standard deviation of the max logit over a fit split's pixels; the score is the max
logit standardized by its class's statistics. The statistics are cached by content key (network weights, protocol,
fit split fingerprint) and the record names the fit split and its fingerprint."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import OodbenchError
from ..files import atomic_write
from ..paths import home
from .base import register_method
from .model_score import ModelScoreMethod

FIT_SPLITS = {"embedded": ("synthetic_cityscapes", "train"), "real": ("cityscapes", "val")}


class StandardizedMaxLogit(ModelScoreMethod):
    """``-(max logit - mean[c]) / std[c]`` with c the predicted class (higher = more OoD); a class the fit split
    predicts at fewer than two pixels takes the statistics of all fit pixels (the counts are recorded)."""

    def __init__(self, *args: Any, fit_dataset: str | None = None, fit_split: str | None = None,
                 fit_root: str | Path | None = None, **kwargs: Any):
        super().__init__("sml", "maxlogit", "baseline", "baseline", *args, **kwargs)
        self.fit_dataset, self.fit_split, self.fit_root = fit_dataset, fit_split, fit_root
        self.stats: dict[str, Any] = {}

    def setup(self, progress: bool = True) -> dict[str, Any]:
        info = super().setup(progress)
        self.stats = self._fit(info, progress)
        mean = torch.as_tensor(self.stats["mean"], dtype=torch.float32, device=self.device)
        std = torch.as_tensor(self.stats["std"], dtype=torch.float32, device=self.device)

        def standardized(logits: torch.Tensor) -> torch.Tensor:
            top, cls = logits.float().max(dim=1)
            return (mean[cls] - top) / std[cls]  # higher = more OoD, like max logit's -max_c z_c

        self.score_fn = standardized
        fit = {k: v for k, v in self.stats.items() if k not in ("mean", "std")}
        return {**info, "fit": fit}

    def _fit(self, info: dict[str, Any], progress: bool) -> dict[str, Any]:
        from ..data import load_dataset
        from ..evaluation.score_pass import batches

        default = FIT_SPLITS["embedded" if self.domain == "embedded" and self.network is None else "real"]
        name, split = self.fit_dataset or default[0], self.fit_split or default[1]
        try:
            data = load_dataset(name, split=split, root=self.fit_root)
        except OodbenchError as exc:
            raise OodbenchError(f"sml fits its class statistics on {name}/{split}, which is unavailable ({exc}); "
                                f"give fit_dataset/fit_split/fit_root of an in-distribution split") from exc
        fingerprint = data.fingerprint()
        key = hashlib.sha256(json.dumps([info.get("checkpoint_sha256"), self.model_label, self.protocol.describe(),
                                         name, split, fingerprint], sort_keys=True, default=str).encode()).hexdigest()
        path = home() / "fit" / f"sml-{key[:32]}.json"
        if path.is_file():
            return json.loads(path.read_text())
        sums = counts = squares = None
        for batch in batches(data, 4, ahead=False):
            logits = self.logits(np.stack([s.image for s in batch]))
            top, cls = logits.float().max(dim=1)
            c, t = cls.reshape(-1).cpu(), top.reshape(-1).double().cpu()
            n = logits.shape[1]
            counts = (0 if counts is None else counts) + torch.bincount(c, minlength=n).double()
            sums = (0 if sums is None else sums) + torch.bincount(c, weights=t, minlength=n)
            squares = (0 if squares is None else squares) + torch.bincount(c, weights=t * t, minlength=n)
        if counts is None:
            raise OodbenchError(f"sml: the fit split {name}/{split} has no frames; give an in-distribution split")
        total = counts.sum()
        pooled_mean = sums.sum() / total
        pooled_std = ((squares.sum() - total * pooled_mean**2) / (total - 1)).clamp(min=0).sqrt()
        seen = counts > 1
        mean = torch.where(seen, sums / counts.clamp(min=1), pooled_mean)
        var = (squares - counts * mean**2) / (counts - 1).clamp(min=1)
        std = torch.where(seen & (var > 0), var.clamp(min=0).sqrt(), pooled_std)
        stats = {"dataset": name, "split": split, "fingerprint": fingerprint, "num_images": len(data),
                 "pixels_per_class": counts.long().tolist(), "classes_pooled": int((~seen).sum()),
                 "mean": mean.tolist(), "std": std.tolist()}
        atomic_write(path, json.dumps(stats))
        return stats

    def maps_config(self) -> dict[str, Any]:
        """The maps depend on the fitted statistics too."""
        digest = hashlib.sha256(json.dumps([self.stats.get("mean"), self.stats.get("std")]).encode()).hexdigest()
        return {**super().maps_config(), "fit": {"dataset": self.stats.get("dataset"), "split": self.stats.get("split"),
                                                 "fingerprint": self.stats.get("fingerprint"), "stats": digest[:16]}}

    def config(self) -> dict[str, Any]:
        return {**super().config(), "score": "standardized max logit"}


@register_method("sml", meta=True)
def sml(seed: int = 0, checkpoint: str | Path | None = None, network: str | None = None, device: str | None = None,
        amp: bool | None = None, **_: Any) -> StandardizedMaxLogit:
    """Standardized max logit on the baseline network, statistics fitted on the in-distribution split."""
    return StandardizedMaxLogit(seed=seed, checkpoint=checkpoint, network=network, device=device, amp=amp)
