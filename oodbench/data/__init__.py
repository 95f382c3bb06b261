"""Dataset loaders; importing this package registers every built-in dataset in ``DATASETS``."""
from .base import DATASETS, Dataset, Sample, register_dataset
from . import cityscapes, coco_proxy, fishyscapes, folder, huggingface, lostandfound, roadanomaly, smiyc, synthetic  # noqa: F401  (registration side effects)

__all__ = ["DATASETS", "Dataset", "Sample", "register_dataset"]
