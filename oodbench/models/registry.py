"""The model registry: ``create_model("name", num_classes=19)`` returns an ``nn.Module`` emitting logits.

Besides the registered names, any ``deeplabv3plus_<timm model>`` (e.g. ``deeplabv3plus_resnet18``,
``deeplabv3plus_convnext_tiny``) resolves to a DeepLabV3+ head on that timm backbone
(``oodbench.models.timm_deeplab``; needs the ``timm`` extra). Registered names always win, so an
explicit ``deeplabv3plus_wrn38`` is never sent to timm. The timm names are not enumerated:
``list_models("deeplabv3plus_*")`` and ``name in MODELS`` cover registered models only, and an
unknown timm name raises ``UnknownNameError`` with close names from ``timm.list_models()``.
"""
from __future__ import annotations

from ..registry import Registry

MODELS: Registry = Registry("model", "oodbench.models")  # timm_deeplab adds its resolver
register_model = MODELS.register


def create_model(name: str, **kwargs):
    return MODELS.create(name, **kwargs)


def list_models(pattern: str = "*") -> list[str]:
    return MODELS.list(pattern)
