"""Per-pixel OoD scores computed from logits (B, C, H, W); higher means more anomalous."""
from __future__ import annotations

import math

import torch

from ..registry import Registry

SCORES: Registry = Registry("score", "oodbench.scores")
register_score = SCORES.register


@register_score("entropy")
def softmax_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Softmax entropy divided by log(C), so it lies in [0, 1] whatever the class count."""
    logp = torch.log_softmax(logits.float(), dim=1)
    return -(logp.exp() * logp).sum(dim=1) / math.log(logits.shape[1])


@register_score("msp")
def max_softmax(logits: torch.Tensor) -> torch.Tensor:
    """1 - max_c p_c (Hendrycks & Gimpel 2017)."""
    return 1.0 - torch.softmax(logits.float(), dim=1).amax(dim=1)


@register_score("maxlogit")
def max_logit(logits: torch.Tensor) -> torch.Tensor:
    """-max_c z_c (Hendrycks et al. 2022)."""
    return -logits.float().amax(dim=1)


@register_score("energy")
def energy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """-T logsumexp(z / T) (Liu et al. 2020)."""
    return -temperature * torch.logsumexp(logits.float() / temperature, dim=1)
