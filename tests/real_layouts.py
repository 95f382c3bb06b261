"""Writers of small dataset copies in the real on-disk layouts (folder and file names, native label values),
shared by the loader tests and the end-to-end CLI tests, and a method whose segments on ``laf_label`` objects are known."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from oodbench.methods import Method, MethodOutput, SegmentStage
from oodbench.segments.features import normalized_entropy

from layout_files import random_rgb, write_png

H, W = 32, 64


def label_map(values=(0, 1), h: int = H, w: int = W) -> np.ndarray:
    """Background ``values[0]`` with one 4x10 box per further value."""
    lab = np.full((h, w), values[0], np.uint8)
    for k, v in enumerate(values[1:]):
        lab[4 + 6 * k: 8 + 6 * k, 10:20] = v
    return lab


def save_image(path: Path, array: np.ndarray) -> Path:
    """JPEG/WebP/PNG by suffix, as the datasets ship them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jpg":
        Image.fromarray(array).save(path, quality=95)
    elif path.suffix == ".webp":
        Image.fromarray(array).save(path, lossless=True)
    else:
        Image.fromarray(array).save(path)
    return path


# -- LostAndFound: leftImg8bit/<split>/<scene>/<stem>_leftImg8bit.png + gtCoarse/..._gtCoarse_labelIds.png ----
def laf_label(values: list[int], h: int = 8, w: int = 16) -> np.ndarray:
    """0 above the road (outside the region of interest), 1 road, one 2x2 object per labelId in ``values``."""
    lab = np.zeros((h, w), np.uint8)
    lab[h // 2:] = 1
    for k, v in enumerate(values):
        lab[h // 2 + 1: h // 2 + 3, 2 + 3 * k: 4 + 3 * k] = v
    return lab


class LafObjectBlobs(Method):
    """Uniform (maximal entropy) probabilities on the first two 2x2 objects of ``laf_label`` in an 8x16 frame (rows
    5-6, columns 2-3 and 5-6), confident elsewhere: the paper's segment stage forms one segment on each object."""

    name = "laf_object_blobs"
    provides_probs = True
    segment_stage = SegmentStage(threshold=0.7)

    def predict(self, images):
        probs = np.zeros((len(images), 3, 8, 16), np.float32)
        probs[:, 0] = 1
        for x in (2, 5):
            probs[:, :, 5:7, x:x + 2] = 1 / 3
        return MethodOutput(np.stack([normalized_entropy(p) for p in probs]).astype(np.float32), probs)


def write_laf(root: Path, split: str, stems: dict[str, list[int]], h: int = 8, w: int = 16) -> Path:
    for i, (stem, values) in enumerate(stems.items()):
        scene = "_".join(stem.split("_")[:-2])
        write_png(root / "leftImg8bit" / split / scene / f"{stem}_leftImg8bit.png", random_rgb(i, h, w))
        write_png(root / "gtCoarse" / split / scene / f"{stem}_gtCoarse_labelIds.png", laf_label(values, h, w))
    return root


# -- RoadAnomaly: frame_list.json + frames/<name>.jpg + frames/<name>.labels/labels_semantic.png ----------
RA_NAMES = ["animals01_Guardian_2017", "boat_trailer02", "cones03"]


def write_roadanomaly(top: Path, names=RA_NAMES) -> Path:
    (top / "frames").mkdir(parents=True, exist_ok=True)
    (top / "frame_list.json").write_text(json.dumps([f"{n}.jpg" for n in names]))
    for i, n in enumerate(names):
        save_image(top / "frames" / f"{n}.jpg", random_rgb(i, H, W))
        write_png(top / "frames" / f"{n}.labels" / "labels_semantic.png", label_map((0, 2)))
        write_png(top / "frames" / f"{n}.labels" / "labels_instance.png", label_map((0, 7)))
    return top


# -- SegmentMeIfYouCan: dataset_<Track>/images/<id>.<ext> + labels_masks/<id>_labels_semantic.png ---------
ANOMALY_VAL = ["validation0000", "validation0001"]
ANOMALY_TEST = ["airplane0000", "boat_trailer0000", "zebra0001"]  # test ids are category names
OBSTACLE_VAL = ["validation_1", "validation_2"]
OBSTACLE_EXCLUDED = ["validation_19", "validation_25"]
OBSTACLE_TEST = ["curvy-street_000001", "gravel_0003", "darkasphalt2_dog_0000"]
OBSTACLE_EXTRA = ["driveway_0001", "snowstorm1_00_000000"]


def write_smiyc(root: Path) -> Path:
    for i, fid in enumerate(ANOMALY_VAL + ANOMALY_TEST):
        save_image(root / "dataset_AnomalyTrack/images" / f"{fid}.jpg", random_rgb(i, H, W))
    for fid in ANOMALY_VAL:
        write_png(root / "dataset_AnomalyTrack/labels_masks" / f"{fid}_labels_semantic.png", label_map((255, 0, 1, 7)))
    for i, fid in enumerate(OBSTACLE_VAL + OBSTACLE_EXCLUDED + OBSTACLE_TEST + OBSTACLE_EXTRA):
        save_image(root / "dataset_ObstacleTrack/images" / f"{fid}.webp", random_rgb(i, H, W))
    for fid in OBSTACLE_VAL + OBSTACLE_EXCLUDED:
        write_png(root / "dataset_ObstacleTrack/labels_masks" / f"{fid}_labels_semantic.png", label_map((255, 0, 1)))
    return root


# -- Fishyscapes Lost & Found release: <index>_<LostAndFound stem>_labels.png, images from a LAF root -------
FS_STEMS = {"0000_04_Maurener_Weg_8_000000_000030": "test", "0001_01_Hanns_Klemm_Str_45_000002_000060": "train"}


def write_fs_laf(root: Path, laf: Path) -> tuple[Path, Path]:
    for i, (name, laf_split) in enumerate(FS_STEMS.items()):
        stem = name.split("_", 1)[1]
        scene = stem.rsplit("_", 2)[0]
        write_png(root / f"{name}_labels.png", label_map((0, 1, 255)))
        write_png(laf / "leftImg8bit" / laf_split / scene / f"{stem}_leftImg8bit.png", random_rgb(i, H, W))
    return root, laf


def write_preprocessed(top: Path, names, shape=(H, W)) -> Path:
    """The preprocessed Fishyscapes layout: ``original/<id>.png`` + ``labels/<id>.png``."""
    for i, n in enumerate(names):
        write_png(top / "original" / f"{n}.png", random_rgb(i, *shape))
        write_png(top / "labels" / f"{n}.png", label_map((0, 1, 255), *shape))
    return top


def write_metaood_fishyscapes(top: Path, names, shape=(H, W)) -> Path:
    """meta-ood's Fishyscapes layout (src/dataset/fishyscapes.py walks ``top`` for ``<name>.png`` and opens
    ``<name>.jpg`` beside each): labels 0/1/255; a name may sit in a subfolder."""
    for i, n in enumerate(names):
        save_image(top / f"{n}.jpg", random_rgb(i, *shape))
        write_png(top / f"{n}.png", label_map((0, 1, 255), *shape))
    return top


# -- Fishyscapes Static: <index>_<Cityscapes stem>_rgb.npz overlays + _labels.png, base images from Cityscapes -
STATIC = {"0000": "frankfurt_000000_000294", "0001": "lindau_000001_000019"}


def write_static(root: Path, cityscapes: Path) -> tuple[Path, Path]:
    for i, (fs_id, stem) in enumerate(STATIC.items()):
        city = stem.split("_")[0]
        write_png(cityscapes / "leftImg8bit/val" / city / f"{stem}_leftImg8bit.png", np.full((H, W, 3), 100 + i, np.uint8))
        overlay = np.zeros((H, W, 3), np.int16)
        overlay[4:8, 10:20] = 200
        overlay[0, 0] = -150
        root.mkdir(parents=True, exist_ok=True)
        np.savez(root / f"{fs_id}_{stem}_rgb.npz", rgb=overlay)
        write_png(root / f"{fs_id}_{stem}_labels.png", label_map((0, 1, 255)))
    return root, cityscapes


# -- Hugging Face: a DatasetDict saved with save_to_disk, image + mask columns in RoadAnomaly's encoding ----
def write_huggingface(path: Path, n: int = 3) -> Path:
    """Skips the calling test when the ``datasets`` package (extra ``hf``) is not installed."""
    import pytest

    hf = pytest.importorskip("datasets")
    if not hasattr(hf, "Features"):  # only the repository's datasets/ folder, not the package
        pytest.skip("the `datasets` package is not installed")
    images = [Image.fromarray(random_rgb(i, H, W)) for i in range(n)]
    labels = [Image.fromarray(label_map((0, 2))) for _ in range(n)]
    features = hf.Features({"image": hf.Image(), "mask": hf.Image()})
    data = hf.Dataset.from_dict({"image": images, "mask": labels}, features=features)
    hf.DatasetDict({"test": data}).save_to_disk(str(path))
    return path
