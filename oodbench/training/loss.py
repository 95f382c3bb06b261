"""The paper's entropy-maximization objective as a soft-target cross-entropy, and closed-set cross-entropy
(how the network it fine-tunes is trained first)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_ID = 255
OOD_ID = 254  # OoD proxy pixels in training label maps (the paper code's convention)
OBJECTIVES = ("entmax", "cross_entropy")


def soft_targets(labels: torch.Tensor, num_classes: int, lam: float = 0.9) -> torch.Tensor:
    """(B,H,W) train ids -> (B,C,H,W) targets: (1-lam) one-hot in-distribution, lam/C on OoD, 0 on ignore."""
    b, h, w = labels.shape
    target = torch.zeros(b, num_classes, h, w, dtype=torch.float32, device=labels.device)
    known = labels < num_classes
    onehot_idx = torch.where(known, labels, torch.zeros_like(labels)).long().unsqueeze(1)
    target.scatter_(1, onehot_idx, (1.0 - lam) * known.unsqueeze(1).float())
    target += (labels == OOD_ID).unsqueeze(1).float() * (lam / num_classes)
    return target


def entropy_maximization_loss(logits: torch.Tensor, labels: torch.Tensor, lam: float = 0.9) -> torch.Tensor:
    """(1-lam) CE on in-distribution pixels + lam * CE to the uniform distribution on OoD pixels,
    averaged over batch, classes and pixels as in the paper code; ignore pixels add nothing."""
    unknown = (labels >= logits.shape[1]) & (labels != OOD_ID) & (labels != IGNORE_ID)
    if bool(unknown.any()):
        raise ValueError(f"training labels hold values {torch.unique(labels[unknown]).tolist()} outside "
                         f"0..{logits.shape[1] - 1}, {OOD_ID} (OoD) and {IGNORE_ID} (ignore)")
    target = soft_targets(labels, logits.shape[1], lam)
    return torch.mean(-target * torch.log_softmax(logits.float(), dim=1))


def split_entmax_loss(logits: torch.Tensor, labels: torch.Tensor, lam: float = 0.9,
                      score_channels: int | None = None) -> torch.Tensor:
    """The paper's objective for a network whose first ``score_channels`` outputs are the classes that scores see
    (e.g. ESPNetv2: 19 Cityscapes classes, then background): (1-lam) cross-entropy over all outputs on
    in-distribution pixels, whose train ids must be score classes (so background is never a target), and lam
    times the cross-entropy to the uniform distribution over the score classes' softmax on OoD pixels; summed
    and divided by batch x score classes x pixels, which is ``entropy_maximization_loss`` when all outputs score."""
    c = logits.shape[1]
    k = c if score_channels is None else score_channels
    if k == c:
        return entropy_maximization_loss(logits, labels, lam)
    unknown = (labels >= k) & (labels != OOD_ID) & (labels != IGNORE_ID)
    if bool(unknown.any()):
        raise ValueError(f"training labels hold values {torch.unique(labels[unknown]).tolist()} outside the "
                         f"{k} score classes 0..{k - 1}, {OOD_ID} (OoD) and {IGNORE_ID} (ignore)")
    logits = logits.float()
    known = labels < k
    logp = torch.log_softmax(logits, dim=1).gather(1, torch.where(known, labels, 0).long().unsqueeze(1)).squeeze(1)
    in_dist = -(logp * known).sum()
    ood = -(torch.log_softmax(logits[:, :k], dim=1).sum(1) * (labels == OOD_ID)).sum() / k
    b, _, h, w = logits.shape
    return ((1.0 - lam) * in_dist + lam * ood) / (b * k * h * w)


def objective_loss(objective: str, logits: torch.Tensor, labels: torch.Tensor, lam: float = 0.9,
                   score_channels: int | None = None) -> torch.Tensor:
    """``split_entmax_loss`` for "entmax"; for "cross_entropy", the mean cross-entropy over all outputs on the
    pixels with a train id (ignore pixels excluded)."""
    if objective == "cross_entropy":
        return F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_ID)
    return split_entmax_loss(logits, labels, lam, score_channels)
