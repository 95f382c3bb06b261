"""Methods made of a segmentation model and a score function over its logits."""
from __future__ import annotations

import contextlib
import hashlib
import inspect
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError, OodbenchError
from ..models.network_cards import InferenceProtocol, NetworkCard, load_network_card
from ..scores import SCORES
from .base import METHODS, Method, MethodOutput, register_method
from .cards import card_network, load_method_card


class ModelScoreMethod(Method):
    """A segmentation model followed by a registered score function. Which model depends on the data: the
    embedded benchmark's own trained ``tiny_deeplab`` stage, or on real road scenes the network card the method
    card names (``methods/<card>.toml``, e.g. the paper's DeepLabV3+ WideResNet38), or the one ``network`` names
    (``methods/networks/<network>.toml``, e.g. ESPNetv2), run with that card's inference protocol."""

    provides_probs = True
    cacheable = True

    def cache_identity(self) -> dict[str, Any]:
        """What else determines the maps: the code of the score function, of this class, of every oodbench module
        the model is built from and, for a published network, of its inference protocol (a fixed bug must not
        read stale maps)."""
        modules = set() if self.model is None else {type(m).__module__ for m in self.model.modules()}
        if self.network_card is not None:
            modules.add(InferenceProtocol.__module__)
        parts = [self.score_fn, type(self)] + [sys.modules[m] for m in sorted(modules) if m.startswith("oodbench.")]
        return {"code": hashlib.sha256("".join(_source(p) for p in parts).encode()).hexdigest()}

    def __init__(self, name: str, score_name: str, stage: str, card: str, seed: int = 0,
                 checkpoint: str | Path | None = None, device: str | None = None, amp: bool | None = None,
                 network: str | None = None):
        self.name = name
        self.score_name = score_name
        self.score_fn = SCORES.get(score_name)
        self.stage, self.card, self.seed, self.checkpoint = stage, card, seed, checkpoint
        self.network = network
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
    def network_card(self) -> NetworkCard | None:
        """The published network the maps come from; None on the embedded benchmark without ``--network``."""
        if self.network is not None:
            return load_network_card(self.network)
        return None if self.domain == "embedded" else card_network(load_method_card(self.card))

    @property
    def model_label(self) -> str:
        card = self.network_card
        return f"tiny_deeplab/{self.stage}" if card is None else card.model

    def _load(self, progress: bool) -> tuple[nn.Module, dict[str, Any]]:
        card = self.network_card
        if card is None:
            if self.checkpoint is not None:
                raise CheckpointError(f"--checkpoint {self.checkpoint}: the embedded benchmark trains and caches its "
                                      f"own models; pass --checkpoint only with a real dataset")
            from ..training.embedded import ensure_model

            return ensure_model(self.stage, seed=self.seed, progress=progress)
        model, info = load_network(card, self.checkpoint, progress, method_card=self.card)
        chosen = self.network is not None and self.network != load_method_card(self.card).get("network")
        return model, {**info, "network_source": "--network" if chosen else "method card"}

    def setup(self, progress: bool = True) -> dict[str, Any]:
        model, info = self._load(progress)
        self.model = model.to(self.device).eval()
        card = self.network_card
        self.protocol = card.protocol if card is not None else InferenceProtocol()
        # channels-last (inputs too: no layout conversion in every conv) with mixed precision, and for published
        # networks in fp32 as well: 1.1x-1.3x faster on CPU for ESPNetv2, WRN38 and tiny_deeplab alike; the
        # embedded models keep the layout their regression baseline was computed in
        self.channels_last = self.amp or card is not None
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.model_info = info
        return {"model": self.model_label, "checkpoint_sha256": info.get("sha256"), "model_info": info}

    @torch.no_grad()
    def predict(self, images: np.ndarray) -> MethodOutput:
        logits, scores = self.score_batch(images)
        scores = scores.float().cpu().numpy()
        if self.segment_stage is None:
            return MethodOutput(scores=scores)
        return MethodOutput(scores=scores, probs=torch.softmax(logits.float(), dim=1).cpu().numpy())

    def score_batch(self, images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, scores) of a batch on the device; methods scoring more than the logits (features) override it."""
        logits = self.logits(images)
        return logits, self.score_fn(logits)

    def _input(self, images: np.ndarray) -> torch.Tensor:
        """(B,H,W,3) uint8 frames -> the network's input (B,3,h,w) on the device, by the network's protocol."""
        if self.model is None:
            raise RuntimeError(f"method {self.name!r}: call setup() before predict()")
        x = torch.from_numpy(np.ascontiguousarray(self.protocol.prepare(images)))
        if self.device.type == "cuda":  # page-locked, so that the copy runs asynchronously
            x = x.pin_memory()
        x = x.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float()
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _precision(self):
        """Mixed precision where ``amp`` (fp16 on CUDA, bf16 on CPU), else nothing."""
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.float16 if self.device.type == "cuda" else torch.bfloat16)

    @torch.no_grad()
    def logits(self, images: np.ndarray) -> torch.Tensor:
        """(B,H,W,3) uint8 frames -> the score classes' logits (B,C,H,W) at frame size, by the network's protocol."""
        x = self._input(images)
        with self._precision():
            logits = self.model(x).float() if self.amp else self.model(x)
        return self.protocol.restore(logits, images.shape[1:3])

    @torch.no_grad()
    def logits_and_features(self, images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B,C,H,W) as ``logits`` gives them, and the network's penultimate features (B,D,H,W) resized to the
        frame the same way (the network's own resize to its input, then the protocol's), so the network's 1x1
        classifier over the features gives the logits pixel for pixel."""
        net = self.require_features()
        x = self._input(images)
        with self._precision():
            feats = net.features(x)
            logits, feats = net.resize(net.classifier(feats), x.shape[-2:]), net.resize(feats, x.shape[-2:])
        size = images.shape[1:3]
        return self.protocol.restore(logits.float(), size), self.protocol.resize(feats.float(), size)

    def require_features(self) -> nn.Module:
        """The set-up network, if it exposes penultimate features (``features``, ``classifier``, ``resize``)."""
        if self.model is None:
            raise RuntimeError(f"method {self.name!r}: call setup() before predict()")
        if not all(callable(getattr(self.model, a, None)) for a in ("features", "classifier", "resize")):
            raise OodbenchError(f"method {self.name!r} needs the penultimate features of its network, and "
                                f"{self.model_label!r} exposes none (features/classifier/resize); run it on the "
                                f"embedded benchmark (tiny_deeplab) or with --network espnetv2_cityscapes (also WRN38 and timm "
                                f"DeepLabV3+ networks)")
        return self.model

    def config(self) -> dict[str, Any]:
        stage, card = self.segment_stage, self.network_card
        network = {} if card is None else {"network": card.name, "protocol": card.protocol.describe()}
        return {"name": self.name, "score": self.score_name, "model": self.model_label, **network,
                "precision": ("fp16" if self.device.type == "cuda" else "bf16") + "-autocast" if self.amp else "fp32",
                "card": None if card is None else self.card,
                "segment_stage": None if stage is None else vars(stage)}

    def maps_config(self) -> dict[str, Any]:
        """X and X_meta compute the same maps, so their cache entries are shared: neither the name nor the segment
        stage is part of the key (segments are stored with the threshold that formed them)."""
        return {k: v for k, v in self.config().items() if k not in ("name", "segment_stage")}


