"""DeepLabV3+ head on any timm ``features_only`` backbone: ``create_model("deeplabv3plus_resnet18")``.

timm is an optional extra and is imported only when such a model is built, so the rest of oodbench
works without it. ``DeepLabV3Plus`` takes any features_only-style module, which is also the test seam.
"""
from __future__ import annotations

import difflib
import functools
import importlib
import math
from collections.abc import Iterable, Sequence
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError, OodbenchError, UnknownNameError
from .registry import MODELS
from .tiny_deeplab import IMAGENET_MEAN, IMAGENET_STD, conv_bn

TIMM_PREFIX = "deeplabv3plus_"  # + a timm model name: DeepLabV3+ on that backbone

INSTALL_HINT = 'pip install "oodbench[timm]"'


class MissingExtraError(OodbenchError, ImportError):
    """An optional dependency (an extra of oodbench) is missing or fails to import."""


class PretrainedWeightsError(CheckpointError, RuntimeError):
    """Pretrained backbone weights could not be fetched or loaded."""


def import_timm():
    """Import timm lazily; any failure (missing, or a broken torchvision) becomes one actionable error."""
    try:
        return importlib.import_module("timm")
    except Exception as exc:  # noqa: BLE001 - e.g. RuntimeError "operator torchvision::nms does not exist"
        raise MissingExtraError(
            f"timm backbones (deeplabv3plus_<timm model>) need timm, which failed to import "
            f"({type(exc).__name__}: {exc}). Install it with: {INSTALL_HINT} (timm needs a torchvision "
            f"built for your torch {torch.__version__})."
        ) from exc


