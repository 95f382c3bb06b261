"""Trained models of the embedded benchmark: trained once, cached under $OODBENCH_HOME with their
sha256 and config, and reused by every later run."""
from __future__ import annotations

import hashlib
import json
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from ..data.base import DATASETS
from ..errors import CheckpointError
from ..models.checkpoint import load_into, save_checkpoint, sha256_file
from ..models.registry import create_model
from ..paths import home
from .loop import TrainConfig, mean_iou, train_model

NUM_CLASSES = 19
ARCH = "tiny_deeplab"
STAGES = ("baseline", "entmax")


def stage_config(stage: str, seed: int = 0) -> TrainConfig:
    """The embedded benchmark's schedules: closed-set training, then a short entropy-maximization fine-tune."""
    if stage == "baseline":
        return TrainConfig(epochs=10, lr=3e-3, batch_size=8, crop=128, seed=seed)
    if stage == "entmax":
        return TrainConfig(epochs=4, lr=3e-4, batch_size=8, crop=128, seed=seed + 1, entmax=True, lam=0.9)
    raise ValueError(f"unknown training stage {stage!r}; choose one of {STAGES}")


def _key(stage: str, seed: int, data_seed: int) -> str:
    chain = [stage_config(s, seed).to_dict() for s in STAGES[: STAGES.index(stage) + 1]]
    blob = json.dumps({"arch": ARCH, "chain": chain, "data_seed": data_seed, "v": 1}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def checkpoint_path(stage: str, seed: int = 0, data_seed: int = 0) -> Path:
    return home() / "models" / f"{ARCH}-synthetic-{stage}-seed{seed}-{_key(stage, seed, data_seed)}.pt"


def _load_cached(path: Path) -> tuple[nn.Module, dict] | None:
    """The cached model and its info; None when absent, or when either file is unreadable or they disagree: the
    embedded models are oodbench's own and deterministic, so a damaged copy is trained again (with a warning)."""
    info_path = path.with_suffix(".json")
    if not (path.is_file() and info_path.is_file()):
        return None
    try:
        info = json.loads(info_path.read_text())
        if not isinstance(info, dict) or sha256_file(path) != info.get("sha256"):
            raise CheckpointError(f"its sha256 differs from {info_path.name}")
        model = create_model(ARCH, num_classes=NUM_CLASSES)
        load_into(model, path)
    except (OSError, ValueError, CheckpointError) as exc:
        warnings.warn(f"{path}: the cached embedded model is damaged ({exc}); training it again", stacklevel=3)
        return None
    return model.eval(), info


def ensure_model(stage: str, seed: int = 0, data_seed: int = 0, progress: bool = True) -> tuple[nn.Module, dict]:
    """Return the trained model of ``stage`` and its info (sha256, config, log, mIoU), training if needed."""
    path = checkpoint_path(stage, seed, data_seed)
    cached = _load_cached(path)
    if cached is not None:
        return cached
    frames = list(DATASETS.create("synthetic_cityscapes", split="train", seed=data_seed))
    val = list(DATASETS.create("synthetic_cityscapes", split="val", seed=data_seed))
    cfg = stage_config(stage, seed)
    if stage == "baseline":
        with torch.random.fork_rng():
            torch.manual_seed(cfg.seed)
            model = create_model(ARCH, num_classes=NUM_CLASSES)
        proxies: list = []
        parent = None
    else:
        model, parent = ensure_model(STAGES[STAGES.index(stage) - 1], seed, data_seed, progress)
        proxies = list(DATASETS.create("synthetic_coco", split="train", seed=data_seed))
    start = time.perf_counter()
    log = train_model(model, frames, proxies, cfg, progress=progress)
    info = {
        "arch": ARCH, "stage": stage, "config": cfg.to_dict(), "log": log,
        "train_seconds": round(time.perf_counter() - start, 2),
        "val_miou": mean_iou(model, val, NUM_CLASSES),
        "parent_sha256": parent["sha256"] if parent else None,
        "data": {"name": "synthetic", "seed": data_seed},
    }
    info["sha256"] = save_checkpoint(model.state_dict(), path, meta={"stage": stage})
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(info, indent=1))
    tmp.replace(path.with_suffix(".json"))
    return model.eval(), info
