"""WiderResNet38-A2 trunk (Wu et al. 2016, pre-activation identity-mapping blocks) dilated to output
stride 8, as NVIDIA's DeepWV3Plus uses it; module names follow the published checkpoints' keys."""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
from torch import nn

# Per module mod2..mod7: blocks, channels (two = basic block, three = bottleneck), dilation, Dropout2d p.
STRUCTURE = (3, 3, 6, 3, 1, 1)
CHANNELS = ((128, 128), (256, 256), (512, 512), (512, 1024), (512, 1024, 2048), (1024, 2048, 4096))
DILATIONS = (1, 1, 1, 2, 4, 4)
DROPOUT = (None, None, None, None, 0.3, 0.5)
STRIDED_MODULE = 4  # mod4's first block halves the resolution (stride 4 -> 8); later modules dilate instead


def bn_relu(channels: int) -> nn.Sequential:
    """BatchNorm + ReLU as one unit; a Sequential so its BN keys end in ``.0.*`` like the checkpoints."""
    return nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))


def _conv(cin: int, cout: int, k: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=dilation * (k // 2), dilation=dilation, bias=False)


class IdentityResidualBlock(nn.Module):
    """Pre-activation residual block: ``bn1`` (BN+ReLU) feeds the conv branch and, when the channel count
    or stride changes, a 1x1 projection shortcut; otherwise the shortcut is the raw input."""

    def __init__(self, in_channels: int, channels: Sequence[int], stride: int = 1, dilation: int = 1,
                 dropout: float | None = None):
        super().__init__()
        if len(channels) not in (2, 3):
            raise ValueError(f"channels must have two (basic) or three (bottleneck) values, got {tuple(channels)}")
        self.bn1 = bn_relu(in_channels)
        if len(channels) == 2:
            c1, c2 = channels
            layers = [("conv1", _conv(in_channels, c1, 3, stride, dilation)), ("bn2", bn_relu(c1)),
                      ("conv2", _conv(c1, c2, 3, 1, dilation))]
        else:
            c1, c2, c3 = channels
            layers = [("conv1", _conv(in_channels, c1, 1, stride)), ("bn2", bn_relu(c1)),
                      ("conv2", _conv(c1, c2, 3, 1, dilation)), ("bn3", bn_relu(c2)),
                      ("conv3", _conv(c2, c3, 1))]
        if dropout is not None:
            # Before the last conv, i.e. after the last BN+ReLU of the branch.
            layers.insert(len(layers) - 1, ("dropout", nn.Dropout2d(p=dropout)))
        self.convs = nn.Sequential(OrderedDict(layers))
        self.proj_conv = _conv(in_channels, channels[-1], 1, stride) if stride != 1 or in_channels != channels[-1] else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.bn1(x)
        shortcut = x if self.proj_conv is None else self.proj_conv(pre)
        return self.convs(pre).add_(shortcut)


class WiderResNet38A2(nn.Module):
    """The trunk: mod1 (a bare 3x3 conv), max-pools before mod2 and mod3, a strided first block in mod4,
    mod5-mod7 dilated 2/4/4 so features stay at stride 8. The ImageNet head (final BN, classifier) is
    omitted because DeepWV3Plus discards it: mod7's output goes to the decoder without BN/ReLU."""

    def __init__(self):
        super().__init__()
        self.mod1 = nn.Sequential(OrderedDict([("conv1", _conv(3, 64, 3))]))
        in_channels = 64
        for mod_id, (num, channels, dilation, dropout) in enumerate(
                zip(STRUCTURE, CHANNELS, DILATIONS, DROPOUT), start=2):
            blocks = []
            for i in range(num):
                stride = 2 if mod_id == STRIDED_MODULE and i == 0 else 1
                blocks.append((f"block{i + 1}", IdentityResidualBlock(in_channels, channels, stride, dilation, dropout)))
                in_channels = channels[-1]
            if mod_id <= 3:
                self.add_module(f"pool{mod_id}", nn.MaxPool2d(3, stride=2, padding=1))
            self.add_module(f"mod{mod_id}", nn.Sequential(OrderedDict(blocks)))

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mod2 output at stride 2, the decoder's skip; mod7 output at stride 8, 4096 channels)."""
        m2 = self.mod2(self.pool2(self.mod1(x)))
        x = self.mod3(self.pool3(m2))
        for mod in (self.mod4, self.mod5, self.mod6, self.mod7):
            x = mod(x)
        return m2, x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[1]
