"""The model registry: ``create_model("name", num_classes=19)`` returns an ``nn.Module`` emitting logits."""
from __future__ import annotations

from ..registry import Registry

MODELS: Registry = Registry("model", "oodbench.models")
register_model = MODELS.register


def create_model(name: str, **kwargs):
    return MODELS.create(name, **kwargs)


def list_models(pattern: str = "*") -> list[str]:
    return MODELS.list(pattern)
