"""Methods: image -> OoD score map (+ softmax probabilities for the meta stage)."""
from . import model_score  # noqa: F401  (registers the built-in methods)
from .base import METHODS, Method, MethodOutput, SegmentStage, create_method, list_methods, register_method

__all__ = ["METHODS", "Method", "MethodOutput", "SegmentStage", "create_method", "list_methods", "register_method"]