def _source(obj: Any) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return repr(getattr(obj, "__code__", obj))


def load_network(card: NetworkCard, checkpoint: str | Path | None, progress: bool,
                 method_card: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Build the card's model and load its checkpoint: ``checkpoint`` (a local file) wins, else the card's URL is
    fetched into the cache and checked against the published sha256 when there is one."""
    from ..models.checkpoint import load_into
    from ..models.download import resolve_checkpoint

    path = resolve_checkpoint(checkpoint=checkpoint, url=card.checkpoint_url, sha256=card.checkpoint_sha256,
                              filename=card.checkpoint_file, progress=progress)
    model = card.build()
    loaded = load_into(model, path, cached_hash=checkpoint is None)
    matches = None if card.checkpoint_sha256 is None else loaded["sha256"] == card.checkpoint_sha256
    published = checkpoint is None or matches  # else a file of one's own: the card's URL does not describe it
    info = {"arch": card.model, "card": method_card, "network": card.name, "checkpoint_file": Path(path).name,
            "checkpoint_url": card.checkpoint_url if published else None,
            "checkpoint_source": card.source if published else "local file (--checkpoint)",
            "sha256": loaded["sha256"], "published_sha256": card.checkpoint_sha256, "matches_published": matches,
            "local_override": checkpoint is not None}
    meta = {k: v for k, v in loaded.items() if k != "sha256" and isinstance(v, str | int | float | bool)}
    if meta and not published:
        info["checkpoint_meta"] = meta  # e.g. what `oodbench train` wrote: network, init weights, step
    return model.eval(), info


def load_method_network(method_card: str, checkpoint: str | Path | None,
                        progress: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """The network a method card names, with its weights (``checkpoint``: a local file instead of the download):
    what a plugin method runs on real road scenes."""
    return load_network(card_network(load_method_card(method_card)), checkpoint, progress, method_card=method_card)


def model_score_method(name: str, score: str, stage: str, card: str, seed: int = 0, device: str | None = None,
                       checkpoint: str | Path | None = None, amp: bool | None = None,
                       network: str | None = None) -> ModelScoreMethod:
    return ModelScoreMethod(name, score, stage, card, seed=seed, checkpoint=checkpoint, device=device, amp=amp,
                            network=network)


def entmax_method(network: str | None = None, checkpoint: str | Path | None = None, **kw: Any) -> ModelScoreMethod:
    """The paper's method: entropy of its entropy-maximized network. Another network's published weights are
    closed-set, so ``network`` needs ``checkpoint``: that network's entropy-maximized weights."""
    if network not in (None, load_method_card("entmax").get("network")) and checkpoint is None:
        raise OodbenchError(f"entmax runs an entropy-maximized network, and --network {network} gives closed-set "
                            f"weights: use `--method entropy --network {network}` for those, or pass --checkpoint with "
                            f"{network}'s weights after `oodbench train --network {network}`")
    return model_score_method("entmax", "entropy", "entmax", "entmax", network=network, checkpoint=checkpoint, **kw)


def baseline_score_method(score: str, **kwargs: Any) -> ModelScoreMethod:
    """Any registered score (a plugin's too) on the closed-set baseline model."""
    return model_score_method(score, score, "baseline", "baseline", **kwargs)


register_method("entmax", meta=True)(entmax_method)


METHODS.score_method = baseline_score_method
