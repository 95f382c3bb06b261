"""The one trainer. By default entropy-maximization fine-tuning at real scale (Chan et al. 2021): Cityscapes +
COCO proxies streamed through a DataLoader, the paper's schedule, AMP, torchrun/DDP, resumable atomic checkpoints,
and a JSON-lines log of losses and validation mIoU; its config also trains closed-set (the embedded benchmark's
preset, ``embedded.stage_config``). With a network card (``network``), the card gives the model, its options,
class count, initial weights and inference protocol: frames reach the network at the protocol's input size,
and the OoD term and validation see only its score channels."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..data.base import DATASETS
from ..errors import CheckpointError, DatasetError, OodbenchError
from ..models.checkpoint import load_into, save_checkpoint
from ..models.network_cards import InferenceProtocol, NetworkCard
from ..models.registry import create_model
from .config import TrainConfig, check_config, resume_conflicts
from .distributed import (DistContext, all_reduce_sum, init_distributed, shard_epoch, shutdown, sync_buffers,
                          wrap_model)
from .entmax_data import IndexedTrainData
from .loss import objective_loss
from .network_setup import ProtocolFrames, ResizedFrames, network_config, resolve_init
from .stream_data import StreamTrainData
from .train_state import JsonlLog, atomic_save, capture_rng, load_state, restore_rng, seed_everything
from .validation import autocast, evaluate_miou, network_input

STATE_FILE, MODEL_FILE, LOG_FILE = "last.pt", "model.pt", "log.jsonl"
ONECYCLE_PCT_START = 0.15
ONECYCLE_SPARE_STEPS = 2  # per epoch, so a schedule sized before the run never runs short


def _datasets(cfg: TrainConfig):
    train = DATASETS.create(cfg.dataset, root=cfg.data_root, split="train", **cfg.dataset_options)
    if getattr(train, "label_kind", None) != "train_ids":
        raise DatasetError(f"{cfg.dataset} holds {getattr(train, 'label_kind', '?')} labels; training needs a "
                           f"segmentation set with train ids (e.g. cityscapes)")
    entmax = cfg.objective == "entmax"
    proxies = DATASETS.create(cfg.proxy_dataset, root=cfg.proxy_root, split="train", **cfg.proxy_options) \
        if entmax else []  # closed-set training opens none
    if len(train) == 0 or (entmax and len(proxies) == 0):
        raise DatasetError(f"{cfg.objective} training needs frames{' and proxies' if entmax else ''}; got "
                           f"{len(train)} frames and {len(proxies)} proxy images")
    val = None
    if cfg.val_every:
        val = DATASETS.create(cfg.dataset, root=cfg.data_root, split="val", **cfg.dataset_options)
    return train, proxies, val


def _loader(data, indices: list[int], batch: int, cfg: TrainConfig, ctx: DistContext) -> DataLoader:
    # own generator: starting an iteration must not draw from the global torch RNG (the data needs no seed)
    return DataLoader(data, batch_size=batch, sampler=indices, num_workers=cfg.workers,
                      pin_memory=ctx.device.type == "cuda", generator=torch.Generator().manual_seed(0))


class Trainer:
    """One run in ``out``: ``fit()`` trains from scratch or from ``out/last.pt`` and returns a summary.
    Log events: start; val (``epoch`` = epochs completed); train (mean loss of the last ``log_every`` steps)
    and epoch (mean loss of the epoch), both with the 1-based epoch in progress; resume; end."""

    def __init__(self, cfg: TrainConfig, out: str | Path, resume: bool = False, progress: bool = True,
                 ctx: DistContext | None = None):
        cfg, card = network_config(cfg)
        self.cfg, self.out, self.resume, self.progress = cfg, Path(out), resume, progress
        self.ctx = ctx or DistContext()
        check_config(cfg, self.ctx.world_size)
        self.log = JsonlLog(self.out / LOG_FILE, enabled=self.ctx.is_main)
        if not resume and (self.out / STATE_FILE).exists():
            raise OodbenchError(f"{self.out} already holds a run ({STATE_FILE}); pass --resume to continue it "
                                f"or choose another --out")
        seed_everything(cfg.seed)
        train, proxies, val = _datasets(cfg)
        # the network's view: the card's protocol (input size, score channels), or the frames and outputs as they are
        self.protocol = card.protocol if card is not None else InferenceProtocol(
            input_size=tuple(cfg.input_size) if cfg.input_size else None, score_channels=cfg.score_channels)
        if cfg.input_size is not None:
            train = ResizedFrames(train, cfg.input_size)
        sampling = StreamTrainData if cfg.sampling == "stream" else IndexedTrainData
        self.data = sampling(train, proxies, cfg.proxy_mode, cfg.proxy_fraction, cfg.crop, cfg.seed)
        self.val = None if val is None else ProtocolFrames(val, cfg.val_max_images, self.protocol)
        self.model = create_model(cfg.model, num_classes=cfg.num_classes, **cfg.model_options)
        self.init_info: dict[str, Any] | None = None
        if not resume:  # a resumed run's weights come from its state file
            self.init_info = self._load_init(card)
        self.model.to(self.ctx.device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.sched = self._one_cycle() if cfg.schedule == "onecycle" else None
        self.scaler = torch.amp.GradScaler(self.ctx.device.type, enabled=cfg.amp and self.ctx.device.type == "cuda")
        self.epoch = self.step_in_epoch = self.global_step = 0
        self.meters = torch.zeros(4, dtype=torch.float64, device=self.ctx.device)  # epoch sum, n; window sum, n
        self.miou_before: float | None = None
        self.miou_after: float | None = None
        if resume:
            self._load(self.out / STATE_FILE)
        self.net = wrap_model(self.model, self.ctx)

    # -- state ----------------------------------------------------------------------------------
    def _one_cycle(self) -> torch.optim.lr_scheduler.OneCycleLR:
        self.data.set_epoch(0)  # an epoch's length (the same every epoch)
        steps = -(-len(self.data) // self.cfg.batch_size) + ONECYCLE_SPARE_STEPS
        return torch.optim.lr_scheduler.OneCycleLR(self.opt, max_lr=self.cfg.lr, total_steps=self.cfg.epochs * steps,
                                                   pct_start=ONECYCLE_PCT_START)

    def _load_init(self, card: NetworkCard | None) -> dict[str, Any] | None:
        """Load the initial weights (the card's, or ``init``); what was loaded, with its sha256, for the records."""
        init = self.cfg.init
        if card is None and not init:
            return None
        path = resolve_init(card, init, self.progress, self.ctx) if card is not None else Path(init)
        loaded = load_into(self.model, path, cached_hash=init is None)
        published = card.checkpoint_sha256 if card is not None else None
        return {"network": None if card is None else card.name, "checkpoint": str(path), "sha256": loaded["sha256"],
                "published_sha256": published,
                "matches_published": None if published is None else loaded["sha256"] == published,
                "local_override": init is not None}

    def _load(self, path: Path) -> None:
        state = load_state(path)
        stored = state.get("config", {})
        differ = resume_conflicts(stored, self.cfg)
        if differ:
            raise CheckpointError(f"{path}: cannot resume with different settings ({'; '.join(differ)}); "
                                  f"use the original ones or start a new run in another --out")
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        if self.sched is not None:
            self.sched.load_state_dict(state["scheduler"])
        self.epoch, self.step_in_epoch, self.global_step = state["epoch"], state["step_in_epoch"], state["global_step"]
        meters = state["meters"].to(self.ctx.device)
        self.meters = meters if self.ctx.is_main else torch.zeros_like(meters)
        self.miou_before, self.miou_after = state["miou_before"], state["miou_after"]
        self.init_info = state.get("init")
        restore_rng(state["rng"])
        self.log.keep_until(self.global_step)
        self.log.write("resume", epoch=self.epoch, step=self.global_step, world_size=self.ctx.world_size)

    def _save(self) -> None:
        meters = all_reduce_sum(self.meters.clone(), self.ctx)  # every rank joins the reduction
        if not self.ctx.is_main:
            return
        atomic_save({
            "model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "scaler": self.scaler.state_dict(),
            "scheduler": None if self.sched is None else self.sched.state_dict(),
            "epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "global_step": self.global_step,
            "meters": meters.cpu(), "miou_before": self.miou_before, "miou_after": self.miou_after,
            "rng": capture_rng(), "config": self.cfg.to_dict(), "world_size": self.ctx.world_size,
            "init": self.init_info,
        }, self.out / STATE_FILE)

    def _save_model(self) -> str | None:
        if not self.ctx.is_main:
            return None
        init = self.init_info or {}
        meta = {"arch": self.cfg.model, "epoch": self.epoch, "global_step": self.global_step, "lam": self.cfg.lam,
                "proxy_mode": self.cfg.proxy_mode, "miou_before": self.miou_before, "miou_after": self.miou_after,
                "network": self.cfg.network, "init_sha256": init.get("sha256")}
        return save_checkpoint(self.model.state_dict(), self.out / MODEL_FILE, meta=meta)

    # -- steps ----------------------------------------------------------------------------------
    def _validate(self) -> float:
        sync_buffers(self.model, self.ctx)
        mine = list(range(len(self.val)))[self.ctx.rank::self.ctx.world_size]
        loader = _loader(self.val, mine, 1, self.cfg, self.ctx)
        miou = evaluate_miou(self.model, loader, self.cfg.score_channels or self.cfg.num_classes, self.ctx,
                             self.cfg.amp, self.protocol, self.cfg.channels_last)
        self.log.write("val", epoch=self.epoch, step=self.global_step, miou=miou, images=len(self.val))
        return miou

    def _step(self, image: torch.Tensor, label: torch.Tensor) -> None:
        x = network_input(image, self.ctx.device, self.cfg.channels_last)
        y = label.to(self.ctx.device, non_blocking=True).long()
        with autocast(self.ctx.device, self.cfg.amp):
            logits = self.net(x)
        loss = objective_loss(self.cfg.objective, logits, y, self.cfg.lam, self.cfg.score_channels)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        if self.sched is not None:
            self.sched.step()
        self.meters[0::2] += loss.detach().double() * len(x)
        self.meters[1::2] += len(x)
        self.step_in_epoch += 1
        self.global_step += 1

    def _reduced(self, first: int) -> float:
        pair = all_reduce_sum(self.meters[first:first + 2].clone(), self.ctx)
        return float(pair[0] / pair[1]) if float(pair[1]) > 0 else float("nan")

    def _train_epoch(self) -> bool:
        """Run the rest of the current epoch; False when ``max_steps`` stopped it early."""
        cfg, ctx = self.cfg, self.ctx
        if cfg.fresh_optimizer and self.step_in_epoch == 0:
            self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.data.set_epoch(self.epoch)
        batch = cfg.batch_size // ctx.world_size
        indices = shard_epoch(len(self.data), ctx, cfg.batch_size, self.step_in_epoch)
        if batch > 1 and len(indices) % batch == 1:  # BatchNorm over pooled 1x1 features cannot train on one sample
            indices = indices[:-1]
        loader = _loader(self.data, indices, batch, cfg, ctx)
        bar = tqdm(loader, desc=f"epoch {self.epoch + 1}/{cfg.epochs}", unit="step", leave=False,
                   disable=not (self.progress and ctx.is_main))
        start = time.perf_counter()
        for image, label in bar:
            self._step(image, label)
            if cfg.log_every and self.global_step % cfg.log_every == 0:
                self.log.write("train", epoch=self.epoch + 1, step=self.global_step, loss=self._reduced(2))
                self.meters[2:] = 0
            if cfg.save_every and self.global_step % cfg.save_every == 0:
                self._save()
            if cfg.max_steps is not None and self.global_step >= cfg.max_steps:
                bar.close()
                return False
        self.log.write("epoch", epoch=self.epoch + 1, step=self.global_step, loss=self._reduced(0),
                       seconds=round(time.perf_counter() - start, 2))
        self.epoch, self.step_in_epoch = self.epoch + 1, 0
        self.meters.zero_()
        return True

    def fit(self) -> dict[str, Any]:
        cfg = self.cfg
        if not self.resume:
            if self.ctx.is_main:
                self.log.path.unlink(missing_ok=True)
            self.log.write("start", epoch=0, step=0, config=cfg.to_dict(), world_size=self.ctx.world_size,
                           device=str(self.ctx.device), command=sys.argv, init=self.init_info)
            if self.val is not None:
                self.miou_before = self.miou_after = self._validate()
        self.model.train()
        finished = self.epoch >= cfg.epochs
        while not finished:
            if cfg.max_steps is not None and self.global_step >= cfg.max_steps:
                break
            if not self._train_epoch():
                if self.val is not None:
                    self.miou_after = self._validate()
                self._save()
                break
            if self.val is not None and (self.epoch % cfg.val_every == 0 or self.epoch == cfg.epochs):
                self.miou_after = self._validate()
            self._save()
            finished = self.epoch >= cfg.epochs
            if not finished:
                self._save_model()
        sha = self._save_model()
        summary = {"epoch": self.epoch, "step": self.global_step, "finished": finished,
                   "miou_before": self.miou_before, "miou_after": self.miou_after,
                   "model": str(self.out / MODEL_FILE), "sha256": sha, "state": str(self.out / STATE_FILE),
                   "log": str(self.out / LOG_FILE), "network": self.cfg.network,
                   "init_sha256": (self.init_info or {}).get("sha256"), "init": self.init_info}
        self.log.write("end", **summary)
        return summary


def run_training(cfg: TrainConfig, out: str | Path, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train under torchrun when WORLD_SIZE > 1, in this process otherwise; return the run's summary."""
    ctx = init_distributed(cfg.device)
    try:
        return Trainer(cfg, out, resume, progress, ctx).fit()
    finally:
        shutdown(ctx)
