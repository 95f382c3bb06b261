"""COCO as OoD proxy in the layout meta-ood's ``preparation/prepare_coco_segmentation.py`` writes: one mask
``annotations/ood_seg_<split>2017/<12-digit id>.png`` (254 on annotated objects, 0 elsewhere) per kept
``<split>2017/<id>.jpg``."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DatasetError
from .base import Dataset, check_count, check_values, register_dataset
from .cityscapes import check_split, default_root, require_root, resolve_expected

COCO_URL = "https://cocodataset.org"
PROXY_IN, PROXY_OUT = 0, 254
PROXY_VALUES = np.array([PROXY_IN, PROXY_OUT])


@register_dataset("coco_proxy")
class CocoProxyDataset(Dataset):
    """COCO proxy images with masks in the native 0/254 encoding (``label_kind="proxy"``). The masks define the
    set: COCO images that the preparation filtered out (road classes, small images) have no mask and are
    skipped; a mask without its image is an error."""

    name = "coco_proxy"
    label_kind = "proxy"
    SPLITS = ("train", "val")
    YEAR = "2017"

    def __init__(self, root: str | Path | None = None, split: str = "train", expected: int | bool | None = None):
        root = default_root("coco_proxy", root)
        super().__init__(root, split)
        check_split(split, self.SPLITS, self.name)
        require_root(self.root, "coco_proxy", f"{split}{self.YEAR}/ and annotations/ood_seg_{split}{self.YEAR}/", COCO_URL)
        image_dir = self.root / f"{split}{self.YEAR}"
        mask_dir = self.root / "annotations" / f"ood_seg_{split}{self.YEAR}"
        for d in (image_dir, mask_dir):
            if not d.is_dir():
                hint = " (run meta-ood's preparation step that writes the masks)" if d == mask_dir else ""
                raise DatasetError(f"{d}: no such folder; the copy at {self.root} lacks it{hint}")
        masks = sorted(mask_dir.glob("*.png"))
        if not masks:
            raise DatasetError(f"{mask_dir}: no proxy masks (<id>.png); run meta-ood's preparation step that writes "
                               f"them (preparation/prepare_coco_segmentation.py), or point root at a prepared copy")
        orphans = [m for m in masks if not (image_dir / f"{m.stem}.jpg").is_file()]
        if orphans:
            shown = ", ".join(m.name for m in orphans[:3]) + (f" and {len(orphans) - 3} more" if len(orphans) > 3 else "")
            raise DatasetError(f"{image_dir}: {len(orphans)} masks in {mask_dir.name} have no image <id>.jpg: {shown}")
        self.files = [(image_dir / f"{m.stem}.jpg", m, m.stem) for m in masks]
        check_count(len(self.files), resolve_expected(expected, {}, split), mask_dir, f"{split} proxy masks")

    def _encode_label(self, native: np.ndarray, path: Path) -> np.ndarray:
        check_values(native, PROXY_VALUES, path, "meta-ood COCO proxy (0/254)")
        return native.astype(np.uint8)
