"""``PixelOoDMetric``: the pixel state as a ``torchmetrics.Metric`` (extra ``torchmetrics``), so Lightning users log
AUROC, AP and FPR95 over a whole epoch; across processes the states are all-gathered and merged, not averaged."""
from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch

from ..labels import IGNORE_LABEL
from .pixel import PixelMetricState

try:
    from torchmetrics import Metric
except ImportError as exc:  # pragma: no cover - the module is only imported on request
    raise ImportError("PixelOoDMetric needs torchmetrics: pip install 'oodbench[torchmetrics]'") from exc


def _encode(state: PixelMetricState, device: torch.device) -> torch.Tensor:
    buffer = io.BytesIO()
    np.savez(buffer, **state.state_dict())
    return torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8).to(device)


def _decode(packed: torch.Tensor) -> PixelMetricState:
    with np.load(io.BytesIO(packed.cpu().numpy().tobytes()), allow_pickle=False) as arrays:
        return PixelMetricState.from_state_dict(dict(arrays))


class PixelOoDMetric(Metric):
    """Pooled pixel AUROC, AP and FPR95 (``oodbench.metrics.pixel_metrics``'s rules) over every ``update``.

    ``update(preds, target)``: scores (any shape, higher = more OoD; a CUDA tensor is counted on its device) and
    labels 0 in-distribution / 1 OoD / ``ignore_index``. ``forward`` only updates: a batch-level AUROC is rarely
    meaningful for segmentation, and the state is not a sum of per-batch tensors.
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(self, ignore_index: int = IGNORE_LABEL, bits: int = 32, **kwargs: Any):
        super().__init__(**kwargs)
        self.ignore_index = ignore_index
        self.pixels = PixelMetricState(bits)
        self.add_state("gathered", default=[], dist_reduce_fx=None)

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        scores = preds.detach()
        if not scores.is_cuda:
            scores = scores.cpu().numpy()
        labels = target.detach().cpu().numpy() if isinstance(target, torch.Tensor) else np.asarray(target)
        self.pixels.update(labels, scores, ignore_index=self.ignore_index)

    def forward(self, *args: Any, **kwargs: Any) -> None:
        self.update(*args, **kwargs)

    def sync(self, *args: Any, **kwargs: Any) -> None:
        self.gathered = [_encode(self.pixels, self.device)]
        super().sync(*args, **kwargs)

    def compute(self) -> dict[str, torch.Tensor]:
        state = self.pixels
        if self._is_synced and len(self.gathered) > 1:
            state = PixelMetricState(self.pixels.bits)
            for packed in self.gathered:
                state.merge(_decode(packed))
        result = state.compute()
        return {k: torch.tensor(float(result[k]), dtype=torch.float64) for k in ("auroc", "ap", "fpr95")}

    def reset(self) -> None:
        super().reset()
        self.pixels.reset()

    def merge(self, other: "PixelOoDMetric") -> "PixelOoDMetric":
        """Add another metric's pixels (e.g. a metric of another dataloader) in place; return self."""
        self.pixels.merge(other.pixels)
        return self
