"""The dataset contract: samples in the canonical label encoding, a file count check, a fingerprint."""
from __future__ import annotations

import hashlib
import os
import re
import stat
import threading
import warnings
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
from PIL import Image

from ..errors import DatasetError
from ..registry import Registry
from ..labels import ID_LABEL, IGNORE_LABEL, OOD_LABEL  # noqa: F401  (re-exported for loaders)
from .registry import DatasetRegistry


DATASETS: Registry["Dataset"] = DatasetRegistry("dataset", "oodbench.datasets")
register_dataset = DATASETS.register
_HASH_PROGRESS: ContextVar[bool] = ContextVar("oodbench_hash_progress", default=False)


@contextmanager
def hashing_progress(enabled: bool = True) -> Iterator[None]:
    """Within the block, ``fingerprint(deep=True)`` shows a tqdm bar (stderr) over the frames whose files it hashes;
    a context rather than an argument, so every ``fingerprint(deep)`` override keeps its signature."""
    token = _HASH_PROGRESS.set(enabled)
    try:
        yield
    finally:
        _HASH_PROGRESS.reset(token)


def hashed_frames(ds: "Dataset", deep: bool) -> Iterable[int]:
    """The frame indices a fingerprint walks: on a progress bar when hashing contents inside ``hashing_progress``."""
    frames = range(len(ds.files))
    if not (deep and _HASH_PROGRESS.get()):
        return frames
    from tqdm.auto import tqdm

    return tqdm(frames, desc=f"hashing {ds.name}/{ds.split}", unit="img")


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
    # Ground-truth instance ids (0: none) where the dataset annotates them; None: the OoD mask's components.
    instance_label: np.ndarray | None = None

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
    def _instance_label(self, label_path: Path, label: np.ndarray) -> np.ndarray | None:
        """The frame's ground-truth instance ids on its OoD pixels, where the dataset annotates them (None: not)."""
        return None

    def category(self, sample_id: str) -> str | None:
        """The frame's category for per-category results (e.g. Road Anomaly's ``animals``), or None where the
        dataset names none; samples carry it in ``meta["category"]``."""
        return None

    @property
    def ids(self) -> list[str]:
        return [f[2] for f in self.files]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Sample:  # type: ignore[override]
        image_path, label_path, sample_id = self.files[index]
        image = read_rgb(image_path) if image_path is not None else None
        label = segment_label = instances = None
        if label_path is not None:
            native = read_label(label_path)
            if image is not None and native.shape != image.shape[:2]:
                raise DatasetError(
                    f"{label_path}: label size {native.shape[1]}x{native.shape[0]} differs from image "
                    f"{image_path.name} size {image.shape[1]}x{image.shape[0]}; the copy is corrupt, re-extract it"
                )
            label = self._encode_label(native, label_path)
            segment_label = self._segment_label(native, label)
            instances = self._instance_label(label_path, label)
        meta = {"dataset": self.name, "split": self.split, "label_kind": self.label_kind}
        category = self.category(sample_id)
        if category is not None:
            meta["category"] = category
        return Sample(sample_id, image, label, meta, segment_label, instances)

    def fingerprint(self, deep: bool = False) -> str:
        """sha256 over relative file names and sizes (``deep``: and each file's sha256), so different copies never mix."""
        h = hashlib.sha256()
        for i in hashed_frames(self, deep):
            image_path, label_path, _ = self.files[i]
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


_WARNINGS_LOCK = threading.Lock()


def _regular(path: Path, what: str) -> None:
    """Refuse anything but a regular file before opening it: a FIFO or device would block the read forever."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read {what} ({exc.strerror or exc}); re-download or re-extract this "
                           f"file") from exc
    if not stat.S_ISREG(mode):
        raise DatasetError(f"{path}: is {_kind(mode)}, not a regular file, so it was not opened; replace it with "
                           f"the {what} file")


def _open_image(path: Path, what: str):
    """``Image.open`` that refuses images over ``Image.MAX_IMAGE_PIXELS`` (PIL's decompression-bomb limit, 89.5
    megapixels by default; a Cityscapes frame has 2.1) with a DatasetError, where PIL would only warn up to twice
    the limit and raise its own error beyond. The lock keeps reader threads (prefetching) from interleaving their
    ``catch_warnings``, which saves and restores the process-wide filters."""
    _regular(path, what)
    try:
        with _WARNINGS_LOCK, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        raise DatasetError(f"{path}: the {what} has {size}, over the limit of {Image.MAX_IMAGE_PIXELS:,} pixels "
                           f"(PIL.Image.MAX_IMAGE_PIXELS, a guard against decompression bombs), so it was not decoded; "
                           f"check that it is the right file, downscale it (label maps with nearest-neighbour "
                           f"resampling) or, for a genuine frame that large, raise PIL.Image.MAX_IMAGE_PIXELS"
                           ) from None


def read_rgb(path: Path) -> np.ndarray:
    try:
        with _open_image(path, "image") as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot read image ({exc}); re-download or re-extract this file") from exc


def read_label(path: Path) -> np.ndarray:
    try:
        with _open_image(path, "label map") as im:
            arr = np.asarray(im)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot read label map ({exc}); re-download or re-extract this file") from exc
    if arr.ndim != 2:
        raise DatasetError(f"{path}: label map has shape {arr.shape}, expected a single-channel HxW image")
    return arr


def _kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISDIR, "a folder")):
        if test(mode):
            return kind
    return "not a regular file"


class SkippedFileWarning(UserWarning):
    """A data folder holds an entry that is not used: one that is not a regular file (FIFO, socket, device, broken
    link; never opened), or a file of a kind the reader does not read where that is not an error."""


@dataclass
class FolderEntries:
    """What a data folder holds, by name: regular files, subfolders, and other entries as ``(path, kind)`` (FIFOs,
    sockets, devices, broken links), which are never opened. Hidden entries (names starting with '.') are left out."""

    files: list[Path]
    folders: list[Path]
    other: list[tuple[Path, str]]

    def warn_other(self, role: str) -> None:
        """Report the entries that are neither file nor folder: skipped, not opened (opening a FIFO blocks)."""
        if self.other:
            one = len(self.other) == 1
            listed = ", ".join(f"{p.name} ({kind})" for p, kind in self.other[:5])
            more = f" and {len(self.other) - 5} more" if len(self.other) > 5 else ""
            warnings.warn(f"{role}: skipped {len(self.other)} entr{'y' if one else 'ies'} that "
                          f"{'is' if one else 'are'} not a regular file, without opening {'it' if one else 'them'}: "
                          f"{listed}{more}; remove or replace {'it' if one else 'them'} with a regular file",
                          SkippedFileWarning, stacklevel=3)


def list_folder(folder: Path) -> FolderEntries:
    """The entries of ``folder``, sorted by name, each classified by ``stat`` (links followed) without opening it."""
    files, folders, other = [], [], []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise DatasetError(f"{folder}: cannot list the folder ({exc.strerror or exc}); check that it exists and is "
                           f"readable") from exc
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path = Path(folder) / entry.name
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            other.append((path, "a broken link" if os.path.islink(path) else f"unreadable: {exc.strerror or exc}"))
            continue
        if stat.S_ISREG(mode):
            files.append(path)
        elif stat.S_ISDIR(mode):
            folders.append(path)
        else:
            other.append((path, _kind(mode)))
    return FolderEntries(files, folders, other)


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
