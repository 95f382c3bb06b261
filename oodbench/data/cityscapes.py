"""Cityscapes (in-distribution training and evaluation) and the Cityscapes-style folder scanning shared by
the loaders of datasets that copy its layout (LostAndFound)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DatasetError, UnknownSplitError
from ..paths import home
from .base import Dataset, check_count, check_values, register_dataset
from .cards import download_hint

CITYSCAPES_URL = "https://www.cityscapes-dataset.com"
CITYSCAPES_COUNTS = {"train": 2975, "val": 500, "test": 1525}

# Official Cityscapes labelId -> trainId table (cityscapesScripts helpers/labels.py); unlisted ids -> 255.
_TRAIN_ID_OF = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
                24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
LABEL_ID_TO_TRAIN_ID = np.full(256, 255, dtype=np.uint8)
for _lid, _tid in _TRAIN_ID_OF.items():
    LABEL_ID_TO_TRAIN_ID[_lid] = _tid
TRAIN_IDS = np.array([*range(19), 255])
LABEL_IDS = np.arange(34)


def default_root(name: str, root: str | Path | None) -> Path:
    """``root`` as a Path; None means ``home()/data/<name>``."""
    return Path(root).expanduser() if root is not None else home() / "data" / name


def require_root(root: Path, name: str, needs: str, url: str | None) -> None:
    if not root.is_dir():
        raise DatasetError(
            f"{root}: no such folder. The {name} loader expects a folder holding {needs}; "
            f"{download_hint(name, url)} and pass its path as root (--data-root)"
        )


def check_split(split: str, valid: tuple[str, ...] | list[str], name: str) -> None:
    if split not in valid:
        raise UnknownSplitError(f"unknown {name} split {split!r}; valid splits: {', '.join(valid)}")


def resolve_expected(expected: int | bool | None, defaults: dict[str, int], split: str) -> int | None:
    """None -> the real dataset's count for the split; False -> no check; an int -> that count."""
    if expected is False:
        return None
    if expected is None or expected is True:
        return defaults.get(split)
    return int(expected)


def _listing(paths: list[Path], base: Path) -> str:
    shown = ", ".join(str(p.relative_to(base)) for p in paths[:3])
    return shown + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")


def scan_pairs(root: Path, image_dir: Path, label_dir: Path, image_suffixes: str | tuple[str, ...],
               label_suffixes: tuple[str, ...]) -> list[tuple[Path, Path, str]]:
    """Pair ``<dir>/<sub>/<stem><image suffix>`` with ``<label_dir>/<sub>/<same stem><label suffix>`` (for each, the
    first suffix listed wins), sorted by stem. Images without labels, labels without images and a stem in two
    subfolders are errors."""
    for d, what in ((image_dir, "images"), (label_dir, "labels")):
        if not d.is_dir():
            raise DatasetError(f"{d}: no such folder; the copy at {root} lacks the {what} of this split")
    image_suffixes = (image_suffixes,) if isinstance(image_suffixes, str) else image_suffixes
    images, labels = _by_stem(image_dir, image_suffixes), _by_stem(label_dir, label_suffixes)
    unlabelled = sorted(p for s, p in images.items() if s not in labels)
    if unlabelled:
        raise DatasetError(
            f"{label_dir}: {len(unlabelled)} images have no label file ({' or '.join(label_suffixes)}): "
            f"{_listing(unlabelled, root)}; re-extract the labels or remove the stray images"
        )
    orphans = sorted(p for s, p in labels.items() if s not in images)
    if orphans:
        raise DatasetError(
            f"{image_dir}: {len(orphans)} label files have no image ({' or '.join(image_suffixes)}): "
            f"{_listing(orphans, root)}; re-extract the images or remove the stray labels"
        )
    keys = sorted(images, key=lambda k: k[1])
    twice = sorted({a[1] for a, b in zip(keys, keys[1:]) if a[1] == b[1]})
    if twice:
        paths = sorted(p for (_, s), p in images.items() if s in twice)
        raise DatasetError(f"{image_dir}: {len(twice)} frame ids appear in more than one subfolder: "
                           f"{_listing(paths, root)}; remove the copies that do not belong there")
    return [(images[k], labels[k], k[1]) for k in keys]


def scan_flat_pairs(top: Path, image_suffixes: tuple[str, ...]) -> list[tuple[Path, Path, str]]:
    """The preprocessed layout of SynBoost and PEBAL: ``top/original/<id><image suffix>`` with ``top/labels/<id>.png``,
    sorted by id; images without labels and labels without images are errors."""
    images = {stem: p for (_, stem), p in _by_stem(top / "original", image_suffixes, nested=False).items()}
    labels = {p.stem: p for p in (top / "labels").glob("*.png")}
    unlabelled, orphans = sorted(set(images) - set(labels)), sorted(set(labels) - set(images))
    if unlabelled:
        raise DatasetError(f"{top / 'labels'}: {len(unlabelled)} images of original/ have no label <id>.png: "
                           f"{_listing([images[s] for s in unlabelled], top)}; re-extract or remove the strays")
    if orphans:
        raise DatasetError(f"{top / 'original'}: {len(orphans)} labels have no image ({' or '.join(image_suffixes)}) "
                           f"in original/: {_listing([labels[s] for s in orphans], top)}; re-extract or remove the strays")
    return [(images[s], labels[s], s) for s in sorted(images)]


def _by_stem(folder: Path, suffixes: tuple[str, ...], nested: bool = True) -> dict[tuple[str, str], Path]:
    """``<folder>/<sub>/<stem><suffix>`` files (``nested=False``: ``<folder>/<stem><suffix>``) by (sub, stem); where
    a stem has several suffixes, the first listed wins."""
    found: dict[tuple[str, str], Path] = {}
    for suffix in reversed(suffixes):
        found.update({(p.parent.name, p.name[: -len(suffix)]): p
                      for p in folder.glob(f"*/*{suffix}" if nested else f"*{suffix}")})
    return found


@register_dataset("cityscapes")
class CityscapesDataset(Dataset):
    """Cityscapes ``leftImg8bit`` + ``gtFine`` in train ids (0..18, 255); ``_labelIds`` files are converted
    with the official table when ``_labelTrainIds`` files have not been generated."""

    name = "cityscapes"
    label_kind = "train_ids"
    SPLITS = ("train", "val", "test")

    def __init__(self, root: str | Path | None = None, split: str = "train", expected: int | bool | None = None):
        root = default_root("cityscapes", root)
        super().__init__(root, split)
        check_split(split, self.SPLITS, self.name)
        require_root(self.root, "cityscapes", "leftImg8bit/ and gtFine/", CITYSCAPES_URL)
        self.files = scan_pairs(self.root, self.root / "leftImg8bit" / split, self.root / "gtFine" / split,
                                "_leftImg8bit.png", ("_gtFine_labelTrainIds.png", "_gtFine_labelIds.png"))
        check_count(len(self.files), resolve_expected(expected, CITYSCAPES_COUNTS, split),
                    self.root / "leftImg8bit" / split, f"{split} images")

    def _encode_label(self, native: np.ndarray, path: Path) -> np.ndarray:
        if path.name.endswith("_labelTrainIds.png"):
            check_values(native, TRAIN_IDS, path, "Cityscapes trainIds")
            return native.astype(np.uint8)
        check_values(native, LABEL_IDS, path, "Cityscapes labelIds")
        return LABEL_ID_TO_TRAIN_ID[native]
