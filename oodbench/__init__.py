"""oodbench: out-of-distribution detection benchmark for semantic segmentation.

The public API is imported lazily (``import oodbench`` stays cheap; torch loads on first use)::

    model = oodbench.create_model("tiny_deeplab", num_classes=19)
    method = oodbench.create_method("entropy")
    data = oodbench.load_dataset("roadanomaly", root="~/data/RoadAnomaly")
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_API = {
    "create_model": "oodbench.models", "list_models": "oodbench.models", "register_model": "oodbench.models",
    "create_method": "oodbench.methods", "list_methods": "oodbench.methods", "register_method": "oodbench.methods",
    "load_dataset": "oodbench.data", "list_datasets": "oodbench.data", "register_dataset": "oodbench.data",
    "pixel_metrics": "oodbench.metrics", "component_metrics": "oodbench.metrics",
    "PixelMetricState": "oodbench.metrics", "ComponentMetricState": "oodbench.metrics",
    "create_convention": "oodbench.metrics",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'oodbench' has no attribute {name!r}")
    value = getattr(import_module(_API[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
