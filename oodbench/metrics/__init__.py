"""Metrics, scikit-learn style functions and torchmetrics style states (``update``, ``merge``, ``compute``,
``reset``, ``state_dict``): pixel AUROC/AP/FPR95, component sIoU/PPV/F1, and named evaluation conventions."""
from .components import TAUS, TRACKS, ComponentMetricState, component_metrics
from . import conventions_states  # noqa: F401  (registers float16, per_image, hist100, smiyc768)
from .conventions import ConventionState, create_convention, list_conventions
from .pixel import PixelMetricState, pixel_metrics

__all__ = ["TAUS", "TRACKS", "ComponentMetricState", "ConventionState", "PixelMetricState", "component_metrics",
           "create_convention", "list_conventions", "pixel_metrics"]
