"""Methods made of a segmentation model and a score function over its logits."""
from __future__ import annotations

import hashlib
import inspect
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError
from ..scores import SCORES
from .base import Method, MethodOutput, register_method
from .cards import card_model, load_method_card


class ModelScoreMethod(Method):
    """A segmentation model followed by a registered score function. Which model depends on the data: the
    embedded benchmark's own trained ``tiny_deeplab`` stage, or on real road scenes the model and checkpoint
    named by the method card (``methods/<card>.toml``), e.g. the paper's DeepLabV3+ WideResNet38."""

    provides_probs = True
    cacheable = True

    def cache_identity(self) -> dict[str, Any]:
        """What else determines the maps: the code of the score function, of this class and of the model's module
        (a fixed bug must not read stale maps)."""
        parts = [self.score_fn, type(self)] + ([inspect.getmodule(type(self.model))] if self.model is not None else [])
        return {"code": hashlib.sha256("".join(_source(p) for p in parts).encode()).hexdigest()}

    def __init__(self, name: str, score_name: str, stage: str, card: str, seed: int = 0,
                 checkpoint: str | Path | None = None, device: str | None = None, amp: bool | None = None):
        self.name = name
        self.score_name = score_name
        self.score_fn = SCORES.get(score_name)
        self.stage, self.card, self.seed, self.checkpoint = stage, card, seed, checkpoint
        self.domain = "embedded"
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        # mixed precision (fp16 on CUDA, bf16 on CPU) and channels-last; by default on a GPU only
        self.amp = self.device.type == "cuda" if amp is None else amp
        self.model: nn.Module | None = None
        self.model_info: dict[str, Any] = {}

    def bind(self, dataset) -> None:
        """Pick the model trained for the evaluated dataset's domain."""
        self.domain = getattr(dataset, "domain", "real")

    @property
    def model_label(self) -> str:
        if self.domain == "embedded":
            return f"tiny_deeplab/{self.stage}"
        return card_model(load_method_card(self.card)).name

    def _load(self, progress: bool) -> tuple[nn.Module, dict[str, Any]]:
        if self.domain == "embedded":
            if self.checkpoint is not None:
                raise CheckpointError(f"--checkpoint {self.checkpoint}: the embedded benchmark trains and caches its "
                                      f"own models; pass --checkpoint only with a real dataset")
            from ..training.embedded import ensure_model

            return ensure_model(self.stage, seed=self.seed, progress=progress)
        return load_card_model(self.card, self.checkpoint, progress)

    def setup(self, progress: bool = True) -> dict[str, Any]:
        model, info = self._load(progress)
        self.model = model.to(self.device).eval()
        if self.amp:  # the inputs go channels-last too: no layout conversion in every conv
            self.model = self.model.to(memory_format=torch.channels_last)
        self.model_info = info
        return {"model": self.model_label, "checkpoint_sha256": info.get("sha256"), "model_info": info}

    @torch.no_grad()
    def predict(self, images: np.ndarray) -> MethodOutput:
        if self.model is None:
            raise RuntimeError(f"method {self.name!r}: call setup() before predict()")
        x = torch.from_numpy(np.ascontiguousarray(images))
        if self.device.type == "cuda":  # page-locked, so that the copy runs asynchronously
            x = x.pin_memory()
        x = x.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float()
        if self.amp:
            dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
            with torch.autocast(self.device.type, dtype=dtype):
                logits = self.model(x.contiguous(memory_format=torch.channels_last)).float()
        else:
            logits = self.model(x)
        on_device = self.score_fn(logits).float()
        scores, kept = on_device.cpu().numpy(), on_device if self.device.type != "cpu" else None
        if self.segment_stage is None:
            return MethodOutput(scores=scores, device_scores=kept)
        return MethodOutput(scores=scores, probs=torch.softmax(logits.float(), dim=1).cpu().numpy(), device_scores=kept)

    def config(self) -> dict[str, Any]:
        stage = self.segment_stage
        return {"name": self.name, "score": self.score_name, "model": self.model_label,
                "precision": ("fp16" if self.device.type == "cuda" else "bf16") + "-autocast" if self.amp else "fp32",
                "card": None if self.domain == "embedded" else self.card,
                "segment_stage": None if stage is None else vars(stage)}


def _source(obj: Any) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return repr(getattr(obj, "__code__", obj))


def load_card_model(card: str, checkpoint: str | Path | None, progress: bool) -> tuple[nn.Module, dict[str, Any]]:
    """Build the card's model and load its checkpoint: ``checkpoint`` (a local file) wins, else the card's URL is
    fetched into the cache and checked against the published sha256 when there is one."""
    from ..models.checkpoint import load_into
    from ..models.download import resolve_checkpoint
    from ..models.registry import create_model

    spec = card_model(load_method_card(card))
    path = resolve_checkpoint(checkpoint=checkpoint, url=spec.checkpoint_url, sha256=spec.checkpoint_sha256,
                              filename=spec.checkpoint_file, progress=progress)
    model = create_model(spec.name, num_classes=spec.num_classes)
    loaded = load_into(model, path, cached_hash=checkpoint is None)
    info = {"arch": spec.name, "card": card, "checkpoint_file": Path(path).name, "checkpoint_url": spec.checkpoint_url,
            "checkpoint_source": spec.source, "sha256": loaded["sha256"], "published_sha256": spec.checkpoint_sha256,
            "matches_published": None if spec.checkpoint_sha256 is None else loaded["sha256"] == spec.checkpoint_sha256,
            "local_override": checkpoint is not None}
    return model.eval(), info


def model_score_method(name: str, score: str, stage: str, card: str, seed: int = 0, device: str | None = None,
                       checkpoint: str | Path | None = None, amp: bool | None = None, **_: Any) -> ModelScoreMethod:
    return ModelScoreMethod(name, score, stage, card, seed=seed, checkpoint=checkpoint, device=device, amp=amp)


def baseline_score_method(score: str, **kwargs: Any) -> ModelScoreMethod:
    """Any registered score (a plugin's too) on the closed-set baseline model."""
    return model_score_method(score, score, "baseline", "baseline", **kwargs)


register_method("entmax", meta=True)(lambda **kw: model_score_method("entmax", "entropy", "entmax", "entmax", **kw))
