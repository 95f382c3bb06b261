"""Trained models of the embedded benchmark: the trainer's embedded preset, trained once, cached under
$OODBENCH_HOME with their sha256 and config, and reused by every later run."""
from __future__ import annotations

import hashlib
import json
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path

from torch import nn

from ..errors import CheckpointError
from ..models.checkpoint import load_into, save_checkpoint, sha256_file
from ..models.registry import create_model
from ..paths import home
from .config import TrainConfig
from .trainer import Trainer

NUM_CLASSES = 19
ARCH = "tiny_deeplab"
STAGES = ("baseline", "entmax")


def stage_config(stage: str, seed: int = 0, data_seed: int = 0) -> TrainConfig:
    """The embedded preset: closed-set training with a one-cycle schedule, then a short entropy-maximization
    fine-tune with objects pasted into half the frames; stream sampling, channels-last batches, on the CPU."""
    if stage not in STAGES:
        raise ValueError(f"unknown training stage {stage!r}; choose one of {STAGES}")
    entmax = stage == "entmax"
    epochs = 4 if entmax else 10
    return TrainConfig(
        dataset="synthetic_cityscapes", dataset_options={"seed": data_seed}, proxy_dataset="synthetic_coco",
        proxy_options={"seed": data_seed}, proxy_mode="paste", proxy_fraction=0.5, model=ARCH,
        num_classes=NUM_CLASSES, objective="entmax" if entmax else "cross_entropy", epochs=epochs,
        lr=3e-4 if entmax else 3e-3, schedule="constant" if entmax else "onecycle", batch_size=8, crop=128, lam=0.9,
        fresh_optimizer=False, seed=seed + 1 if entmax else seed, sampling="stream", channels_last=True,
        workers=0, device="cpu", log_every=0, val_every=epochs)


def recorded_config(cfg: TrainConfig) -> dict:
    """What names a stage's model (its cache key and record): the fields of the former embedded trainer's config, so
    cached models keep their names; a preset change outside them must bump the key's "v" to retrain."""
    return {"epochs": cfg.epochs, "lr": cfg.lr, "batch_size": cfg.batch_size, "crop": cfg.crop, "seed": cfg.seed,
            "entmax": cfg.objective == "entmax", "lam": cfg.lam, "proxy_mode": cfg.proxy_mode,
            "proxy_fraction": cfg.proxy_fraction}


def _key(stage: str, seed: int, data_seed: int) -> str:
    chain = [recorded_config(stage_config(s, seed, data_seed)) for s in STAGES[: STAGES.index(stage) + 1]]
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
    cfg, parent = stage_config(stage, seed, data_seed), None
    if stage != STAGES[0]:
        previous = STAGES[STAGES.index(stage) - 1]
        parent = ensure_model(previous, seed, data_seed, progress)[1]
        cfg = replace(cfg, init=str(checkpoint_path(previous, seed, data_seed)))
    path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f".{path.stem}-", dir=path.parent) as run:
        trainer = Trainer(cfg, run, progress=progress)
        summary = trainer.fit()
        log = [{"epoch": r["epoch"], "loss": r["loss"]} for r in trainer.log.records() if r["event"] == "epoch"]
    model = trainer.model.eval()
    info = {
        "arch": ARCH, "stage": stage, "config": recorded_config(cfg), "log": log,
        "train_seconds": round(time.perf_counter() - start, 2),
        "val_miou": summary["miou_after"],
        "parent_sha256": parent["sha256"] if parent else None,
        "data": {"name": "synthetic", "seed": data_seed},
    }
    info["sha256"] = save_checkpoint(model.state_dict(), path, meta={"stage": stage})
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(info, indent=1))
    tmp.replace(path.with_suffix(".json"))
    return model, info
