"""LostAndFound (Pinggera et al. 2016): Cityscapes-style tree with coarse labelIds, mapped to the canonical
0/1/255 labels with either the SegmentMeIfYouCan or the meta-ood convention."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DatasetError
from .base import (IGNORE_LABEL, ID_LABEL, OOD_LABEL, Dataset, Sample, check_count, check_values, read_label,
                   register_dataset)
from .cityscapes import check_split, default_root, require_root, resolve_expected, scan_pairs

LAF_URL = "https://www.6d-vision.com"
LAF_COUNTS = {"train": 1036, "test": 1203, "testValid": 1186, "testNoKnown": 1043}
LAF_LABEL_IDS = np.arange(44)
NON_HAZARD_IDS = (31, 33, 34, 36, 37, 38, 39)
# The release's PNG frames, or converted copies (the SegmentMeIfYouCan loader also reads webp and jpg).
IMAGE_SUFFIXES = tuple(f"_leftImg8bit.{ext}" for ext in ("png", "webp", "jpg"))

# SegmentMeIfYouCan subsets of the test split: indices into the sorted full list of 1203 frames whose
# labels are empty, and the id prefixes of frames with known classes (children, bicycles).
EMPTY_TEST_INDICES = (17, 37, 55, 72, 91, 110, 129, 153, 174, 197, 218, 353, 490, 618, 686, 792, 793)
KNOWN_CLASS_PREFIXES = ("15_Rechbergstr_Deckenpfronn", "01_Hanns_Klemm_Str_45_000006",
                        "01_Hanns_Klemm_Str_45_000007", "10_Schlossberg_9_000004")


def _mapping_lut(mapping: str) -> np.ndarray:
    lut = np.full(256, IGNORE_LABEL, dtype=np.uint8)
    lut[1] = ID_LABEL
    lut[2:44] = OOD_LABEL
    if mapping == "metaood":
        lut[list(NON_HAZARD_IDS)] = IGNORE_LABEL
    return lut


MAPPINGS = {"smiyc": _mapping_lut("smiyc"), "metaood": _mapping_lut("metaood")}
# meta-ood's train id of the random non-hazards is 0: neither in-distribution nor OoD for its pixel metrics, but
# kept in its segments, where a segment on one is a false positive (``metaseg/metrics.pyx`` clears only 255).
SEGMENT_LUTS = {"metaood": np.where(np.isin(np.arange(256), NON_HAZARD_IDS), ID_LABEL,
                                     MAPPINGS["metaood"]).astype(np.uint8)}


@register_dataset("lostandfound")
class LostAndFoundDataset(Dataset):
    """LostAndFound ``leftImg8bit`` + ``gtCoarse`` labelIds (0 outside the region of interest, 1 road,
    2..43 objects). ``mapping``: ``smiyc`` (every object OoD) or ``metaood`` (random non-hazards ignored by the
    pixel metrics, in-distribution for the meta stage's segments, as in meta-ood)."""

    name = "lostandfound"
    component_track = "obstacle"  # SegmentMeIfYouCan evaluates LostAndFound in its obstacle track
    label_kind = "ood"
    SPLITS = ("train", "test", "testValid", "testNoKnown")

    def __init__(self, root: str | Path | None = None, split: str = "test", mapping: str = "smiyc",
                 expected: int | bool | None = None):
        root = default_root("lostandfound", root)
        super().__init__(root, split)
        check_split(split, self.SPLITS, self.name)
        if mapping not in MAPPINGS:
            raise DatasetError(f"unknown LostAndFound mapping {mapping!r}; valid mappings: {', '.join(MAPPINGS)}")
        self.mapping = mapping
        self._lut = MAPPINGS[mapping]
        require_root(self.root, "lostandfound", "leftImg8bit/ and gtCoarse/", LAF_URL)
        disk_split = "train" if split == "train" else "test"
        image_dir = self.root / "leftImg8bit" / disk_split
        files = scan_pairs(self.root, image_dir, self.root / "gtCoarse" / disk_split,
                           IMAGE_SUFFIXES, ("_gtCoarse_labelIds.png",))
        if split in ("testValid", "testNoKnown"):
            files = self._subset(files, split, image_dir)
        self.files = files
        check_count(len(files), resolve_expected(expected, LAF_COUNTS, split), image_dir, f"{split} frames")

    @staticmethod
    def _subset(files: list, split: str, image_dir: Path) -> list:
        """The SegmentMeIfYouCan subsets; their index rules only hold on the complete 1203-frame test list."""
        if len(files) != LAF_COUNTS["test"]:
            raise DatasetError(
                f"{image_dir}: found {len(files)} test frames, but the {split} subset is defined by indices into "
                f"the complete LostAndFound test list of {LAF_COUNTS['test']} frames; use split='test' on a "
                f"partial copy, or point root at the complete dataset"
            )
        drop = set(EMPTY_TEST_INDICES)
        kept = [f for i, f in enumerate(files) if i not in drop]
        if split == "testNoKnown":
            kept = [f for f in kept if not f[2].startswith(KNOWN_CLASS_PREFIXES)]
        return kept

    def _encode_label(self, native: np.ndarray, path: Path) -> np.ndarray:
        check_values(native, LAF_LABEL_IDS, path, "LostAndFound labelIds")
        return self._lut[native]

    def _segment_label(self, native: np.ndarray, label: np.ndarray) -> np.ndarray | None:
        lut = SEGMENT_LUTS.get(self.mapping)
        return None if lut is None else lut[native]

    def _instance_label(self, label_path: Path, label: np.ndarray) -> np.ndarray | None:
        """``<stem>_gtCoarse_instanceIds.png`` beside the labelIds, where the copy has it: each distinct value on the
        OoD pixels is one object (whatever the id encoding)."""
        return instance_ids(label_path.with_name(label_path.name.replace("_labelIds.png", "_instanceIds.png")), label)

    def __getitem__(self, index: int) -> Sample:  # type: ignore[override]
        sample = super().__getitem__(index)
        sample.meta["mapping"] = self.mapping
        return sample

    def describe(self) -> dict:
        return {**super().describe(), "mapping": self.mapping}


def instance_ids(path: Path, label: np.ndarray) -> np.ndarray | None:
    """A LostAndFound-style instanceIds map on the OoD pixels of ``label`` (None where ``path`` does not exist)."""
    if not path.is_file():
        return None
    ids = read_label(path)
    if ids.shape != label.shape:
        raise DatasetError(f"{path}: instance ids {ids.shape[1]}x{ids.shape[0]} differ from the labels "
                           f"{label.shape[1]}x{label.shape[0]}; the copy is corrupt, re-extract it")
    return np.where(label == OOD_LABEL, ids, 0).astype(np.int32)
