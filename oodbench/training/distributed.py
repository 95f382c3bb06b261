"""torchrun support: a process group from the environment when WORLD_SIZE > 1, one process otherwise;
epoch sharding in the DistributedSampler style and sum all-reduces for losses and confusion matrices."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from ..errors import OodbenchError


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: its rank among ``world_size`` processes and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False  # this process created the group, so it also destroys it

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(requested: str | None, local_rank: int = 0) -> torch.device:
    """``requested`` ("cpu", "cuda", "cuda:1"), else CUDA when available (one GPU per local rank), else CPU."""
    if requested:
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise OodbenchError(f"--device {requested}: CUDA is not available on this machine; use --device cpu")
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", local_rank)
        return device
    return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")


def init_distributed(requested_device: str | None = None) -> DistContext:
    """Join the torchrun process group (env:// rendezvous; NCCL on CUDA, gloo on CPU) when WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(device=pick_device(requested_device))
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(requested_device, local)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistContext(rank, world, local, device, owns)


def shutdown(ctx: DistContext) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: nn.Module, ctx: DistContext) -> nn.Module:
    """DistributedDataParallel over ``model`` when distributed; the model itself otherwise."""
    if not ctx.enabled:
        return model
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def sync_buffers(model: nn.Module, ctx: DistContext) -> None:
    """Give every rank rank 0's buffers (BatchNorm statistics), which DDP otherwise only broadcasts at the
    next training forward, so validation and checkpoints see one model."""
    if ctx.enabled:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def all_reduce_sum(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum ``tensor`` over processes in place (identity in a single process)."""
    if ctx.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def shard_epoch(length: int, ctx: DistContext, global_batch: int, skip_steps: int = 0) -> list[int]:
    """This rank's positions of an epoch of ``length`` items: padded by wrapping to a multiple of the
    world size, the first ``skip_steps`` global batches dropped (a resumed epoch), then every
    ``world_size``-th position from ``rank``."""
    padded = list(range(length)) + [i % length for i in range((-length) % ctx.world_size)]
    return padded[skip_steps * global_batch:][ctx.rank::ctx.world_size]
