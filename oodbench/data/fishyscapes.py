"""Fishyscapes (Blum et al. 2019): Lost & Found (``fishyscapes_laf``) and Static (``fishyscapes_static``).

Release layouts, as read by the official ``bdl-benchmark`` (``bdlb/fishyscapes/fishyscapes_tfds.py``):
label files ``<NNNN>_<base id>_labels.png`` (regex ``([0-9]+)_(.+)_labels.png``), values 0 in, 1 OoD, 255 void.
- L&F: the base id is a LostAndFound stem; the RGB frame is ``leftImg8bit/{train,test}/<scene>/<stem>_leftImg8bit.png`` (or .webp/.jpg)
  of a LostAndFound copy (option ``laf_root``).
- Static: the base id is a Cityscapes stem; ``<NNNN>_*rgb.npz`` holds an additive overlay, and the image is
  ``clip(cityscapes leftImg8bit + npz["rgb"], 0, 255)`` (option ``cityscapes_root``). Versions v1, v2, v3 are
  different zips (``fs_val_v1..3.zip``); the version is part of the dataset identity.
Preprocessed layout (SynBoost / PEBAL): ``original/*.png`` + ``labels/*.png``, paired by file name, same values.
meta-ood's layout (``src/dataset/fishyscapes.py``): ``<root>/{LostAndFound,Static}/**/<name>.png`` labels, each with its
image ``<name>.jpg`` beside it, same values.
Without ``laf_root`` / ``cityscapes_root`` the release layout loads labels only (images None), usable for
evaluating precomputed score maps.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError
from .base import (Dataset, Sample, check_count, check_values, hashed_frames, read_label, read_rgb,
                   register_dataset)
from .cityscapes import check_split, default_root, require_root, resolve_expected, scan_flat_pairs
from .lostandfound import IMAGE_SUFFIXES as LAF_IMAGE_SUFFIXES, instance_ids

FISHYSCAPES_URL = "https://fishyscapes.com"
FS_LAF_COUNTS = {"val": 100}
FS_STATIC_COUNTS: dict[str, int] = {}  # 30 validation frames is unverified: no count enforced by default
STATIC_VERSIONS = ("v1", "v2", "v3")
DEFAULT_STATIC_VERSION = "v3"
CANONICAL_VALUES = np.array([0, 1, 255])
LABEL_NAME = re.compile(r"^([0-9]+)_(.+)_labels\.png$")
IMAGES = {"release": "none (labels only)", "preprocessed": "original/", "metaood": "<name>.jpg beside the labels"}
PREPROCESSED_FOLDERS = {"fishyscapes_laf": ("LostAndFound", "FS_LostFound"), "fishyscapes_static": ("Static", "FS_Static")}


def _listing(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


class FishyscapesBase(Dataset):
    label_kind = "ood"
    SPLITS = ("val",)
    COUNTS: dict[str, int] = {}

    def __init__(self, root, split, expected, external_root: Path | None):
        root = default_root(self.name, root)
        super().__init__(root, split)
        check_split(split, self.SPLITS, self.name)
        require_root(self.root, self.name, self.NEEDS, FISHYSCAPES_URL)
        self.external_root = external_root
        self.layout, self.top = self._detect()
        if self.layout == "preprocessed":
            self.files = scan_flat_pairs(self.top, (".png",))
        elif self.layout == "metaood":
            self.files = self._scan_metaood()
        else:
            self.files = self._scan_release()
        check_count(len(self.files), resolve_expected(expected, self.COUNTS, split), self.top, f"{split} frames")

    # -- layouts ---------------------------------------------------------------------------------
    def _detect(self) -> tuple[str, Path]:
        if any(self.root.glob("*_labels.png")):
            return "release", self.root
        for top in (self.root, *(self.root / n for n in PREPROCESSED_FOLDERS[self.name])):
            if (top / "original").is_dir() and (top / "labels").is_dir():
                return "preprocessed", top
        for top in (self.root / PREPROCESSED_FOLDERS[self.name][0], self.root):
            if any(p.with_suffix(".png").is_file() for p in top.rglob("*.jpg")):
                return "metaood", top
        raise DatasetError(
            f"{self.root}: neither the release layout (*_labels.png here), the preprocessed layout "
            f"(original/ + labels/, here or in {'/ or '.join(PREPROCESSED_FOLDERS[self.name])}/) nor meta-ood's "
            f"(<name>.png labels beside <name>.jpg images, here or in {PREPROCESSED_FOLDERS[self.name][0]}/); "
            f"the {self.name} loader expects {self.NEEDS}"
        )

    def _scan_metaood(self) -> list[tuple[Path, Path, str]]:
        """meta-ood's layout: every ``<name>.png`` label under ``top`` (any depth) with ``<name>.jpg`` beside it, sorted
        by name; a label without its image, an image without its label or a name in two folders is an error."""
        labels, images = sorted(self.top.rglob("*.png")), sorted(self.top.rglob("*.jpg"))
        for found, other, what in ((labels, ".jpg", "label"), (images, ".png", "image")):
            alone = [p for p in found if not p.with_suffix(other).is_file()]
            if alone:
                raise DatasetError(f"{self.top}: {len(alone)} {what}s have no <name>{other} beside them (meta-ood's "
                                   f"layout): {_listing([str(p.relative_to(self.top)) for p in alone])}; "
                                   f"re-extract or remove the strays")
        by_name: dict[str, Path] = {}
        for label in labels:
            if label.stem in by_name:
                raise DatasetError(f"{self.top}: frame {label.stem!r} lies in two folders ({by_name[label.stem].parent} "
                                   f"and {label.parent}); keep one copy")
            by_name[label.stem] = label
        return [(by_name[n].with_suffix(".jpg"), by_name[n], n) for n in sorted(by_name)]

    def _release_labels(self) -> list[tuple[Path, str, str]]:
        """(label path, fishyscapes id, base-dataset id) of every ``*_labels.png``, sorted by name."""
        out = []
        for p in sorted(self.root.glob("*_labels.png")):
            m = LABEL_NAME.match(p.name)
            if m is None:
                raise DatasetError(f"{p}: label file name does not match <NNNN>_<base id>_labels.png; remove the stray file")
            out.append((p, m.group(1), m.group(2)))
        return out

    def _scan_release(self) -> list:
        raise NotImplementedError

    # -- identity --------------------------------------------------------------------------------
    def _relative(self, p: Path) -> str:
        for base, tag in ((self.root, ""), (self.external_root, "external:")):
            if base is not None:
                try:
                    return tag + str(p.relative_to(base))
                except ValueError:
                    pass
        return str(p)

    def _identity_paths(self, index: int) -> list[Path]:
        return [p for p in self.files[index][:2] if p is not None]

    def fingerprint(self, deep: bool = False) -> str:
        """sha256 over relative names and sizes (``deep``: contents) of every file a frame is built from,
        including the images read from ``laf_root`` / ``cityscapes_root`` and the overlays."""
        h = hashlib.sha256()
        h.update(self._identity_tag().encode())
        for i in hashed_frames(self, deep):
            for p in self._identity_paths(i):
                h.update(self._relative(p).encode())
                h.update(str(p.stat().st_size).encode())
                if deep:
                    h.update(hashlib.sha256(p.read_bytes()).digest())
        return h.hexdigest()

    def _identity_tag(self) -> str:
        return f"{self.name}:{self.layout}"

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "layout": self.layout}

    def _encode_label(self, native: np.ndarray, path: Path) -> np.ndarray:
        check_values(native, CANONICAL_VALUES, path, f"{self.name} (0 in, 1 OoD, 255 void)")
        return native.astype(np.uint8, copy=False)


@register_dataset("fishyscapes_laf")
class FishyscapesLafDataset(FishyscapesBase):
    """Fishyscapes Lost & Found validation (100 frames). Options (release layout only): ``laf_root``, the
    LostAndFound copy the RGB frames are read from; ``instance_root``, OoDIS's instance labels
    (``fs_lost_found_instance``: ``gtCoarse/{test,train}/[<scene>/]<stem>_gtCoarse_instanceIds.png``), the ground
    truth of the instance metrics."""

    name = "fishyscapes_laf"
    component_track = "anomaly"  # SegmentMeIfYouCan tables FishyLAFAnomaly-val under SegEval-AnomalyTrack
    COUNTS = FS_LAF_COUNTS
    NEEDS = ("the release labels <NNNN>_<LostAndFound stem>_labels.png (RGB from laf_root=<LostAndFound folder>) "
             "or original/*.png + labels/*.png or meta-ood's <name>.png labels beside <name>.jpg images")

    def __init__(self, root: str | Path | None = None, split: str = "val", laf_root: str | Path | None = None,
                 expected: int | bool | None = None, instance_root: str | Path | None = None):
        laf = Path(laf_root).expanduser() if laf_root is not None else None
        if laf is not None:
            require_root(laf, "lostandfound", "leftImg8bit/{train,test}/ (laf_root of fishyscapes_laf)", None)
        self.instance_root = Path(instance_root).expanduser() if instance_root is not None else None
        if self.instance_root is not None:
            require_root(self.instance_root, "fishyscapes_laf", "gtCoarse/{test,train}/ with OoDIS's "
                         "<stem>_gtCoarse_instanceIds.png (instance_root)", None)
        self.instance_files: dict[Path, Path] = {}
        super().__init__(root, split, expected, laf)
        if self.instance_root is not None and self.layout != "release":
            raise DatasetError(f"{self.root}: instance_root pairs OoDIS's instance labels with the release's "
                               f"<NNNN>_<stem>_labels.png files, but this copy has the {self.layout} layout")

    def _scan_release(self) -> list:
        files, missing, no_instances = [], [], []
        for label, fs_id, stem in self._release_labels():
            image = None
            if self.external_root is not None:
                scene = stem.rsplit("_", 2)[0]
                candidates = [self.external_root / "leftImg8bit" / s / scene / f"{stem}{suffix}"
                              for suffix in LAF_IMAGE_SUFFIXES for s in ("train", "test")]  # a png first
                image = next((c for c in candidates if c.is_file()), None)
                if image is None:
                    missing.append(f"{stem}_leftImg8bit.png/.webp/.jpg (for {label.name})")
            files.append((image, label, f"{fs_id}_{stem}"))
            if self.instance_root is not None:
                found = self._instance_file(stem)
                if found is None:
                    no_instances.append(f"{stem}_gtCoarse_instanceIds.png (for {label.name})")
                self.instance_files[label] = found
        if missing:
            raise DatasetError(f"{self.external_root}: {len(missing)} LostAndFound frames are missing from "
                               f"leftImg8bit/{{train,test}}/<scene>/: {_listing(missing)}; point laf_root at the "
                               f"complete LostAndFound copy")
        if no_instances:
            raise DatasetError(f"{self.instance_root}: {len(no_instances)} instance label files are missing from "
                               f"gtCoarse/{{test,train}}/: {_listing(no_instances)}; point instance_root at OoDIS's "
                               f"complete fs_lost_found_instance folder")
        return files

    def _instance_file(self, stem: str) -> Path | None:
        scene = stem.rsplit("_", 2)[0]
        name = f"{stem}_gtCoarse_instanceIds.png"
        candidates = [self.instance_root / "gtCoarse" / s / sub / name for s in ("test", "train") for sub in ("", scene)]
        return next((c for c in candidates if c.is_file()), None)

    def _instance_label(self, label_path: Path, label: np.ndarray) -> np.ndarray | None:
        path = self.instance_files.get(label_path)
        return None if path is None else instance_ids(path, label)

    def _identity_paths(self, index: int) -> list[Path]:
        extra = self.instance_files.get(self.files[index][1])
        return super()._identity_paths(index) + ([extra] if extra is not None else [])

    def _identity_tag(self) -> str:
        return super()._identity_tag() + (":oodis-instances" if self.instance_root is not None else "")

    def _relative(self, p: Path) -> str:
        if self.instance_root is not None and p.is_relative_to(self.instance_root):
            return "instances:" + str(p.relative_to(self.instance_root))
        return super()._relative(p)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "images": "laf_root" if self.external_root else IMAGES[self.layout],
                "instances": "OoDIS instance labels (instance_root)" if self.instance_root else "OoD components"}


@register_dataset("fishyscapes_static")
class FishyscapesStaticDataset(FishyscapesBase):
    """Fishyscapes Static validation. Options: ``version`` (v1, v2, v3; default v3, the current release) and
    ``cityscapes_root`` (the Cityscapes copy the base images are read from, release layout only)."""

    name = "fishyscapes_static"
    COUNTS = FS_STATIC_COUNTS
    NEEDS = ("the release overlays <NNNN>_<Cityscapes stem>_labels.png + <NNNN>_*rgb.npz (base images from "
             "cityscapes_root=<Cityscapes folder>) or original/*.png + labels/*.png or meta-ood's <name>.png labels "
             "beside <name>.jpg images")

    def __init__(self, root: str | Path | None = None, split: str = "val", version: str = DEFAULT_STATIC_VERSION,
                 cityscapes_root: str | Path | None = None, expected: int | bool | None = None):
        if version not in STATIC_VERSIONS:
            raise DatasetError(f"unknown fishyscapes_static version {version!r}; valid versions: {', '.join(STATIC_VERSIONS)}")
        self.version = version
        cs = Path(cityscapes_root).expanduser() if cityscapes_root is not None else None
        if cs is not None:
            require_root(cs, "cityscapes", "leftImg8bit/val/ (cityscapes_root of fishyscapes_static)", None)
        self._overlays: dict[str, Path] = {}
        super().__init__(root, split, expected, cs)

    def _scan_release(self) -> list:
        files, missing = [], []
        npz = sorted(self.root.glob("*rgb.npz"))
        labels = self._release_labels()
        used = set()
        for label, fs_id, stem in labels:
            overlay = next((p for p in npz if p.name.startswith(f"{fs_id}_")), None)
            if overlay is None:
                raise DatasetError(f"{label}: no overlay {fs_id}_*rgb.npz next to it; re-extract the fs_val_{self.version} zip")
            used.add(overlay)
            image = None
            if self.external_root is not None:
                city = stem.split("_")[0]
                candidates = [self.external_root / "leftImg8bit" / s / city / f"{stem}_leftImg8bit.png"
                              for s in ("val", "train", "test")]
                image = next((c for c in candidates if c.is_file()), None)
                if image is None:
                    missing.append(f"{stem}_leftImg8bit.png (for {label.name})")
            sid = f"{fs_id}_{stem}"
            self._overlays[sid] = overlay
            files.append((image, label, sid))
        stray = sorted(p.name for p in npz if p not in used)
        if stray:
            raise DatasetError(f"{self.root}: {len(stray)} overlays have no label file: {_listing(stray)}; remove the "
                               f"stray files or re-extract the fs_val_{self.version} zip")
        if missing:
            raise DatasetError(f"{self.external_root}: {len(missing)} Cityscapes frames are missing from "
                               f"leftImg8bit/val/<city>/: {_listing(missing)}; point cityscapes_root at a complete copy")
        return files

    def __getitem__(self, index: int) -> Sample:  # type: ignore[override]
        image_path, label_path, sid = self.files[index]
        if self.layout != "release" or image_path is None:
            sample = super().__getitem__(index)
        else:
            base = read_rgb(image_path).astype(np.int32)
            overlay_path = self._overlays[sid]
            try:
                with np.load(overlay_path) as z:
                    overlay = np.asarray(z["rgb"])
            except (OSError, ValueError, KeyError) as exc:
                raise DatasetError(f"{overlay_path}: cannot read the 'rgb' overlay ({exc}); re-extract the zip") from exc
            if overlay.shape != base.shape:
                raise DatasetError(f"{overlay_path}: overlay shape {overlay.shape} differs from Cityscapes image "
                                   f"{image_path.name} shape {base.shape}; wrong Cityscapes copy or corrupt overlay")
            image = np.clip(base + overlay.astype(np.int32), 0, 255).astype(np.uint8)
            native = read_label(label_path)
            if native.shape != image.shape[:2]:
                raise DatasetError(f"{label_path}: label size {native.shape[1]}x{native.shape[0]} differs from image "
                                   f"{image_path.name} size {image.shape[1]}x{image.shape[0]}; the copy is corrupt")
            sample = Sample(sid, image, self._encode_label(native, label_path),
                            {"dataset": self.name, "split": self.split, "label_kind": self.label_kind})
        sample.meta["version"] = self.version
        return sample

    def _identity_paths(self, index: int) -> list[Path]:
        paths = super()._identity_paths(index)
        overlay = self._overlays.get(self.files[index][2])
        return paths + ([overlay] if overlay is not None else [])

    def _identity_tag(self) -> str:
        return f"{super()._identity_tag()}:{self.version}"

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "version": self.version}
