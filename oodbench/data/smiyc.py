"""SegmentMeIfYouCan (Chan et al. 2021): RoadAnomaly21 (anomaly track) and RoadObstacle21 (obstacle track).

Layout, as in the official ``road-anomaly-benchmark`` (``datasets/tracks.py``)::

    dataset_AnomalyTrack/images/<fid>.jpg     dataset_AnomalyTrack/labels_masks/<fid>_labels_semantic.png
    dataset_ObstacleTrack/images/<fid>.webp   dataset_ObstacleTrack/labels_masks/<fid>_labels_semantic.png

Labels: 0 usual, 1 anomaly, 255 ignore; like the official code, every other value becomes 255 (ignored).
Split rules (official code): the obstacle track's scene is ``fid.split('_')[0]``; ``test`` is the scenes
curvy-street, one-way-street, gravel, greyasphalt, motorway, paving, darkasphalt, darkasphalt2 (327 frames;
night ``driveway`` and ``snowstorm1/2`` extras excluded); ``validation`` is scene ``validation`` minus the
prefixes validation_19 and validation_21..29 (30 frames). The anomaly track: ``validation`` = ids starting
with ``validation`` (10), ``test`` = every other frame (100, named by category: airplane0000 .. zebra0001).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DatasetError
from .base import IGNORE_LABEL, Dataset, check_count, register_dataset
from .cityscapes import check_split, default_root, require_root, resolve_expected

SMIYC_URL = "https://segmentmeifyoucan.com/datasets"
LUT = np.full(256, IGNORE_LABEL, dtype=np.uint8)
LUT[0], LUT[1] = 0, 1

OBSTACLE_TEST_SCENES = ("curvy-street", "one-way-street", "gravel", "greyasphalt", "motorway", "paving",
                        "darkasphalt", "darkasphalt2")
OBSTACLE_EXTRA_SCENES = ("driveway", "snowstorm1", "snowstorm2")  # night, snowstorm: not in the test split
OBSTACLE_VALIDATION_EXCLUDED = ("validation_19", *(f"validation_{i}" for i in range(21, 30)))

TRACKS = {
    "smiyc_roadanomaly21": dict(folder="dataset_AnomalyTrack", suffix=".jpg", counts={"validation": 10, "test": 100}),
    "smiyc_roadobstacle21": dict(folder="dataset_ObstacleTrack", suffix=".webp", counts={"validation": 30, "test": 327}),
}


def _anomaly_split(fid: str) -> str | None:
    return "validation" if fid.startswith("validation") else "test"


def _obstacle_split(fid: str) -> str | None:
    scene = fid.split("_")[0]
    if scene == "validation":
        return None if fid.startswith(OBSTACLE_VALIDATION_EXCLUDED) else "validation"
    if scene in OBSTACLE_TEST_SCENES:
        return "test"
    if scene in OBSTACLE_EXTRA_SCENES:
        return None
    raise ValueError(scene)


class SmiycDataset(Dataset):
    """One SegmentMeIfYouCan track; ``validation`` has labels, ``test`` is images only (label None)."""

    label_kind = "ood"
    SPLITS = ("validation", "test")
    validation_split = "validation"

    def __init__(self, name: str, root: str | Path | None = None, split: str = "validation",
                 expected: int | bool | None = None):
        track = TRACKS[name]
        self.name = name
        self.component_track = "obstacle" if name == "smiyc_roadobstacle21" else "anomaly"
        root = default_root("smiyc", root)
        super().__init__(root, split)
        check_split(split, self.SPLITS, name)
        folder, suffix = track["folder"], track["suffix"]
        if (self.root / "images").is_dir() and self.root.name == folder:
            top = self.root  # root given as the track folder itself
        else:
            require_root(self.root, name, f"{folder}/images/<fid>{suffix} and {folder}/labels_masks/", SMIYC_URL)
            top = self.root / folder
        image_dir, label_dir = top / "images", top / "labels_masks"
        if not image_dir.is_dir():
            raise DatasetError(f"{image_dir}: no such folder; the {name} loader expects {folder}/images/<fid>{suffix} "
                               f"under {self.root}")
        rule = _anomaly_split if name == "smiyc_roadanomaly21" else _obstacle_split
        files = []
        for image in sorted(image_dir.glob(f"*{suffix}")):
            fid = image.name[: -len(suffix)]
            try:
                where = rule(fid)
            except ValueError as exc:
                raise DatasetError(f"{image}: unknown scene {exc.args[0]!r} in the file name; {name} knows the scenes "
                                   f"{', '.join(OBSTACLE_TEST_SCENES + OBSTACLE_EXTRA_SCENES)}, validation") from None
            if where != split:
                continue
            label = None
            if split == "validation":
                label = label_dir / f"{fid}_labels_semantic.png"
                if not label.is_file():
                    raise DatasetError(f"{label}: missing label of validation frame {image.name}; re-extract "
                                       f"{folder}/labels_masks")
            files.append((image, label, fid))
        if split == "validation" and label_dir.is_dir():
            ids = {f[2] for f in files}
            orphans = sorted(p.name for p in label_dir.glob("*_labels_semantic.png")
                             if p.name[: -len("_labels_semantic.png")] not in ids
                             and rule_safe(rule, p.name[: -len("_labels_semantic.png")]) == "validation")
            if orphans:
                raise DatasetError(f"{label_dir}: {len(orphans)} validation labels have no image ({suffix}): "
                                   f"{', '.join(orphans[:3])}; re-extract {folder}/images")
        self.files = files
        check_count(len(files), resolve_expected(expected, track["counts"], split), image_dir, f"{split} frames")

    def _encode_label(self, native: np.ndarray, path: Path) -> np.ndarray:
        # Official rule: 0 usual, 1 anomaly, everything else (255 and any other value) ignored.
        return LUT[native]


def rule_safe(rule, fid: str) -> str | None:
    try:
        return rule(fid)
    except ValueError:
        return None


@register_dataset("smiyc_roadanomaly21")
def smiyc_roadanomaly21(root=None, split: str = "validation", expected: int | bool | None = None) -> SmiycDataset:
    return SmiycDataset("smiyc_roadanomaly21", root, split, expected)


@register_dataset("smiyc_roadobstacle21")
def smiyc_roadobstacle21(root=None, split: str = "validation", expected: int | bool | None = None) -> SmiycDataset:
    return SmiycDataset("smiyc_roadobstacle21", root, split, expected)
