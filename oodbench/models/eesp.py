"""Building blocks of ESPNetv2 (Mehta et al., CVPR 2019): the EESP unit, its strided down-sampling form,
the efficient pyramid pooling decoder stage and the gated encoder-skip projection. Attribute names follow
the published EdgeNets state dicts, so their checkpoints load key for key."""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .deeplabv3plus import upsample

IMAGE_CHANNELS = 3
BRANCHES = 4
PYRAMID_SCALES = (2.0, 1.5, 1.0, 0.5, 0.1)
MIN_PYRAMID_SIDE = 5


def halve(x: torch.Tensor) -> torch.Tensor:
    """3x3 average pool, stride 2, zero padding counted: side ceil(side / 2), like the strided convs."""
    return F.avg_pool2d(x, kernel_size=3, stride=2, padding=1)


class ConvUnit(nn.Module):
    """Conv (no bias), then optionally BatchNorm and PReLU; keys ``conv``/``bn``/``act``."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, dilation: int = 1, groups: int = 1,
                 norm: bool = True, prelu: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=dilation * (k - 1) // 2, dilation=dilation,
                              groups=groups, bias=False)
        if norm:
            self.bn = nn.BatchNorm2d(cout)
        if prelu:
            self.act = nn.PReLU(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.children():
            x = layer(x)
        return x


class NormPReLU(nn.Module):
    """BatchNorm then PReLU; keys ``bn``/``act``."""

    def __init__(self, channels: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.act = nn.PReLU(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(x))


def bn_prelu(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(channels), nn.PReLU(channels))


class SeqConvBNPReLU(nn.Module):
    """Conv + BN + PReLU held in one Sequential ``cbr`` (the decoder's key layout)."""

    def __init__(self, cin: int, cout: int, k: int, groups: int = 1):
        super().__init__()
        self.cbr = nn.Sequential(nn.Conv2d(cin, cout, k, padding=(k - 1) // 2, groups=groups, bias=False),
                                 *bn_prelu(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cbr(x)


class SeqBNPReLU(nn.Module):
    """BN + PReLU held in one Sequential ``br`` (the decoder's key layout)."""

    def __init__(self, channels: int):
        super().__init__()
        self.br = bn_prelu(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.br(x)


def branch_dilations(branches: int, max_receptive: int) -> list[int]:
    """3x3 depth-wise branch i would see 3 + 2i pixels; beyond ``max_receptive`` it falls back to 3. Sorted
    ascending so the hierarchical sums start from the smallest field; dilation = (field - 1) / 2."""
    fields = sorted(3 + 2 * i if 3 + 2 * i <= max_receptive else 3 for i in range(branches))
    return [(f - 1) // 2 for f in fields]


class EESP(nn.Module):
    """Reduce (grouped 1x1) -> parallel dilated depth-wise 3x3 branches, each added to the previous one
    (hierarchical fusion against gridding) -> concat, BN+PReLU -> grouped 1x1 expand (BN only). Stride 1:
    residual add where shapes agree, then PReLU. ``strided``: stride-2 branches, raw expansion returned for
    the down-sampler to combine (``module_act`` then exists for the keys but is unused)."""

    def __init__(self, cin: int, cout: int, max_receptive: int, strided: bool = False, branches: int = BRANCHES):
        super().__init__()
        if cout % branches:
            raise ValueError(f"EESP output channels {cout} must be divisible by {branches} branches")
        width = cout // branches
        self.strided = strided
        self.proj_1x1 = ConvUnit(cin, width, 1, groups=branches)
        self.spp_dw = nn.ModuleList(
            ConvUnit(width, width, 3, stride=2 if strided else 1, dilation=d, groups=width, norm=False, prelu=False)
            for d in branch_dilations(branches, max_receptive))
        self.conv_1x1_exp = ConvUnit(cout, cout, 1, groups=branches, prelu=False)
        self.br_after_cat = NormPReLU(cout)
        self.module_act = nn.PReLU(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.proj_1x1(x)
        fused, running = [], None
        for branch in self.spp_dw:
            running = branch(reduced) if running is None else branch(reduced) + running
            fused.append(running)
        out = self.conv_1x1_exp(self.br_after_cat(torch.cat(fused, dim=1)))
        if self.strided:
            return out
        if out.shape == x.shape:
            out = out + x
        return self.module_act(out)


class StridedEESP(nn.Module):
    """Down-sampling by 2: [avg-pooled input, strided EESP] concatenated to ``cout`` channels, plus a
    projection of the image pooled to the same size (input reinforcement), then PReLU."""

    def __init__(self, cin: int, cout: int, max_receptive: int):
        super().__init__()
        self.eesp = EESP(cin, cout - cin, max_receptive, strided=True)
        self.inp_reinf = nn.Sequential(ConvUnit(IMAGE_CHANNELS, IMAGE_CHANNELS, 3),
                                       ConvUnit(IMAGE_CHANNELS, cout, 1, prelu=False))
        self.act = nn.PReLU(cout)

    def forward(self, x: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """``image``: the normalized input already pooled to this block's output size."""
        out = torch.cat([halve(x), self.eesp(x)], dim=1)
        return self.act(out + self.inp_reinf(image))


class ChannelShuffle(nn.Module):
    """Interleave ``groups`` equal channel blocks: channel i*c + j (block i, c channels each) moves to j*groups + i."""

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        return x.view(b, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class PyramidPool(nn.Module):
    """Efficient pyramid pooling: 1x1 projection, one depth-wise 3x3 per scale (upscaled scales: resize,
    conv, adaptive-avg-pool back; downscaled: adaptive-avg-pool, conv, resize back), BN+PReLU on the
    concatenation, shuffle so each group holds one channel at every scale, grouped 3x3, 1x1 to ``cout``.
    ``final``: the classifier stage, whose last 1x1 has a bias and no BN+PReLU after it."""

    def __init__(self, cin: int, width: int, cout: int, final: bool = False, scales: Sequence[float] = PYRAMID_SCALES):
        super().__init__()
        self.scales = tuple(sorted(scales, reverse=True))
        n = len(self.scales)
        self.stages = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1, groups=width, bias=False)
                                    for _ in self.scales)
        self.projection_layer = SeqConvBNPReLU(cin, width, 1)
        self.merge_layer = nn.Sequential(SeqBNPReLU(width * n), ChannelShuffle(n),
                                         SeqConvBNPReLU(width * n, width, 3, groups=width),
                                         nn.Conv2d(width, cout, 1, bias=final))
        self.final = final
        if not final:
            self.br = SeqBNPReLU(cout)

    def merged(self, x: torch.Tensor) -> torch.Tensor:
        """The stage up to its last 1x1 (``width`` channels); in the final stage, the network's penultimate features."""
        x = self.projection_layer(x)
        h, w = x.shape[-2:]
        levels = []
        for scale, conv in zip(self.scales, self.stages):
            size = (max(MIN_PYRAMID_SIDE, math.ceil(h * scale)), max(MIN_PYRAMID_SIDE, math.ceil(w * scale)))
            if scale > 1.0:
                levels.append(F.adaptive_avg_pool2d(conv(upsample(x, size)), (h, w)))
            elif scale < 1.0:
                levels.append(upsample(conv(F.adaptive_avg_pool2d(x, size)), (h, w)))
            else:
                levels.append(conv(x))
        return self.merge_layer[:-1](torch.cat(levels, dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.merge_layer[-1](self.merged(x))
        return out if self.final else self.br(out)


class GatedProjection(nn.Module):
    """Encoder skip into the decoder: grouped 3x3 conv+BN+PReLU (groups = gcd of the widths), scaled per
    channel by a sigmoid gate computed from the globally pooled input."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.wt_layer = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1, bias=False), nn.Sigmoid())
        self.expansion_layer = SeqConvBNPReLU(cin, cout, 3, groups=math.gcd(cin, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.expansion_layer(x) * self.wt_layer(x)
