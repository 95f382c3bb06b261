"""Score functions: logits -> per-pixel OoD score map."""
from .functions import SCORES, energy, max_logit, max_softmax, register_score, softmax_entropy

__all__ = ["SCORES", "register_score", "softmax_entropy", "max_softmax", "max_logit", "energy"]
