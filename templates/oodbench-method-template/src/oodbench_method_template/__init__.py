"""Template oodbench method plugin: the normalized entropy of the temperature-scaled softmax of oodbench's closed-set
baseline network. Copy the package, rename it, and replace ``tempered_entropy`` (or the whole ``predict``) with yours."""
from __future__ import annotations

import math
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
import torch

from oodbench.errors import CheckpointError
from oodbench.methods import Method, MethodOutput

NAME = "my_method"  # must equal the entry-point name in pyproject.toml
DISTRIBUTION = "oodbench-method-template"
DEFAULT_TEMPERATURE = 0.5  # chosen on the embedded benchmark's val split, never on test


def tempered_entropy(logits: torch.Tensor, temperature: float = DEFAULT_TEMPERATURE) -> torch.Tensor:
    """Entropy of softmax(logits / T) over the class axis, divided by log(C): (B, C, H, W) -> (B, H, W) in [0, 1],
    higher = more OoD. T < 1 sharpens the softmax, so the score mostly follows the gap between the two top logits."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    probs = torch.softmax(logits.float() / temperature, dim=1)
    return torch.special.entr(probs).sum(dim=1) / math.log(logits.shape[1])  # entr(0) = 0, never NaN


def load_baseline(domain: str, seed: int, checkpoint: str | None, progress: bool) -> tuple[torch.nn.Module, dict]:
    """oodbench's closed-set network: on the embedded benchmark its own trained tiny_deeplab (cached in
    $OODBENCH_HOME), on real road scenes the network card the ``baseline`` method card names, with its checkpoint."""
    if domain == "embedded":
        if checkpoint is not None:
            raise CheckpointError("the embedded benchmark trains its own baseline model; pass --checkpoint only with "
                                  "a real dataset")
        from oodbench.training.embedded import ensure_model

        return ensure_model("baseline", seed=seed, progress=progress)
    from oodbench.methods.model_score import load_method_network

    return load_method_network("baseline", checkpoint, progress)


def _plugin_version() -> str:
    try:
        return f"{DISTRIBUTION} {version(DISTRIBUTION)}"
    except PackageNotFoundError:  # imported from a source tree that was never installed
        return f"{DISTRIBUTION} (not installed)"


class TemperatureEntropy(Method):
    """The method oodbench runs: ``bind`` learns the data's domain, ``setup`` loads the model once, ``predict``
    scores a batch of uint8 RGB images (B, H, W, 3). Softmax probabilities are returned only when oodbench has set
    a segment stage (the derived ``my_method_meta``), since they are large."""

    name = NAME
    provides_probs = True

    def __init__(self, temperature: float = DEFAULT_TEMPERATURE, seed: int = 0, device: str | None = None,
                 checkpoint: str | None = None):
        self.temperature, self.seed, self.checkpoint = float(temperature), seed, checkpoint
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.domain = "embedded"
        self.model: torch.nn.Module | None = None
        self.model_label = "tiny_deeplab/baseline"

    def bind(self, dataset) -> None:
        self.domain = getattr(dataset, "domain", "real")

    def setup(self, progress: bool = True) -> dict[str, Any]:
        model, info = load_baseline(self.domain, self.seed, self.checkpoint, progress)
        self.model = model.to(self.device).eval()
        self.model_label = "tiny_deeplab/baseline" if self.domain == "embedded" else info.get("arch", "baseline")
        return {"model": self.model_label, "checkpoint_sha256": info.get("sha256"), "model_info": info}

    @torch.no_grad()
    def predict(self, images: np.ndarray) -> MethodOutput:
        if self.model is None:
            raise RuntimeError(f"method {self.name!r}: call setup() before predict()")
        x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device).permute(0, 3, 1, 2).float()
        logits = self.model(x).float()  # (B, C, H, W) at input resolution
        scores = tempered_entropy(logits, self.temperature).cpu().numpy().astype(np.float32)
        if self.segment_stage is None:
            return MethodOutput(scores=scores)
        return MethodOutput(scores=scores, probs=torch.softmax(logits, dim=1).cpu().numpy())

    def config(self) -> dict[str, Any]:
        stage = self.segment_stage
        return {"name": self.name, "score": "tempered_entropy", "temperature": self.temperature,
                "model": self.model_label, "plugin": _plugin_version(),
                "segment_stage": None if stage is None else vars(stage)}


def create(seed: int = 0, temperature: float = DEFAULT_TEMPERATURE, device: str | None = None,
           checkpoint: str | None = None) -> TemperatureEntropy:
    """The entry point oodbench calls (``oodbench run --method my_method --seed N``)."""
    return TemperatureEntropy(temperature=temperature, seed=seed, device=device, checkpoint=checkpoint)


create.provides_probs = True  # oodbench reads this on the entry-point object to also offer my_method_meta
