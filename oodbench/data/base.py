"""The dataset contract: samples in the canonical label encoding, a file count check, a fingerprint."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from ..errors import DatasetError
from ..registry import Registry

ID_LABEL, OOD_LABEL, IGNORE_LABEL = 0, 1, 255

DATASETS: Registry["Dataset"] = Registry("dataset", "oodbench.datasets")
register_dataset = DATASETS.register


@dataclass
class Sample:
    """One frame. ``label`` is canonical (0 in-distribution, 1 OoD, 255 ignore) for OoD datasets and
    train ids (0..18, 255) for segmentation training sets; ``meta`` says which in ``label_kind``."""

    id: str
    image: np.ndarray | None  # uint8 HxWx3 RGB; None where a dataset ships labels only
    label: np.ndarray | None  # uint8 HxW
    meta: dict[str, Any] = field(default_factory=dict)
    # The meta stage's labels where they differ from ``label`` (meta-ood keeps LostAndFound's random non-hazards
    # out of the pixel metrics but in its segments, as not OoD); None: ``label``.
    segment_label: np.ndarray | None = None

    @property
    def labels_for_segments(self) -> np.ndarray | None:
        """The labels the meta stage forms segments and their targets on."""
        return self.label if self.segment_label is None else self.segment_label


class Dataset(Sequence[Sample]):
    """Base class: subclasses fill ``self.files`` (image path, label path or None, id) in sorted order
    and implement ``_encode_label``. Indexing decodes one frame at a time."""

    name: str = "dataset"
    label_kind: str = "ood"  # "ood" (0/1/255) or "train_ids"
    domain: str = "real"  # "real" road scenes (Cityscapes-trained models) or "embedded" (the synthetic benchmark)
    component_track: str = "anomaly"  # SegmentMeIfYouCan size-filter preset for component metrics
    validation_split: str | None = None  # where thresholds are fixed when a method's own choice ("val") is absent

    def __init__(self, root: str | Path, split: str):
        self.root = Path(root)
        self.split = split
        self.files: list[tuple[Path | None, Path | None, str]] = []

    # -- subclass hooks -------------------------------------------------------------------------
    def _encode_label(self, native: np.ndarray, path: Path) -> np.ndarray:
        raise NotImplementedError

    def _segment_label(self, native: np.ndarray, label: np.ndarray) -> np.ndarray | None:
        """The meta stage's labels where they must differ from the pixel metrics' ``label`` (None: they do not)."""
        return None

    # -- public API -----------------------------------------------------------------------------
    @property
    def ids(self) -> list[str]:
        return [f[2] for f in self.files]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Sample:  # type: ignore[override]
        image_path, label_path, sample_id = self.files[index]
        image = read_rgb(image_path) if image_path is not None else None
        label = segment_label = None
        if label_path is not None:
            native = read_label(label_path)
            if image is not None and native.shape != image.shape[:2]:
                raise DatasetError(
                    f"{label_path}: label size {native.shape[1]}x{native.shape[0]} differs from image "
                    f"{image_path.name} size {image.shape[1]}x{image.shape[0]}; the copy is corrupt, re-extract it"
                )
            label = self._encode_label(native, label_path)
            segment_label = self._segment_label(native, label)
        return Sample(sample_id, image, label, {"dataset": self.name, "split": self.split, "label_kind": self.label_kind},
                      segment_label)

    def fingerprint(self, deep: bool = False) -> str:
        """sha256 over relative file names and sizes (``deep``: and each file's sha256), so different copies never mix."""
        h = hashlib.sha256()
        for image_path, label_path, _ in self.files:
            for p in (image_path, label_path):
                if p is None:
                    continue
                h.update(str(p.relative_to(self.root)).encode())
                h.update(str(p.stat().st_size).encode())
                if deep:
                    with p.open("rb") as fh:
                        h.update(hashlib.file_digest(fh, "sha256").digest())
        return h.hexdigest()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "split": self.split, "num_images": len(self), "fingerprint": self.fingerprint()}


def read_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot read image ({exc}); re-download or re-extract this file") from exc


def read_label(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            arr = np.asarray(im)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot read label map ({exc}); re-download or re-extract this file") from exc
    if arr.ndim != 2:
        raise DatasetError(f"{path}: label map has shape {arr.shape}, expected a single-channel HxW image")
    return arr


def check_count(found: int, expected: int | None, where: Path, what: str) -> None:
    """Fail loudly on an incomplete copy: expected vs found, and where to look."""
    if expected is not None and found != expected:
        raise DatasetError(
            f"{where}: found {found} {what}, expected {expected}. The copy is incomplete or has stray files; "
            f"re-extract the dataset or point --data-root at the complete folder"
        )


def check_values(label: np.ndarray, allowed: np.ndarray, path: Path, encoding: str) -> None:
    """Reject label values outside the dataset's native encoding, naming them."""
    bad = np.setdiff1d(np.unique(label), allowed)
    if bad.size:
        raise DatasetError(
            f"{path}: label values {bad.tolist()[:10]} are outside the {encoding} encoding; "
            f"check that this is the right dataset and the file is not resized with interpolation"
        )
