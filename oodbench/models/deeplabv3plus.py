"""DeepLabV3+ with the WiderResNet38-A2 trunk at output stride 8: the network of Chan et al. (meta-ood),
computing what NVIDIA's ``DeepWV3Plus`` computes and loading its checkpoints (keys without ``module.``)."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_model
from .tiny_deeplab import IMAGENET_MEAN, IMAGENET_STD, conv_bn
from .wider_resnet import WiderResNet38A2


def upsample(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize with align_corners=True, the mode of every resize in the reference network."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


class ImageNetNormalize(nn.Module):
    """RGB in 0..255 (B,3,H,W) -> (x/255 - mean)/std, the paper's ToTensor+Normalize in the same op order.
    Buffers are non-persistent: they follow ``.to(device)`` but add no checkpoint keys."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() / 255.0 - self.mean) / self.std


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling; output channels ordered [image pooling, 1x1, 3x3 at each rate]."""

    def __init__(self, in_channels: int = 4096, channels: int = 256, rates: Sequence[int] = (12, 24, 36)):
        super().__init__()
        self.features = nn.ModuleList([conv_bn(in_channels, channels, k=1)]
                                      + [conv_bn(in_channels, channels, dilation=r) for r in rates])
        self.img_pooling = nn.AdaptiveAvgPool2d(1)
        self.img_conv = conv_bn(in_channels, channels, k=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = upsample(self.img_conv(self.img_pooling(x)), x.shape[-2:])
        return torch.cat([pooled] + [branch(x) for branch in self.features], dim=1)


class DeepLabV3PlusWRN38(WiderResNet38A2):
    """Trunk (mod1..mod7 as direct children, so keys match DeepWV3Plus), ASPP at stride 8 with rates
    6/12/18 doubled, 1x1 reductions ``bot_aspp`` and ``bot_fine`` (on mod2, stride 2), a two-conv
    decoder ``final`` and a bilinear resize to the input size. Forward takes RGB floats in 0..255
    (like ``tiny_deeplab``) and returns raw logits (B, num_classes, H, W); use ``eval()`` for inference
    (BatchNorm running stats, Dropout2d in mod6/mod7 off)."""

    output_stride = 8

    def __init__(self, num_classes: int = 19):
        super().__init__()
        self.num_classes = num_classes
        self.normalize = ImageNetNormalize()
        self.aspp = ASPP(4096, 256, rates=tuple(2 * r for r in (6, 12, 18)))
        self.bot_fine = nn.Conv2d(128, 48, 1, bias=False)
        self.bot_aspp = nn.Conv2d(5 * 256, 256, 1, bias=False)
        self.final = nn.Sequential(*conv_bn(256 + 48, 256), *conv_bn(256, 256),
                                   nn.Conv2d(256, num_classes, 1, bias=False))
        for m in self.final.modules():  # the reference re-initialises only this head
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)

    def _decoder_input(self, x: torch.Tensor) -> torch.Tensor:
        m2, deep = self.forward_features(self.normalize(x))
        up = upsample(self.bot_aspp(self.aspp(deep)), m2.shape[-2:])
        return torch.cat([self.bot_fine(m2), up], dim=1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate features (B, 256, H/4, W/4): the decoder output that the final 1x1 classifier reads."""
        y = self._decoder_input(x)
        for layer in self.final[:-1]:
            y = layer(y)
        return y

    @property
    def classifier(self) -> nn.Conv2d:
        """The final 1x1 (no bias): penultimate features -> logits."""
        return self.final[-1]

    def resize(self, x: torch.Tensor, size) -> torch.Tensor:
        """How the logits reach the input size (bilinear, align_corners=True); features resized alike stay aligned."""
        return upsample(x, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``final`` runs as one module, so hooks on it see the decoder input and the logits."""
        return self.resize(self.final(self._decoder_input(x)), x.shape[-2:])


@register_model("deeplabv3plus_wrn38")
def deeplabv3plus_wrn38(num_classes: int = 19) -> DeepLabV3PlusWRN38:
    return DeepLabV3PlusWRN38(num_classes=num_classes)
