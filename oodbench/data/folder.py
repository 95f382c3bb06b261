"""``folder``: data a user brings, already in the canonical encoding (0 in-distribution, 1 OoD, 255 ignore).

Layout: ``<root>/labels/<id>.png`` (or ``<root>/<id>.png``) and, optionally, the RGB frames as
``<root>/images/<id>.<png|jpg|jpeg|webp>``. Without images the split can still be evaluated from
precomputed score maps (``oodbench evaluate``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DatasetError
from .base import Dataset, check_count, check_values, register_dataset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
CANONICAL_VALUES = np.array([0, 1, 255])


class FolderDataset(Dataset):
    name = "folder"

    def __init__(self, root: str | Path | None, split: str = "test", expected: int | None = None):
        need = "label maps <id>.png (0/1/255) in <root>/labels/ or <root>/, passed as --data-root or --labels"
        if root is None:
            raise DatasetError(f"the folder dataset has no root: give --data-root DIR (or --labels DIR) with {need}")
        if not Path(root).expanduser().is_dir():
            raise DatasetError(f"{root}: no such folder; the folder dataset needs {need}")
        super().__init__(Path(root).expanduser(), split)
        label_dir = self.root / "labels" if (self.root / "labels").is_dir() else self.root
        labels = sorted(label_dir.glob("*.png"))
        if not labels:
            raise DatasetError(f"{label_dir}: no label maps (*.png) found")
        check_count(len(labels), expected, label_dir, "label maps")
        image_dir = self.root / "images"
        images = {p.stem: p for p in sorted(image_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES} \
            if image_dir.is_dir() else {}
        ids = [p.stem for p in labels]
        if images:
            missing = [i for i in ids if i not in images]
            stray = sorted(set(images) - set(ids))
            if missing or stray:
                raise DatasetError(f"{image_dir}: images and labels do not pair up: {len(missing)} labels without "
                                   f"image (e.g. {missing[:3]}), {len(stray)} images without label (e.g. {stray[:3]})")
        self.files = [(images.get(i), p, i) for i, p in zip(ids, labels)]

    def _encode_label(self, native: np.ndarray, path: Path) -> np.ndarray:
        check_values(native, CANONICAL_VALUES, path, "canonical 0/1/255")
        return native.astype(np.uint8, copy=False)


@register_dataset("folder")
def folder(root=None, split: str = "test", expected: int | None = None, **_) -> FolderDataset:
    return FolderDataset(root, split, expected)
