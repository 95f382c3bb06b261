"""Validation mIoU, streamed: a confusion matrix summed over batches (and processes), never a split in memory;
mean IoU over the classes present in labels or predictions."""
from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..models.network_cards import InferenceProtocol
from .distributed import DistContext, all_reduce_sum


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CPU, fp16 on CUDA; a no-op context when disabled."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16)


def update_confusion(conf: torch.Tensor, pred: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Add (label, prediction) counts of the pixels with a train id (< C) to the CxC ``conf``."""
    c = conf.shape[0]
    valid = label < c
    idx = label[valid].long() * c + pred[valid].long()
    conf += torch.bincount(idx, minlength=c * c).view(c, c)
    return conf


def miou_from_confusion(conf: torch.Tensor | np.ndarray) -> float:
    """Mean IoU over the classes present in labels or predictions."""
    conf = torch.as_tensor(conf).double().cpu()
    inter = conf.diag()
    union = conf.sum(0) + conf.sum(1) - inter
    present = union > 0
    return float((inter[present] / union[present]).mean()) if bool(present.any()) else float("nan")


def network_input(image: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """A uint8 (B,3,H,W) batch as the network takes it: float on ``device``, channels-last if asked."""
    x = image.to(device, non_blocking=True).float()
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@torch.no_grad()
def evaluate_miou(model: nn.Module, loader: DataLoader, num_classes: int, ctx: DistContext, amp: bool = False,
                  protocol: InferenceProtocol = InferenceProtocol(), channels_last: bool = False) -> float:
    """mIoU of ``model`` over ``loader`` (this rank's share), summed over all processes. The logits pass the
    network's ``protocol`` (cut to its score channels, resized to the label size) as scores are computed."""
    was_training = model.training
    model.eval()
    conf = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=ctx.device)
    for image, label in loader:
        label = label.to(ctx.device, non_blocking=True)
        with autocast(ctx.device, amp):
            logits = model(network_input(image, ctx.device, channels_last))
        update_confusion(conf, protocol.restore(logits, tuple(label.shape[-2:])).argmax(1), label)
    all_reduce_sum(conf, ctx)
    model.train(was_training)
    return miou_from_confusion(conf)
