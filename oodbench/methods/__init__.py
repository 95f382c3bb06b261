"""Methods: image -> OoD score map (+ softmax probabilities for the meta stage)."""
from . import fitted, mahalanobis, meta, model_score, sml  # noqa: F401  (register the built-in methods and the hooks of METHODS)
from .base import METHODS, Method, MethodOutput, SegmentStage, create_method, list_methods, register_method

__all__ = ["METHODS", "Method", "MethodOutput", "SegmentStage", "create_method", "list_methods", "register_method"]
