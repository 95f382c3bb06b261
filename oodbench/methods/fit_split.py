"""The in-distribution frames a fit stage reads: a registered split (the embedded benchmark's
``synthetic_cityscapes/train``, Cityscapes ``val``) or Cityscapes frames lying loose in a folder (``cityscapes_frames``,
e.g. a handful of ``*_leftImg8bit.png`` frames in a ``cityscapes/`` folder); the record names which, with its
fingerprint."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from ..data.base import Dataset, Sample
from ..errors import DatasetError, OodbenchError
from ..paths import home

LOOSE = "cityscapes_frames"
FRAME_SUFFIX = "_leftImg8bit.png"
EMBEDDED_FIT = ("synthetic_cityscapes", "train")
REAL_FIT = ("cityscapes", "val")


class LooseFrames(Dataset):
    """Cityscapes frames ``<id>_leftImg8bit.png`` directly in one folder, read without labels (a fit by predicted
    class needs none); whatever else the folder holds (label maps, other files) is not read."""

    name = LOOSE
    label_kind = "train_ids"

    def __init__(self, root: str | Path | None = None, split: str = "frames"):
        if root is None:
            raise DatasetError(f"{LOOSE} reads a folder of *{FRAME_SUFFIX} frames: give its path as fit_root")
        super().__init__(Path(root).expanduser(), split)
        frames = sorted(p for p in self.root.glob(f"*{FRAME_SUFFIX}") if p.is_file())
        if not frames:
            raise DatasetError(f"{self.root}: no Cityscapes frames (*{FRAME_SUFFIX}) in this folder; give the folder "
                               f"that holds them as fit_root")
        self.files = [(p, None, p.name[: -len(FRAME_SUFFIX)]) for p in frames]


def fit_split(dataset: str | None, split: str | None, root: str | Path | None, embedded: bool,
              near: Path | None = None) -> Dataset:
    """The fit frames: the named split (``cityscapes_frames``: a folder of loose frames) or the Cityscapes copy at
    ``root``; else on the embedded benchmark its training split; else Cityscapes val at its usual place
    ($OODBENCH_HOME/data/cityscapes), else the ``cityscapes/`` folder in the evaluated dataset's folder ``near``."""
    from ..data import load_dataset

    default = EMBEDDED_FIT if embedded else REAL_FIT
    if dataset == LOOSE:
        return LooseFrames(root)
    if dataset is not None or embedded:
        return load_dataset(dataset or default[0], split=split or default[1], root=root)
    if root is not None:
        return _cityscapes(Path(root).expanduser(), split)
    tried = []
    for folder in [None] + ([Path(near) / "cityscapes"] if near is not None else []):
        try:
            if folder is None:
                return load_dataset(REAL_FIT[0], split=split or REAL_FIT[1])
            return _cityscapes(folder, split)
        except OodbenchError as exc:
            tried.append(f"{folder or home() / 'data' / 'cityscapes'} ({exc})")
    raise DatasetError("no in-distribution frames to fit on; tried " + "; ".join(tried) + ". Put Cityscapes "
                       "(leftImg8bit/ + gtFine/) at $OODBENCH_HOME/data/cityscapes, or a cityscapes/ folder of "
                       "*_leftImg8bit.png frames in the evaluated dataset's folder, or give fit_dataset/fit_split/"
                       "fit_root")


def _cityscapes(folder: Path, split: str | None) -> Dataset:
    """A Cityscapes copy (``leftImg8bit/``: the official layout, its ``split``) or loose frames in ``folder``."""
    from ..data import load_dataset

    if (folder / "leftImg8bit").is_dir():
        return load_dataset(REAL_FIT[0], split=split or REAL_FIT[1], root=folder)
    return LooseFrames(folder)


def frame_batches(data: Dataset, batch_size: int) -> Iterator[list[Sample]]:
    """Consecutive frames of equal size, at most ``batch_size`` at a time, read one by one."""
    batch: list[Sample] = []
    for i in range(len(data)):
        sample = data[i]
        if batch and (len(batch) == batch_size or batch[0].image.shape != sample.image.shape):
            yield batch
            batch = []
        batch.append(sample)
    if batch:
        yield batch
