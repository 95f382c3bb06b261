"""What a network card sets up in a training run: the model and protocol in the config, the initial weights (the
card's verified download or ``--init``), and frames as the network sees them (the protocol's input size)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image

from ..data.base import Sample
from ..errors import CheckpointError, OodbenchError
from ..models.network_cards import InferenceProtocol, NetworkCard, load_network_card
from .distributed import DistContext
from .entmax_data import FrameData, to_tensors


def network_config(cfg: Any) -> tuple[Any, NetworkCard | None]:
    """``cfg`` (an ``TrainConfig``) with the model, its options, class count, score channels and input size of its network card
    (unchanged without one); a model or options other than the card's are an error."""
    if cfg.network is None:
        return cfg, None
    card = load_network_card(cfg.network)
    if cfg.model not in (type(cfg).model, card.model) or (cfg.model_options and cfg.model_options != card.options):
        raise OodbenchError(f"network {card.name} sets the model ({card.model} with options {card.options}); "
                            f"model {cfg.model!r} with options {cfg.model_options} conflicts with it: give either "
                            f"the network or a model")
    size = list(card.protocol.input_size) if card.protocol.input_size is not None else None
    return replace(cfg, model=card.model, model_options=dict(card.options), num_classes=card.num_classes,
                   score_channels=card.protocol.score_channels, input_size=size), card


def resolve_init(card: NetworkCard, init: str | None, progress: bool, ctx: DistContext) -> Path:
    """The initial weights of a network-card run: ``init`` (a local file) wins, else the card's verified download,
    fetched by the main process while the others wait for it."""
    from ..models.download import resolve_checkpoint

    if init is not None:
        path = Path(init).expanduser()
        if not path.is_file():
            raise CheckpointError(f"{path}: --init file not found" + (" (it is a folder; pass the checkpoint file "
                                                                      "inside it)" if path.is_dir() else ""))
    elif not card.checkpoint_url:
        raise CheckpointError(f"network {card.name} publishes no download URL ({card.path}); pass --init PATH to "
                              f"its weights")
    if ctx.enabled and not ctx.is_main:
        dist.barrier()  # rank 0 downloads first; the others then find the verified file in the cache
    try:
        return resolve_checkpoint(checkpoint=init, url=card.checkpoint_url, sha256=card.checkpoint_sha256,
                                  filename=card.checkpoint_file, progress=progress and ctx.is_main)
    finally:
        if ctx.enabled and ctx.is_main:
            dist.barrier()


class ResizedFrames(Sequence):
    """Frames at the network's input size (width, height): images resized as the inference protocol resizes them
    (PIL bilinear), label maps with nearest neighbours; frames of that size pass unchanged."""

    def __init__(self, frames: Sequence[Sample], size: tuple[int, int] | list[int]):
        self.frames, self.size = frames, (int(size[0]), int(size[1]))

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> Sample:  # type: ignore[override]
        sample = self.frames[index]
        if (sample.image.shape[1], sample.image.shape[0]) == self.size:
            return sample
        image = InferenceProtocol(input_size=self.size).prepare(sample.image[None])[0]
        label = np.asarray(Image.fromarray(sample.label).resize(self.size, Image.NEAREST))
        return Sample(sample.id, image, label, dict(sample.meta))


class ProtocolFrames(FrameData):
    """Validation frames as the network sees them (the protocol's input size) with their labels as they are."""

    def __init__(self, frames: Sequence[Sample], limit: int | None, protocol: InferenceProtocol):
        super().__init__(frames, limit)
        self.protocol = protocol

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        sample = self.frames[index]
        return to_tensors(self.protocol.prepare(sample.image[None])[0], sample.label)
