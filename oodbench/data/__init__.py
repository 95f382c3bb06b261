"""Dataset loaders; importing this package registers every built-in dataset in ``DATASETS``."""
from .base import DATASETS, Dataset, Sample, register_dataset
from . import cityscapes, coco_proxy, fishyscapes, folder, huggingface, lostandfound, roadanomaly, smiyc, synthetic  # noqa: F401  (registration side effects)

__all__ = ["DATASETS", "Dataset", "Sample", "list_datasets", "load_dataset", "register_dataset"]


def load_dataset(name: str, split: str = "test", root: str | None = None, **options) -> Dataset:
    """A registered dataset's split, ``root`` its folder on disk (None: the loader's default, e.g. the embedded
    benchmark); ``options`` are the loader's own (``oodbench list datasets``), refused by name when undeclared."""
    return DATASETS.create(name, root=root, split=split, **options)


def list_datasets(pattern: str = "*") -> list[str]:
    """Registered dataset names matching a glob, plugins included."""
    return DATASETS.list(pattern)
