"""ESPNetv2 semantic segmentation (Mehta et al., CVPR 2019), written for oodbench to compute what the
EdgeNets reference computes and to load its published Cityscapes checkpoints (``espnetv2_s_<s>_city_*.pth``)
key for key: an EESP encoder down to stride 16 and a bottom-up decoder of pyramid-pooling stages fed by
gated encoder skips at strides 8, 4 and 2."""
from __future__ import annotations

import torch
from torch import nn

from .deeplabv3plus import ImageNetNormalize, upsample
from .eesp import EESP, ConvUnit, GatedProjection, PyramidPool, StridedEESP, bn_prelu, halve
from .registry import register_model

# Encoder widths per scale s (level1, level2_0, level3, level4); EdgeNets' classification config, whose
# stride-32 level5 the segmentation network drops.
SCALE_CHANNELS = {
    0.5: (16, 32, 64, 128),
    1.0: (32, 64, 128, 256),
    1.5: (32, 96, 192, 384),
    2.0: (32, 128, 256, 512),
}
LEVEL3_BLOCKS, LEVEL4_BLOCKS = 3, 7
# Largest receptive field (pixels of a dilated 3x3) allowed in the EESP branches, per spatial level.
RECEPTIVE_LIMITS = (13, 11, 9, 7)
DECODER_BASE = 16  # EdgeNets' decoder width for Cityscapes (and Pascal)


class EESPEncoder(nn.Module):
    """The ESPNetv2 trunk up to stride 16 (``base_net``): a strided conv, then down-sampling EESP blocks
    with input reinforcement and stacks of EESP units at strides 8 and 16."""

    def __init__(self, channels: tuple[int, int, int, int]):
        super().__init__()
        c1, c2, c3, c4 = channels
        r2, r3, r4, r5 = RECEPTIVE_LIMITS
        self.level1 = ConvUnit(3, c1, 3, stride=2)
        self.level2_0 = StridedEESP(c1, c2, r2)
        self.level3_0 = StridedEESP(c2, c3, r3)
        self.level3 = nn.ModuleList(EESP(c3, c3, r4) for _ in range(LEVEL3_BLOCKS))
        self.level4_0 = StridedEESP(c3, c4, r4)
        self.level4 = nn.ModuleList(EESP(c4, c4, r5) for _ in range(LEVEL4_BLOCKS))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Normalized image -> features at strides 2, 4, 8, 16 (each side ceil-halved per stride)."""
        image = halve(x)
        feats = [self.level1(x)]
        for down, stack in ((self.level2_0, ()), (self.level3_0, self.level3), (self.level4_0, self.level4)):
            image = halve(image)
            y = down(feats[-1], image)
            for block in stack:
                y = block(y)
            feats.append(y)
        return feats


class ESPNetv2Seg(nn.Module):
    """ESPNetv2 for semantic segmentation. Forward takes RGB floats in 0..255 (B,3,H,W), normalizes inside
    and returns raw logits (B, num_classes, H, W); for the Cityscapes weights channel 19 is background.
    Use ``eval()`` for inference (BatchNorm running statistics).

    Each decoder step upsamples x2 (bilinear, align_corners=True), adds the gated skip, applies BN+PReLU and
    a pyramid-pooling stage; the stride-2 result is resized to the input size. The reference upsamples
    with ``scale_factor=2`` and so fails with a shape mismatch unless every encoder side doubles back
    exactly (as for H, W divisible by 16); here the upsample targets the skip's size: bitwise the same in
    that case, and pixel centres still align exactly otherwise (odd side 2n-1 from n), so any size runs.
    ``forward`` is ``resize(classifier(features(x)))``, the penultimate-feature path of feature-space methods."""

    def __init__(self, scale: float = 2.0, num_classes: int = 20):
        super().__init__()
        if scale not in SCALE_CHANNELS:
            raise ValueError(f"ESPNetv2 scale s={scale} is not supported; choose one of "
                             f"{', '.join(str(s) for s in SCALE_CHANNELS)}")
        self.scale, self.num_classes = float(scale), num_classes
        c1, c2, c3, c4 = SCALE_CHANNELS[scale]
        d1, d2, d3 = 4 * DECODER_BASE, 3 * DECODER_BASE, 2 * DECODER_BASE
        width = min(num_classes // 2, DECODER_BASE)
        self.normalize = ImageNetNormalize()
        self.base_net = EESPEncoder((c1, c2, c3, c4))
        self.bu_dec_l1 = PyramidPool(c4, width, d1)
        self.bu_dec_l2 = PyramidPool(d1, width, d2)
        self.bu_dec_l3 = PyramidPool(d2, width, d3)
        self.bu_dec_l4 = PyramidPool(d3, width, num_classes, final=True)
        self.merge_enc_dec_l2 = GatedProjection(c3, d1)
        self.merge_enc_dec_l3 = GatedProjection(c2, d2)
        self.merge_enc_dec_l4 = GatedProjection(c1, d3)
        self.bu_br_l2 = bn_prelu(d1)
        self.bu_br_l3 = bn_prelu(d2)
        self.bu_br_l4 = bn_prelu(d3)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He (fan-out) convs, unit/zero BatchNorm: the reference initialisation, for training from scratch."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate features (B, min(num_classes // 2, 16), H/2, W/2): what the classifier 1x1 projects."""
        s2, s4, s8, s16 = self.base_net(self.normalize(x))
        y = self.bu_dec_l1(s16)
        steps = ((s8, self.merge_enc_dec_l2, self.bu_br_l2, self.bu_dec_l2),
                 (s4, self.merge_enc_dec_l3, self.bu_br_l3, self.bu_dec_l3),
                 (s2, self.merge_enc_dec_l4, self.bu_br_l4, self.bu_dec_l4))
        for skip, gate, norm, stage in steps:
            y = norm(gate(skip) + upsample(y, skip.shape[-2:]))
            y = stage.merged(y) if stage.final else stage(y)
        return y

    @property
    def classifier(self) -> nn.Conv2d:
        """The last 1x1 (with bias) of the final decoder stage: penultimate features -> logits."""
        return self.bu_dec_l4.merge_layer[-1]

    def resize(self, x: torch.Tensor, size) -> torch.Tensor:
        """How the logits reach the input size (bilinear, align_corners=True); features resized alike stay aligned."""
        return upsample(x, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resize(self.classifier(self.features(x)), x.shape[-2:])


@register_model("espnetv2")
def espnetv2(scale: float = 2.0, num_classes: int = 20) -> ESPNetv2Seg:
    """ESPNetv2 at width scale s in {0.5, 1.0, 1.5, 2.0}; 20 outputs match the EdgeNets Cityscapes weights."""
    return ESPNetv2Seg(scale=scale, num_classes=num_classes)
