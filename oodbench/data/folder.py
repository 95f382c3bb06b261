"""``folder``: data a user brings, already in the canonical encoding (0 in-distribution, 1 OoD, 255 ignore).

Layout: ``<root>/labels/<id>.png`` (or ``<root>/<id>.png``) and, optionally, the RGB frames as
``<root>/images/<id>.<png|jpg|jpeg|webp>``. Without images the split can still be evaluated from
precomputed score maps (``oodbench evaluate``).

Every entry of the labels folder (and of ``images/``) is used or reported, so a split is never evaluated on a silent
subset: suffixes match in any case (``a.PNG``); JPEG label maps (lossy: compression moves the 0/1/255 values at
every border), other file kinds and subfolders are errors that list them (where the labels sit in ``<root>``, its
``images/`` folder is allowed); two files for one id are an error naming both; entries that are not regular files
(FIFOs, sockets, devices, broken links) are skipped unopened with a ``SkippedFileWarning``. Hidden entries (names
starting with '.', such as ``.DS_Store``) are ignored."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DatasetError
from .base import Dataset, check_count, check_values, list_folder, register_dataset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
LABEL_SUFFIXES = (".png",)
LOSSY_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif")
CANONICAL_VALUES = np.array([0, 1, 255])


def _listed(names: list[str], limit: int = 5) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _by_id(files: list[Path], folder: Path, what: str) -> dict[str, Path]:
    """``{id: path}``; two files for one id (``a.png`` and ``a.PNG``, ``a.png`` and ``a.jpg``) are an error."""
    found: dict[str, Path] = {}
    for path in files:
        other = found.setdefault(path.stem, path)
        if other is not path:
            raise DatasetError(f"{folder}: two {what} for sample {path.stem!r}: {other.name} and {path.name}; keep "
                               f"one of them, so it is clear which one is evaluated")
    return found


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
        self.label_dir = label_dir
        labels = self._labels(label_dir)
        if not labels:
            raise DatasetError(f"{label_dir}: no label maps (*.png) found")
        check_count(len(labels), expected, label_dir, "label maps")
        image_dir = self.root / "images"
        images = self._images(image_dir) if image_dir.is_dir() else {}
        ids = list(labels)
        if images:
            missing = [i for i in ids if i not in images]
            stray = sorted(set(images) - set(ids))
            if missing or stray:
                raise DatasetError(f"{image_dir}: images and labels do not pair up: {len(missing)} labels without "
                                   f"image (e.g. {missing[:3]}), {len(stray)} images without label (e.g. {stray[:3]})")
        self.files = [(images.get(i), labels[i], i) for i in ids]

    def _labels(self, label_dir: Path) -> dict[str, Path]:
        """``{id: label path}`` in sorted order, every other entry of the folder reported (see the module doc)."""
        entries = list_folder(label_dir)
        entries.warn_other(f"{label_dir} (label maps)")
        in_root = label_dir == self.root
        may_hold = "label maps <id>.png (0 in-distribution, 1 OoD, 255 ignore)" + (
            " and the images/ folder" if in_root else "")
        lossy = [p for p in entries.files if p.suffix.lower() in LOSSY_SUFFIXES]
        if lossy:
            raise DatasetError(f"{label_dir}: JPEG label maps are not read: {_listed([p.name for p in lossy])}. JPEG "
                               f"is lossy, so the 0/1/255 values are altered at every object border; export the label "
                               f"maps as PNG")
        unknown = [p for p in entries.files if p.suffix.lower() not in LABEL_SUFFIXES]
        folders = [p for p in entries.folders if not (in_root and p.name == "images")]
        if unknown or folders:
            found = [f"{len(unknown)} file(s) of another kind: {_listed([p.name for p in unknown])}"] if unknown \
                else []
            found += [f"{len(folders)} subfolder(s), whose files are not read: "
                      f"{_listed([p.name + '/' for p in folders])}"] if folders else []
            hint = "; or keep the label maps in <root>/labels/, so that other files may sit beside that folder" \
                if in_root else ""
            raise DatasetError(f"{label_dir}: the labels folder holds {' and '.join(found)}. It may hold only "
                               f"{may_hold}: move the other entries out (label maps in subfolders into the folder "
                               f"itself){hint}")
        return _by_id(entries.files, label_dir, "label maps")

    def _images(self, image_dir: Path) -> dict[str, Path]:
        entries = list_folder(image_dir)
        entries.warn_other(f"{image_dir} (images)")
        unknown = [p for p in entries.files if p.suffix.lower() not in IMAGE_SUFFIXES]
        if unknown or entries.folders:
            listed = _listed([p.name for p in unknown] + [p.name + "/" for p in entries.folders])
            raise DatasetError(f"{image_dir}: the images folder holds entries that are not read: {listed}. It may hold "
                               f"only RGB frames <id>{'|'.join(IMAGE_SUFFIXES)}; move the other entries out")
        return _by_id(entries.files, image_dir, "images")

    def _encode_label(self, native: np.ndarray, path: Path) -> np.ndarray:
        check_values(native, CANONICAL_VALUES, path, "canonical 0/1/255")
        return native.astype(np.uint8, copy=False)


@register_dataset("folder")
def folder(root=None, split: str = "test", expected: int | None = None, **_) -> FolderDataset:
    return FolderDataset(root, split, expected)
