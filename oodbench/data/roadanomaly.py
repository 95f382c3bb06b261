"""RoadAnomaly (Lis et al. 2019): 60 web images of roads with unusual objects, listed in ``frame_list.json``.

Layout (top folder ``RoadAnomaly_jpg/`` or ``dataset_RoadAnomaly/``, or the root itself)::

    frame_list.json                       JSON list of the image file names, e.g. "animals01.jpg"
    frames/<name>.jpg
    frames/<name>.labels/labels_semantic.png   0 not anomaly, 2 anomaly (no void: whole image scored)

PEBAL's preprocessed copy (``original/<name>.jpg`` + ``labels/<name>.png``, 0 not anomaly, 1 anomaly; in the root or
in ``road_anomaly/``) loads too.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from .base import ID_LABEL, IGNORE_LABEL, OOD_LABEL, Dataset, check_count, check_values, read_label, register_dataset
from .cityscapes import check_split, default_root, require_root, resolve_expected, scan_flat_pairs

ROADANOMALY_URL = "https://www.epfl.ch/labs/cvlab/data/road-anomaly/"
ROADANOMALY_COUNTS = {"test": 60}
TOP_FOLDERS = ("RoadAnomaly_jpg", "dataset_RoadAnomaly", "RoadAnomaly")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
NATIVE_VALUES = {"release": np.array([0, 2]), "preprocessed": np.array([0, 1])}  # (in-distribution, anomaly)


def _lut(values: np.ndarray) -> np.ndarray:
    lut = np.full(256, IGNORE_LABEL, dtype=np.uint8)
    lut[values[0]], lut[values[1]] = ID_LABEL, OOD_LABEL
    return lut


LUTS = {layout: _lut(values) for layout, values in NATIVE_VALUES.items()}
PREPROCESSED_FOLDERS = ("road_anomaly", "RoadAnomaly")


def find_top(root: Path) -> tuple[str, Path]:
    """(layout, folder): the release's folder holding ``frame_list.json`` (``root`` or a usual top folder in it),
    else PEBAL's preprocessed folder holding ``original/`` and ``labels/``."""
    for top in (root, *(root / name for name in TOP_FOLDERS)):
        if (top / "frame_list.json").is_file():
            return "release", top
    for top in (root, *(root / name for name in PREPROCESSED_FOLDERS)):
        if (top / "original").is_dir() and (top / "labels").is_dir():
            return "preprocessed", top
    raise DatasetError(
        f"{root}: no frame_list.json here nor in {', '.join(n + '/' for n in TOP_FOLDERS)}, and no original/ + "
        f"labels/ (PEBAL's copy); the roadanomaly loader expects frame_list.json and frames/<name>.jpg with "
        f"frames/<name>.labels/labels_semantic.png"
    )


@register_dataset("roadanomaly")
class RoadAnomalyDataset(Dataset):
    """RoadAnomaly: native 0 -> 0 (in-distribution), 2 -> 1 (OoD) (PEBAL's copy: 1 -> 1); other values are
    rejected."""

    name = "roadanomaly"
    label_kind = "ood"
    SPLITS = ("test",)

    def __init__(self, root: str | Path | None = None, split: str = "test", expected: int | bool | None = None):
        root = default_root("roadanomaly", root)
        super().__init__(root, split)
        check_split(split, self.SPLITS, self.name)
        require_root(self.root, "roadanomaly", "frame_list.json and frames/ (optionally inside RoadAnomaly_jpg/)",
                     ROADANOMALY_URL)
        self.layout, top = find_top(self.root)
        self.files = scan_flat_pairs(top, IMAGE_SUFFIXES) if self.layout == "preprocessed" else self._listed(top)
        check_count(len(self.files), resolve_expected(expected, ROADANOMALY_COUNTS, split), top, f"{split} frames")

    def _listed(self, top: Path) -> list[tuple[Path, Path, str]]:
        """The release's frames as ``frame_list.json`` lists them, sorted by name; missing or unlisted files are
        errors."""
        list_path = top / "frame_list.json"
        try:
            listed = json.loads(list_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{list_path}: cannot read the frame list ({exc}); re-extract the dataset") from exc
        if not isinstance(listed, list) or not all(isinstance(n, str) for n in listed):
            raise DatasetError(f"{list_path}: expected a JSON list of image file names")
        frames = top / "frames"
        if not frames.is_dir():
            raise DatasetError(f"{frames}: no such folder; the copy at {top} lacks its frames")
        files, missing = [], []
        for entry in listed:
            image = frames / entry if Path(entry).suffix.lower() in IMAGE_SUFFIXES else frames / f"{entry}.jpg"
            stem = image.stem
            label = frames / f"{stem}.labels" / "labels_semantic.png"
            missing += [str(p.relative_to(self.root)) for p in (image, label) if not p.is_file()]
            files.append((image, label, stem))
        if missing:
            raise DatasetError(
                f"{list_path}: {len(missing)} files of listed frames are missing: {', '.join(missing[:3])}"
                f"{' and more' if len(missing) > 3 else ''}; re-extract the dataset"
            )
        names = {f[0].name for f in files}
        stray = sorted(p.name for p in frames.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.name not in names)
        if stray:
            raise DatasetError(
                f"{frames}: {len(stray)} images are not listed in frame_list.json: {', '.join(stray[:3])}; "
                f"remove the stray files or restore the original frame_list.json"
            )
        if len({f[2] for f in files}) != len(files):
            raise DatasetError(f"{list_path}: frame names are listed more than once")
        return sorted(files, key=lambda f: f[2])

    def _encode_label(self, native: np.ndarray, path: Path) -> np.ndarray:
        what = {"release": "RoadAnomaly labels_semantic (0 background, 2 anomaly)",
                "preprocessed": "PEBAL's RoadAnomaly labels (0 background, 1 anomaly)"}[self.layout]
        check_values(native, NATIVE_VALUES[self.layout], path, what)
        return LUTS[self.layout][native]

    def _instance_label(self, label_path: Path, label: np.ndarray) -> np.ndarray | None:
        """``labels_instance.png`` beside the release's semantic labels (46 of the 60 frames have one): object ids,
        kept on the OoD pixels."""
        path = label_path.parent / "labels_instance.png"
        if self.layout != "release" or not path.is_file():
            return None
        ids = read_label(path)
        if ids.shape != label.shape:
            raise DatasetError(f"{path}: instance labels {ids.shape[1]}x{ids.shape[0]} differ from the semantic labels "
                               f"{label.shape[1]}x{label.shape[0]}; the copy is corrupt, re-extract it")
        return np.where(label == OOD_LABEL, ids, 0).astype(np.int32)

    def category(self, sample_id: str) -> str | None:
        """The release names each frame after its kind of anomaly: animals (31 frames), obstacles (15), cones (8),
        lost (3) and vehicle (3)."""
        kind = re.match(r"[A-Za-z]+", sample_id)
        return kind.group(0).lower() if kind else None

    def describe(self) -> dict:
        return {**super().describe(), "layout": self.layout}
