"""The settings of a training run: the defaults are the paper's entropy-maximization schedule at real scale;
presets (``embedded.stage_config``) pick closed-set training, the one-cycle schedule and stream sampling."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import OodbenchError
from .loss import OBJECTIVES
from .proxy import PROXY_MODES

SCHEDULES = ("constant", "onecycle")
# indexed: an item's random numbers depend on (seed, epoch, position) only, so workers, processes and resume see the
# same samples; stream: one generator drawn in order through every epoch (the embedded models' recipe)
SAMPLINGS = ("indexed", "stream")


@dataclass
class TrainConfig:
    """A run's settings; the defaults are the paper's schedule for its released model."""

    dataset: str = "cityscapes"
    data_root: str | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)
    proxy_dataset: str = "coco_proxy"
    proxy_root: str | None = None
    proxy_options: dict[str, Any] = field(default_factory=dict)
    proxy_mode: str = "whole"
    proxy_fraction: float = 0.1
    model: str = "deeplabv3plus_wrn38"
    model_options: dict[str, Any] = field(default_factory=dict)
    init: str | None = None
    num_classes: int = 19
    objective: str = "entmax"  # or "cross_entropy": closed-set training, no proxies
    epochs: int = 4
    lr: float = 1e-5
    schedule: str = "constant"  # or "onecycle" (OneCycleLR peaking at lr), which needs the optimizer kept
    batch_size: int = 8  # global: split evenly over torchrun processes
    crop: int = 480
    lam: float = 0.9
    fresh_optimizer: bool = True  # a new Adam every epoch, as the paper code does
    seed: int = 0
    sampling: str = "indexed"
    channels_last: bool = False  # batches reach the network channels-last (the embedded models were trained so)
    amp: bool = False
    workers: int = 4
    device: str | None = None
    log_every: int = 50
    save_every: int = 0  # also checkpoint every N optimizer steps (0: only at epoch ends)
    val_every: int = 1  # validate every K epochs and after the last (0: never)
    val_max_images: int | None = None
    max_steps: int | None = None
    network: str | None = None  # a network card (methods/networks/<name>.toml): sets model .. input_size
    score_channels: int | None = None  # the outputs the OoD term and validation see (None: all); a card's protocol
    input_size: list[int] | None = None  # [width, height] frames are resized to first (None: as they are)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Settings a resumed run must share with its checkpoint (epochs may grow; paths, workers, logging may change).
RESUME_KEYS = ("dataset", "proxy_dataset", "proxy_mode", "proxy_fraction", "model", "model_options",
               "num_classes", "objective", "lr", "schedule", "batch_size", "crop", "lam", "fresh_optimizer", "seed",
               "sampling", "channels_last", "amp", "network", "score_channels", "input_size")


def resume_conflicts(stored: dict[str, Any], cfg: TrainConfig) -> list[str]:
    """The settings that differ between a checkpoint's config and ``cfg``; one the checkpoint predates counts at
    its default."""
    default = TrainConfig()
    keys = RESUME_KEYS + (("epochs",) if cfg.schedule == "onecycle" else ())  # the schedule spans the epochs
    return [f"{k}: checkpoint {stored.get(k, getattr(default, k))!r}, now {getattr(cfg, k)!r}" for k in keys
            if stored.get(k, getattr(default, k)) != getattr(cfg, k)]


def check_config(cfg: TrainConfig, world_size: int) -> None:
    choices = (("proxy_mode", PROXY_MODES), ("objective", OBJECTIVES), ("schedule", SCHEDULES),
               ("sampling", SAMPLINGS))
    for name, allowed in choices:
        if getattr(cfg, name) not in allowed:
            raise OodbenchError(f"unknown {name.replace('_', ' ')} {getattr(cfg, name)!r}; choose one of "
                                f"{', '.join(allowed)}")
    for name in ("epochs", "batch_size", "crop"):
        if getattr(cfg, name) < 1:
            raise OodbenchError(f"{name} must be at least 1, got {getattr(cfg, name)}")
    if cfg.schedule == "onecycle" and cfg.fresh_optimizer:
        raise OodbenchError("the onecycle schedule spans the whole run: keep the optimizer across epochs "
                            "(fresh_optimizer=False, --keep-optimizer)")
    if cfg.score_channels is not None and not 1 <= cfg.score_channels <= cfg.num_classes:
        raise OodbenchError(f"score_channels {cfg.score_channels} must lie in 1..{cfg.num_classes} (the outputs)")
    if cfg.input_size is not None and (len(cfg.input_size) != 2 or min(cfg.input_size) < 1):
        raise OodbenchError(f"input_size {cfg.input_size} must be [width, height] in pixels")
    if cfg.batch_size % world_size:
        raise OodbenchError(f"batch size {cfg.batch_size} does not split evenly over {world_size} processes")
