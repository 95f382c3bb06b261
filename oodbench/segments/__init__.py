"""Score map -> connected components; MetaSeg meta features; meta classifier; paper segment counts."""
from .collector import ImageSegments, SegmentCollector, count_errors, image_segments
from .components import boundary_mask, label_components
from .features import (SegmentFeatures, feature_names, normalized_entropy, paper_feature_order,
                       segment_features)
from .meta_classifier import PROTOCOLS, cross_val_proba, fold_splits, make_meta_classifier

__all__ = [
    "ImageSegments", "SegmentCollector", "count_errors", "image_segments",
    "boundary_mask", "label_components",
    "SegmentFeatures", "feature_names", "normalized_entropy", "paper_feature_order", "segment_features",
    "PROTOCOLS", "cross_val_proba", "fold_splits", "make_meta_classifier",
]
