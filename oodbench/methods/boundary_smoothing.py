"""SML's local post-processing (Jung et al., ICCV 2021, Sec. 3.3): iterative boundary suppression replaces a score
at a class boundary of the predicted map by the mean of its non-boundary 3x3 neighbours, from a wide boundary band
inwards; dilated smoothing then blurs the map with a dilated Gaussian. Both are linear in the scores, so they apply
to oodbench's sign (higher = more OoD) as to the paper's. Defaults are the authors' eval.py and network/deepv3.py
(shjung13/Standardized-max-logits @ 4b997bef): width 4, 4 iterations, 7x7 Gaussian of sigma 1, dilation 6."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import OodbenchError


def shifted(x: torch.Tensor, radius: int, dim: int, step: int = 1) -> list[torch.Tensor]:
    """(B,H,W) float maps shifted by -radius..radius times ``step`` pixels along ``dim`` (-2 rows, -1 columns), the
    border replicated: the taps of a separable filter, far faster on CPU than a one-channel convolution."""
    pad = radius * step
    padded = F.pad(x[:, None], (pad, pad, 0, 0) if dim == -1 else (0, 0, pad, pad), mode="replicate")[:, 0]
    return [padded.narrow(dim, i * step, x.shape[dim]) for i in range(2 * radius + 1)]


def filtered(x: torch.Tensor, weights: list[float], dim: int, step: int = 1) -> torch.Tensor:
    """A 1-D filter of odd length along ``dim``, taps ``step`` pixels apart, the border replicated."""
    views = shifted(x, len(weights) // 2, dim, step)
    out = views[0] * weights[0]
    for w, v in zip(weights[1:], views[1:]):
        out.add_(v, alpha=w)
    return out


def extreme3(x: torch.Tensor, dim: int, op=torch.maximum) -> torch.Tensor:
    """The maximum (or ``op=torch.minimum``) over each pixel and its two neighbours along ``dim``."""
    a, b, c = shifted(x, 1, dim)
    return op(op(a, b), c)


def class_boundaries(classes: torch.Tensor) -> torch.Tensor:
    """(B,H,W) class map -> bool (B,H,W): pixels whose 4-neighbourhood maximum differs from their 3x3 minimum (the
    authors' dilation-minus-erosion boundary, two pixels wide across a class edge)."""
    c = classes.float()
    cross = torch.maximum(extreme3(c, -2), extreme3(c, -1))
    return cross != extreme3(extreme3(c, -1, torch.minimum), -2, torch.minimum)


def widened(mask: torch.Tensor, radius: int) -> list[torch.Tensor]:
    """A bool (B,H,W) mask grown by L1 (diamond) radius 0..``radius``: steps of 4-neighbour growth, as the authors'
    expansion kernels are built."""
    grown = [mask.float()]
    for _ in range(radius):
        grown.append(torch.maximum(extreme3(grown[-1], -2), extreme3(grown[-1], -1)))
    return [g > 0 for g in grown]


def box_sum(x: torch.Tensor) -> torch.Tensor:
    """3x3 sums over (B,H,W) with the border replicated."""
    return filtered(filtered(x, [1.0, 1.0, 1.0], -2), [1.0, 1.0, 1.0], -1)


def gaussian_taps(size: int, sigma: float) -> torch.Tensor:
    """The normalized 1-D Gaussian of ``size`` taps; its outer product is the normalized 2-D kernel."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    return g / g.sum()


def gaussian_kernel(size: int, sigma: float) -> torch.Tensor:
    """A normalized ``size`` x ``size`` Gaussian."""
    g = gaussian_taps(size, sigma)
    return (g[:, None] * g[None, :]).float()


@dataclass(frozen=True)
class BoundarySmoothing:
    """Which of the two steps run, and their settings (see the module doc for the source of the defaults)."""

    boundary_suppression: bool = True
    boundary_width: int = 4
    boundary_iterations: int = 4
    dilated_smoothing: bool = True
    kernel_size: int = 7
    dilation: int = 6
    sigma: float = 1.0

    def __post_init__(self):
        if self.boundary_suppression and (self.boundary_iterations < 1 or self.boundary_width < 0 or
                                          self.boundary_width % self.boundary_iterations):
            raise OodbenchError(f"boundary suppression: boundary_width={self.boundary_width} must be a multiple of "
                                f"boundary_iterations={self.boundary_iterations} (>= 1), as in the paper (4 and 4)")
        if self.dilated_smoothing and (self.kernel_size < 1 or self.kernel_size % 2 == 0 or self.dilation < 1
                                       or not self.sigma > 0 or not math.isfinite(self.sigma)):
            raise OodbenchError(f"dilated smoothing: kernel_size={self.kernel_size} must be odd, dilation="
                                f"{self.dilation} >= 1 and sigma={self.sigma} > 0 (the paper: 7, 6, 1.0)")

    def suppress(self, scores: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Boundary suppression: over ``boundary_iterations`` rounds the band narrows from ``boundary_width - 1``
        (L1 radius around the class boundary) to 0 in equal steps; each round replaces band pixels by the mean of
        their non-band 3x3 neighbours where they have any."""
        step = self.boundary_width // self.boundary_iterations
        bands = widened(class_boundaries(classes), max(self.boundary_width - 1, 0))
        out = scores
        for i in range(self.boundary_iterations):
            last = i == self.boundary_iterations - 1 or self.boundary_width == 0
            band = bands[0 if last else self.boundary_width - step * i - 1]
            keep = (~band).to(out.dtype)
            count = box_sum(keep)
            mean = box_sum(out * keep) / count.clamp(min=1)
            out = torch.where(band & (count > 0), mean, out)
        return out

    def smooth(self, scores: torch.Tensor) -> torch.Tensor:
        """Dilated smoothing: the Gaussian's taps ``dilation`` pixels apart, the border replicated (separably: rows,
        then columns)."""
        taps = gaussian_taps(self.kernel_size, self.sigma).tolist()
        return filtered(filtered(scores, taps, -2, self.dilation), taps, -1, self.dilation)

    def __call__(self, scores: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """(B,H,W) scores and predicted classes -> the post-processed (B,H,W) scores."""
        out = scores.float()
        if self.boundary_suppression:
            out = self.suppress(out, classes)
        return self.smooth(out) if self.dilated_smoothing else out

    def describe(self) -> dict[str, Any]:
        d = asdict(self)
        if not self.boundary_suppression:
            d = {k: v for k, v in d.items() if not k.startswith("boundary_") or k == "boundary_suppression"}
        if not self.dilated_smoothing:
            d = {k: v for k, v in d.items() if k not in ("kernel_size", "dilation", "sigma")}
        return d