def _is_nhwc(fmt: Any) -> bool:
    return str(getattr(fmt, "value", fmt)).upper() == "NHWC"


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1, three dilated 3x3 and an image-pooling branch, projected."""

    def __init__(self, cin: int, cout: int, rates: Sequence[int], dropout: float = 0.1):
        super().__init__()
        self.branches = nn.ModuleList([conv_bn(cin, cout, k=1)] + [conv_bn(cin, cout, dilation=r) for r in rates])
        # No BatchNorm on the 1x1 pooled map: it fails for batch size 1 in training mode.
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1), nn.ReLU(inplace=True))
        self.project = nn.Sequential(conv_bn(cout * (len(rates) + 2), cout, k=1), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.interpolate(self.pool(x), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+ (Chen et al. 2018) on a features_only backbone: ASPP on the deepest feature, a
    projected stride-4 skip, fusion convs, logits bilinearly upsampled to the input resolution.

    Input convention as ``tiny_deeplab``: RGB (B, 3, H, W) in the uint8 range 0..255 (uint8 or float);
    normalization with the backbone's own mean/std happens inside, in non-persistent buffers.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int = 19,
        *,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        aspp_channels: int = 256,
        low_channels: int = 48,
        decoder_channels: int = 256,
        atrous_rates: Sequence[int] | None = None,
    ):
        super().__init__()
        self.backbone = backbone
        info = backbone.feature_info
        channels, reductions = list(info.channels()), list(info.reduction())
        self.low_index, self.deep_index = select_features(reductions)
        self.low_channels_in, self.deep_channels_in = channels[self.low_index], channels[self.deep_index]
        self.nhwc = self._declared_nhwc(backbone, info)
        cfg = getattr(backbone, "pretrained_cfg", None) or {}
        mean = tuple(mean or cfg.get("mean") or IMAGENET_MEAN)
        std = tuple(std or cfg.get("std") or IMAGENET_STD)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0, persistent=False)
        if atrous_rates is None:  # the paper's (6, 12, 18) at output stride 16, scaled to the backbone's
            scale = 16.0 / reductions[self.deep_index]
            atrous_rates = tuple(max(1, round(r * scale)) for r in (6, 12, 18))
        self.atrous_rates = tuple(atrous_rates)
        self.aspp = ASPP(self.deep_channels_in, aspp_channels, self.atrous_rates)
        self.low = conv_bn(self.low_channels_in, low_channels, k=1)
        self.decoder = nn.Sequential(
            conv_bn(aspp_channels + low_channels, decoder_channels), conv_bn(decoder_channels, decoder_channels)
        )
        self.classifier = nn.Conv2d(decoder_channels, num_classes, 1)

    @staticmethod
    def _declared_nhwc(backbone: nn.Module, info: Any) -> bool:
        """NHWC if the backbone (timm's ``output_fmt``) or any feature_info entry says so."""
        if _is_nhwc(getattr(backbone, "output_fmt", None)):
            return True
        dicts = info.get_dicts() if hasattr(info, "get_dicts") else []
        return any(_is_nhwc(d.get("output_fmt")) for d in dicts)

    def _nchw(self, x: torch.Tensor, channels: int) -> torch.Tensor:
        """Channels-first view of a feature; undeclared NHWC is caught by its channel count."""
        if self.nhwc or (x.shape[1] != channels and x.shape[-1] == channels):
            x = x.permute(0, 3, 1, 2)
        if x.shape[1] != channels:
            raise ValueError(f"backbone feature has shape {tuple(x.shape)}; feature_info promised {channels} channels")
        return x.contiguous()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate features (B, decoder_channels, H/4, W/4 at the usual strides): what the 1x1 classifier
        reads."""
        x = (x.to(self.mean.dtype) - self.mean) / self.std
        feats = self.backbone(x)
        low = self._nchw(feats[self.low_index], self.low_channels_in)
        deep = self.aspp(self._nchw(feats[self.deep_index], self.deep_channels_in))
        deep = F.interpolate(deep, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.decoder(torch.cat([deep, self.low(low)], dim=1))

    def resize(self, x: torch.Tensor, size) -> torch.Tensor:
        """How the logits reach the input size (bilinear, align_corners=False); features resized alike stay aligned."""
        return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resize(self.classifier(self.features(x)), x.shape[-2:])


def select_features(reductions: Sequence[int]) -> tuple[int, int]:
    """(low, deep) feature indices: stride 4 (else the stride nearest 4) and the deepest (last of max)."""
    if not reductions:
        raise ValueError("backbone reports no features (empty feature_info)")
    deep = max(range(len(reductions)), key=lambda i: (reductions[i], i))
    low = min(range(len(reductions)), key=lambda i: (abs(math.log2(reductions[i] / 4)), -reductions[i], i))
    return low, deep


def create_timm_backbone(model_name: str, *, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """``timm.create_model(features_only=True)``; a failed weight fetch names the model and the fixes."""
    timm = import_timm()
    if not pretrained:
        return timm.create_model(model_name, pretrained=False, features_only=True, **kwargs)
    try:
        return timm.create_model(model_name, pretrained=True, features_only=True, **kwargs)
    except TypeError:  # a wrong keyword argument, not a weights problem
        raise
    except Exception as exc:  # noqa: BLE001 - network, hub cache, missing or mismatched weights
        raise PretrainedWeightsError(
            f"could not get pretrained weights for timm model {model_name!r} ({type(exc).__name__}: {exc}). "
            f"Fix: run once where huggingface.co is reachable so timm caches them (HF_HOME, default "
            f"~/.cache/huggingface), or copy that cache here and set HF_HUB_OFFLINE=1, or pass "
            f"pretrained=False for random initialization (e.g. before loading an oodbench checkpoint)."
        ) from exc


def timm_deeplab(
    backbone_name: str,
    num_classes: int = 19,
    pretrained: bool = False,
    *,
    aspp_channels: int = 256,
    low_channels: int = 48,
    decoder_channels: int = 256,
    atrous_rates: Sequence[int] | None = None,
    **backbone_kwargs: Any,
) -> DeepLabV3Plus:
    """Build DeepLabV3+ on timm backbone ``backbone_name``; extra kwargs go to ``timm.create_model``
    (e.g. ``output_stride=16`` where the backbone supports dilation, ``img_size`` for ViT/Swin)."""
    backbone = create_timm_backbone(backbone_name, pretrained=pretrained, **backbone_kwargs)
    return DeepLabV3Plus(
        backbone,
        num_classes,
        aspp_channels=aspp_channels,
        low_channels=low_channels,
        decoder_channels=decoder_channels,
        atrous_rates=atrous_rates,
    )


def resolve(name: str, registered: Iterable[str] = ()) -> Callable[..., DeepLabV3Plus]:
    """Factory for ``deeplabv3plus_<timm model>``; an unknown timm name raises UnknownNameError with
    close names from the registered models and ``timm.list_models()``."""
    if not name.startswith(TIMM_PREFIX):
        raise ValueError(f"{name!r} does not start with {TIMM_PREFIX!r}")
    backbone_name = name[len(TIMM_PREFIX):]
    timm = import_timm()
    hub = backbone_name.startswith(("hf-hub:", "hf_hub:"))
    if not backbone_name or not (hub or timm.is_model(backbone_name)):
        candidates = sorted(set(registered) | {TIMM_PREFIX + m for m in timm.list_models()})
        close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownNameError(
            f"unknown model {name!r}: {backbone_name!r} is neither a registered model nor a timm model.{hint} "
            f"Names {TIMM_PREFIX}<timm model> build DeepLabV3+ on any timm backbone; timm.list_models() lists them."
        )
    return functools.partial(timm_deeplab, backbone_name)


def _resolve(name: str, known: set[str]) -> Callable[..., DeepLabV3Plus] | None:
    """The model registry's resolver: ``deeplabv3plus_<timm model>`` names nobody registered."""
    return resolve(name, registered=known) if name.startswith(TIMM_PREFIX) else None


MODELS.add_resolver(_resolve)
