"""Methods made of a segmentation model and a score function over its logits."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..scores import SCORES
from .base import Method, MethodOutput, register_method


class ModelScoreMethod(Method):
    """A model (loaded or trained by ``loader``) followed by a registered score function."""

    provides_probs = True

    def __init__(self, name: str, score_name: str, loader: Callable[[bool], tuple[nn.Module, dict]],
                 model_label: str, device: str | None = None):
        self.name = name
        self.score_name = score_name
        self.score_fn = SCORES.get(score_name)
        self._loader = loader
        self.model_label = model_label
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model: nn.Module | None = None
        self.model_info: dict[str, Any] = {}

    def setup(self, progress: bool = True) -> dict[str, Any]:
        model, info = self._loader(progress)
        self.model = model.to(self.device).eval()
        self.model_info = info
        return {"model": self.model_label, "checkpoint_sha256": info.get("sha256"), "model_info": info}

    @torch.no_grad()
    def predict(self, images: np.ndarray) -> MethodOutput:
        if self.model is None:
            raise RuntimeError(f"method {self.name!r}: call setup() before predict()")
        x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device).permute(0, 3, 1, 2).float()
        logits = self.model(x)
        scores = self.score_fn(logits).float().cpu().numpy()
        if self.segment_stage is None:
            return MethodOutput(scores=scores)
        return MethodOutput(scores=scores, probs=torch.softmax(logits.float(), dim=1).cpu().numpy())

    def config(self) -> dict[str, Any]:
        stage = self.segment_stage
        return {"name": self.name, "score": self.score_name, "model": self.model_label,
                "segment_stage": None if stage is None else vars(stage)}


def _embedded(stage: str, seed: int = 0) -> Callable[[bool], tuple[nn.Module, dict]]:
    def load(progress: bool) -> tuple[nn.Module, dict]:
        from ..training.embedded import ensure_model

        return ensure_model(stage, seed=seed, progress=progress)

    return load


def model_score_method(name: str, score: str, stage: str, seed: int = 0, device: str | None = None,
                       **_: Any) -> ModelScoreMethod:
    """``score`` on the embedded benchmark's ``stage`` model."""
    return ModelScoreMethod(name, score, _embedded(stage, seed), f"tiny_deeplab/{stage}", device)


def baseline_score_method(score: str, **kwargs: Any) -> ModelScoreMethod:
    """Any registered score (a plugin's too) on the closed-set baseline model."""
    return model_score_method(score, score, "baseline", **kwargs)


register_method("entmax", meta=True)(lambda **kw: model_score_method("entmax", "entropy", "entmax", **kw))
