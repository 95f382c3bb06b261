"""A small DeepLabV3+-style network (strided encoder, dilated context, low-level skip) that trains on
two CPU cores in about a minute; the embedded benchmark's stand-in for DeepLabV3+ WideResNet38."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_model

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def conv_bn(cin: int, cout: int, stride: int = 1, dilation: int = 1, k: int = 3) -> nn.Sequential:
    pad = dilation * (k // 2)
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=stride, padding=pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class Normalize(nn.Module):
    """uint8-range RGB (B,3,H,W) -> ImageNet-normalized float, as the paper's model expects."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean) / self.std


class TinyDeepLab(nn.Module):
    """Encoder at strides 2/4/8, a three-branch dilated context module (the ASPP idea), and a
    decoder fusing stride-2 features; logits are upsampled to the input size. ``forward`` is
    ``resize(classifier(features(x)))``: the penultimate-feature path of feature-space methods (mahalanobis)."""

    def __init__(self, num_classes: int = 19, width: int = 32):
        super().__init__()
        w = width
        self.normalize = Normalize()
        self.stem = nn.Sequential(conv_bn(3, w, stride=2), conv_bn(w, w))
        self.stage2 = nn.Sequential(conv_bn(w, 2 * w, stride=2), conv_bn(2 * w, 2 * w))
        self.stage3 = nn.Sequential(conv_bn(2 * w, 4 * w, stride=2), conv_bn(4 * w, 4 * w))
        self.context = nn.ModuleList([conv_bn(4 * w, 2 * w, dilation=d) for d in (1, 2, 4)])
        self.project = conv_bn(6 * w, 4 * w, k=1)
        self.low = conv_bn(w, w // 2, k=1)
        self.decoder = nn.Sequential(conv_bn(4 * w + w // 2, 2 * w), conv_bn(2 * w, 2 * w))
        self.classifier = nn.Conv2d(2 * w, num_classes, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate features (B, 2*width, H/2, W/2): the decoder output that the 1x1 classifier reads."""
        low = self.stem(self.normalize(x))
        deep = self.stage3(self.stage2(low))
        deep = self.project(torch.cat([branch(deep) for branch in self.context], dim=1))
        deep = F.interpolate(deep, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.decoder(torch.cat([deep, self.low(low)], dim=1))

    def resize(self, x: torch.Tensor, size) -> torch.Tensor:
        """How the logits reach the input size (bilinear, align_corners=False); features resized alike stay aligned."""
        return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resize(self.classifier(self.features(x)), x.shape[-2:])


@register_model("tiny_deeplab")
def tiny_deeplab(num_classes: int = 19, width: int = 32) -> TinyDeepLab:
    return TinyDeepLab(num_classes=num_classes, width=width)
