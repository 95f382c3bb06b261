"""Network cards: the TOML files in the repository's ``methods/networks/`` folder naming a published segmentation
network, where its weights come from (URL, sha256) and how it is run on a frame (the inference protocol), so a score
method can run on any of them and a record says exactly which network produced its maps."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import CheckpointError, OodbenchError
from ..files import read_toml
from ..paths import card_folder

NETWORKS_DIR = card_folder("methods") / "networks"
LOGIT_RESIZES = ("bilinear",)


@dataclass(frozen=True)
class InferenceProtocol:
    """How a frame reaches the network and its logits come back: ``input_size`` (width, height) resizes the uint8
    image with PIL's bilinear filter first (None: full resolution); logits are cut to the first ``score_channels``
    (e.g. ESPNetv2's 20th channel is background, which no 19-class score may see) and resized bilinearly
    (align_corners=False) to the frame size."""

    input_size: tuple[int, int] | None = None
    score_channels: int | None = None
    logits_resize: str = "bilinear"

    def prepare(self, images: np.ndarray) -> np.ndarray:
        """(B,H,W,3) uint8 frames -> the network's input frames."""
        if self.input_size is None or tuple(images.shape[2:0:-1]) == self.input_size:
            return images
        return np.stack([np.asarray(Image.fromarray(im).resize(self.input_size, Image.BILINEAR)) for im in images])

    def restore(self, logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Network logits (B,C,h,w) -> the score classes at the frame size (H, W)."""
        if self.score_channels is not None:
            logits = logits[:, : self.score_channels]
        return self.resize(logits, size)

    def resize(self, maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Network maps (B,C,h,w) at the input size -> the frame size (H, W), as the logits return (every channel
        kept: also the penultimate features)."""
        maps = maps.contiguous()  # a channels-last network's maps: scores reduce over channels 2x-6x faster
        if tuple(maps.shape[-2:]) != tuple(size):
            maps = F.interpolate(maps.float(), size=tuple(size), mode="bilinear", align_corners=False)
        return maps

    def describe(self) -> dict[str, Any]:
        return {"input_size": list(self.input_size) if self.input_size else "full resolution",
                "image_resize": "PIL bilinear" if self.input_size else None,
                "score_channels": self.score_channels, "logits_resize": f"{self.logits_resize} to the label size"}


@dataclass(frozen=True)
class NetworkCard:
    """A published network: registered model name and options, checkpoint file, URL and sha256 (None:
    unpublished), and its inference protocol."""

    name: str
    model: str
    num_classes: int
    checkpoint_file: str
    checkpoint_url: str | None
    checkpoint_sha256: str | None
    source: str
    options: dict[str, Any] = field(default_factory=dict)
    protocol: InferenceProtocol = InferenceProtocol()
    title: str = ""
    path: str = ""

    def build(self):
        """The untrained model of this card (``create_model`` with the card's options)."""
        from .registry import create_model

        try:
            return create_model(self.model, num_classes=self.num_classes, **self.options)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{self.path}: model {self.model!r} cannot be built with num_classes="
                                  f"{self.num_classes} and options {self.options} ({exc}); fix the [model] table") from exc

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "model": self.model, "options": dict(self.options), "num_classes": self.num_classes,
                "checkpoint_file": self.checkpoint_file, "checkpoint_url": self.checkpoint_url,
                "published_sha256": self.checkpoint_sha256, "protocol": self.protocol.describe()}


def list_network_cards() -> list[str]:
    """Names of the network cards present; empty when the cards folder is missing (a broken install)."""
    return sorted(p.stem for p in NETWORKS_DIR.glob("*.toml")) if NETWORKS_DIR.is_dir() else []


def load_network_card(name: str) -> NetworkCard:
    path = NETWORKS_DIR / f"{name}.toml"
    if not path.is_file():
        raise OodbenchError(f"unknown network {name!r}: no card {path}; networks present: "
                            f"{', '.join(list_network_cards()) or 'none'} (`oodbench list networks`)")
    card = read_toml(path)
    return parse_network(card, name, path)


def parse_network(card: dict[str, Any], name: str, path: Path | str) -> NetworkCard:
    """A card's ``[model]`` and ``[protocol]`` tables; empty url or sha256 mean unpublished."""
    try:
        m, p = card["model"], card.get("protocol", {})
        size = p.get("input_size")
        if size is not None and (len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size)):
            raise ValueError(f"protocol.input_size {size!r} must be [width, height] in pixels")
        channels, outputs = p.get("score_channels"), int(m.get("num_classes", 19))
        if channels is not None and not (isinstance(channels, int) and 1 <= channels <= outputs):
            raise ValueError(f"protocol.score_channels {channels!r} must be a whole number in 1..{outputs} (the "
                             f"network's outputs, model.num_classes)")
        if p.get("logits_resize", "bilinear") not in LOGIT_RESIZES:
            raise ValueError(f"protocol.logits_resize {p['logits_resize']!r} must be one of {LOGIT_RESIZES}")
        protocol = InferenceProtocol(input_size=tuple(size) if size else None, score_channels=p.get("score_channels"),
                                     logits_resize=p.get("logits_resize", "bilinear"))
        return NetworkCard(name=name, model=m["name"], num_classes=int(m.get("num_classes", 19)),
                           checkpoint_file=m["checkpoint_file"], checkpoint_url=m.get("checkpoint_url") or None,
                           checkpoint_sha256=m.get("checkpoint_sha256") or None, source=m.get("source", ""),
                           options=dict(m.get("options", {})), protocol=protocol, title=card.get("title", ""),
                           path=str(path))
    except KeyError as exc:
        raise CheckpointError(f"{path}: the [model] table lacks {exc}; it needs name, checkpoint_file and "
                              f"(optionally) checkpoint_url, checkpoint_sha256, num_classes, options") from None
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: {exc}") from None
