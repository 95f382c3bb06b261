"""The pixel histogram's counting pass on the device that computed the scores (a GPU), in torch.

Scores stay where the model put them: only the labels go up (one byte per pixel) and only the pixels that find
no page of the histogram come back to the host (which gives them pages). Counts build up on the device and are
added to the host histogram before its layout changes or anything reads it, so the result equals the host pass
exactly.
"""
from __future__ import annotations

import numpy as np
import torch

from .key_kernels import DENSE


class DeviceCounts:
    """Negative and positive pixel counts per fine bin of one ``KeyHistogram`` layout, on ``device``."""

    def __init__(self, device: torch.device):
        self.device = device
        self.version = -1  # the layout whose tables are on the device
        self.fast = torch.zeros(0, dtype=torch.int64, device=device)
        self.ptab = torch.zeros(0, dtype=torch.int64, device=device)
        self.counts = torch.zeros(0, dtype=torch.int64, device=device)  # bins x (negatives, positives), flat
        self.pending = False

    def sync(self, fast: np.ndarray, ptab: np.ndarray, version: int, bins: int) -> None:
        """Upload the tables of a new layout; grow the counts (pages added keep their positions)."""
        if version != self.version:
            self.fast = torch.from_numpy(fast.astype(np.int64)).to(self.device)
            self.ptab = torch.from_numpy(ptab.astype(np.int64)).to(self.device)
            self.version = version
        if self.counts.numel() < 2 * bins:
            grown = torch.zeros(2 * bins, dtype=torch.int64, device=self.device)
            grown[: self.counts.numel()] = self.counts
            self.counts = grown

    def index(self, scores: torch.Tensor, codes: np.ndarray, mask: int, pb: int):
        """Fine bin of every pixel (as the compiled host pass computes it), the labels on the device, which pixels
        to count here, and the host indices of counted pixels (labels 0, 1) that have no page: not counted here."""
        bits = scores.reshape(-1).to(torch.float32).contiguous().view(torch.int32).to(torch.int64) & 0xFFFFFFFF
        key = torch.where(bits >= 0x80000000, bits ^ 0xFFFFFFFF, bits | 0x80000000) & mask
        code = self.fast[key >> 16]
        f = (key & 0xFFFF) >> (code & 31)
        dense = (code & DENSE) != 0
        start = self.ptab[torch.where(dense, 0, (code >> 6) + (f >> pb))]
        idx = torch.where(dense, (code >> 6) + f, start + (f & ((1 << pb) - 1)))
        labels = torch.from_numpy(codes).to(self.device, non_blocking=True).to(torch.int64)
        counted = labels <= 1
        rest = counted & ~dense & (start < 0)
        return idx, labels, counted & ~rest, torch.nonzero(rest).reshape(-1).cpu().numpy()

    def add(self, idx: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor) -> None:
        """Count the kept pixels: bin b's negatives at 2b, positives at 2b + 1."""
        slots = (2 * idx + labels)[keep]
        self.counts.index_add_(0, slots, torch.ones_like(slots))
        self.pending = True

    def drain(self, neg: np.ndarray, pos: np.ndarray, bins: int) -> None:
        """Add the device counts of the first ``bins`` bins to the host arrays and clear them."""
        if not self.pending:
            return
        bins = min(bins, self.counts.numel() // 2)  # pages added since the last pass hold no device counts
        both = self.counts[: 2 * bins].view(bins, 2).cpu().numpy()
        np.add(neg[:bins], both[:, 0], out=neg[:bins], casting="unsafe")
        np.add(pos[:bins], both[:, 1], out=pos[:bins], casting="unsafe")
        self.counts.zero_()
        self.pending = False
