"""Helpers for tests that write dataset fixtures in the real on-disk layouts."""
from pathlib import Path

import numpy as np
from PIL import Image


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def random_rgb(seed: int, h: int, w: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def write_red_scenes(root: Path, w: int, distractor: tuple[slice, slice], ignore_rows: int = 0,
                     count: int = 3) -> Path:
    """A `folder` dataset whose OoD object is the reddest thing in each frame: a 10x10 object (label 1) moving one
    pixel per frame, a less red in-distribution distractor, and ``ignore_rows`` top rows labelled ignore (255)."""
    for i in range(count):
        image = np.full((32, w, 3), 25, np.uint8)
        label = np.zeros((32, w), np.uint8)
        image[5:15, 5 + i:15 + i, 0], label[5:15, 5 + i:15 + i] = 230, 1
        image[distractor + (0,)] = 200
        label[:ignore_rows] = 255
        write_png(root / "images" / f"f{i}.png", image)
        write_png(root / "labels" / f"f{i}.png", label)
    return root


# Cityscapes labelId -> colour of the fixture scenes written by write_cityscapes_split (sky, building, road, car).
_SCENE_COLOURS = {23: (70, 130, 180), 11: (70, 70, 70), 7: (128, 64, 128), 26: (0, 0, 142)}


def write_cityscapes_split(root: Path, split: str, count: int, h: int = 64, w: int = 128, seed: int = 0,
                           city: str = "aachen") -> Path:
    """``count`` frames in the real layout (leftImg8bit/, gtFine/ ``_labelIds``): sky over buildings over road,
    a car at a random place, unlabelled (id 0) specks; colours plus noise, so a small network can learn them."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        ids = np.full((h, w), 7, np.uint8)
        sky, road = int(rng.integers(h // 5, h // 3)), int(rng.integers(h // 2, 2 * h // 3))
        ids[:sky], ids[sky:road] = 23, 11
        cy, cx = int(rng.integers(road, h - h // 8)), int(rng.integers(0, w - w // 6))
        ids[cy:cy + h // 8, cx:cx + w // 6] = 26
        ids[rng.random((h, w)) < 0.02] = 0
        image = np.zeros((h, w, 3), np.int16)
        for label_id, colour in _SCENE_COLOURS.items():
            image[ids == label_id] = colour
        image = np.clip(image + rng.integers(-20, 21, (h, w, 3)), 0, 255).astype(np.uint8)
        stem = f"{city}_{i:06d}_000019"
        write_png(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", image)
        write_png(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", ids)
    return root


def write_coco_proxy_split(root: Path, count: int, h: int = 48, w: int = 64, seed: int = 0, split: str = "train") -> Path:
    """``count`` COCO proxies in meta-ood's layout: ``<split>2017/<12-digit id>.jpg`` and a 0/254 mask
    ``annotations/ood_seg_<split>2017/<id>.png`` with one rectangular object."""
    rng = np.random.default_rng(seed)
    (root / f"{split}2017").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image_id = f"{9 + 16 * i:012d}"
        mask = np.zeros((h, w), np.uint8)
        y, x = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
        mask[y:y + h // 3, x:x + w // 3] = 254
        image = random_rgb(seed + i, h, w)
        image[mask == 254] = (230, 200, 20)
        Image.fromarray(image).save(root / f"{split}2017" / f"{image_id}.jpg", quality=95)
        write_png(root / "annotations" / f"ood_seg_{split}2017" / f"{image_id}.png", mask)
    return root


def write_training_roots(base: Path) -> tuple[Path, Path]:
    """The trainer's small fixtures: Cityscapes train (8 frames) and val (3, frankfurt), and 5 COCO proxies."""
    cs = write_cityscapes_split(base / "cityscapes", "train", 8, seed=0)
    write_cityscapes_split(cs, "val", 3, seed=1, city="frankfurt")
    return cs, write_coco_proxy_split(base / "coco", 5, seed=2)
