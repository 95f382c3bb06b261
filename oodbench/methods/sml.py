"""``sml``, standardized max logit (Jung et al., ICCV 2021): per predicted class, the mean and standard deviation of
the max logit over the fit split's pixels; the score is the max logit standardized by its class's statistics.
``sml_bs``, ``sml_ds`` and ``sml_bs_ds`` (the paper's full method) add boundary suppression and/or dilated smoothing
(``boundary_smoothing``); their settings are keyword options of each."""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from ..data.base import Sample
from ..errors import OodbenchError
from .base import register_method
from .boundary_smoothing import BoundarySmoothing
from .fitted import FittedMethod
from .model_score import _source


class StandardizedMaxLogit(FittedMethod):
    """``-(max logit - mean[c]) / std[c]`` with c the predicted class (higher = more OoD); a class the fit split
    predicts at fewer than two pixels takes the statistics of all fit pixels (the counts are recorded). ``post``: the
    boundary suppression and dilated smoothing applied to that map (None: the plain score)."""

    fit_kind = "sml"
    fit_params = ("mean", "std")

    def __init__(self, *args: Any, name: str = "sml", post: BoundarySmoothing | None = None, **kwargs: Any):
        super().__init__(name, "maxlogit", *args, **kwargs)
        self.post = post

    def fit(self, batches: Iterable[list[Sample]]) -> dict[str, Any]:
        sums = counts = squares = None
        for batch in batches:
            logits = self.logits(np.stack([s.image for s in batch]))
            top, cls = logits.float().max(dim=1)
            c, t = cls.reshape(-1).cpu(), top.reshape(-1).double().cpu()
            n = logits.shape[1]
            counts = (0 if counts is None else counts) + torch.bincount(c, minlength=n).double()
            sums = (0 if sums is None else sums) + torch.bincount(c, weights=t, minlength=n)
            squares = (0 if squares is None else squares) + torch.bincount(c, weights=t * t, minlength=n)
        total = counts.sum()
        pooled_mean = sums.sum() / total
        pooled_std = ((squares.sum() - total * pooled_mean**2) / (total - 1)).clamp(min=0).sqrt()
        seen = counts > 1
        mean = torch.where(seen, sums / counts.clamp(min=1), pooled_mean)
        var = (squares - counts * mean**2) / (counts - 1).clamp(min=1)
        std = torch.where(seen & (var > 0), var.clamp(min=0).sqrt(), pooled_std)
        return {"pixels": int(total), "pixels_per_class": counts.long().tolist(), "classes_pooled": int((~seen).sum()),
                "mean": mean.tolist(), "std": std.tolist()}

    def use_fit(self, stats: dict[str, Any]) -> None:
        mean = torch.as_tensor(stats["mean"], dtype=torch.float32, device=self.device)
        std = torch.as_tensor(stats["std"], dtype=torch.float32, device=self.device)
        post = self.post

        def standardized(logits: torch.Tensor) -> torch.Tensor:
            top, cls = logits.float().max(dim=1)
            score = (mean[cls] - top) / std[cls]  # higher = more OoD, like max logit's -max_c z_c
            return score if post is None else post(score, cls)

        self.score_fn = standardized

    def cache_identity(self) -> dict[str, Any]:
        """The post-processing's code identifies the maps too."""
        code = super().cache_identity()["code"]
        if self.post is not None:
            code = hashlib.sha256((code + _source(sys.modules[BoundarySmoothing.__module__])).encode()).hexdigest()
        return {"code": code}

    def config(self) -> dict[str, Any]:
        post = {} if self.post is None else {"post_processing": self.post.describe()}
        return {**super().config(), "score": "standardized max logit", **post}


VARIANTS = {"sml": (False, False, "plain"), "sml_bs": (True, False, "with boundary suppression"),
            "sml_ds": (False, True, "with dilated smoothing"),
            "sml_bs_ds": (True, True, "with boundary suppression and dilated smoothing (the paper's full method)")}
POST_OPTIONS = ("boundary_width", "boundary_iterations", "kernel_size", "dilation", "sigma")


def _factory(name: str):
    suppression, smoothing, what = VARIANTS[name]

    def create(seed: int = 0, checkpoint: str | Path | None = None, network: str | None = None,
               device: str | None = None, amp: bool | None = None, fit_dataset: str | None = None,
               fit_split: str | None = None, fit_root: str | Path | None = None,
               **options: Any) -> StandardizedMaxLogit:
        post_processed = suppression or smoothing
        unknown = sorted(set(options) - set(POST_OPTIONS if post_processed else ()))
        if unknown:
            valid = ", ".join(POST_OPTIONS)
            raise OodbenchError(f"method {name!r} takes no option {', '.join(unknown)}; " + (
                f"its options: {valid}" if post_processed else f"sml_bs, sml_ds and sml_bs_ds take {valid}"))
        post = BoundarySmoothing(suppression, dilated_smoothing=smoothing, **options) if post_processed else None
        return StandardizedMaxLogit(name=name, post=post, seed=seed, checkpoint=checkpoint, network=network,
                                    device=device, amp=amp, fit_dataset=fit_dataset, fit_split=fit_split,
                                    fit_root=fit_root)

    create.__doc__ = f"Standardized max logit on the baseline network, {what}; class statistics fitted in-distribution."
    return create


for _name in VARIANTS:
    register_method(_name, meta=True)(_factory(_name))
