"""Segmentation networks returning logits (B, C, H, W) at input resolution."""
from . import tiny_deeplab  # noqa: F401  (registers the built-in models)
from . import deeplabv3plus  # noqa: F401
from . import espnetv2  # noqa: F401
from . import timm_deeplab  # noqa: F401  (resolves deeplabv3plus_<timm model>; timm loads on first use)
from .registry import MODELS, create_model, list_models, register_model

__all__ = ["MODELS", "create_model", "list_models", "register_model"]
