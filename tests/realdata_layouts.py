"""The real material of ``../shared/realdata/`` in the layouts the trainer reads (Cityscapes with the 2 labelled
frames; meta-ood's COCO-proxy layout with the 3 VOC objects) and VOC objects pasted into held-out frames. Shared by
``test_realdata_training.py`` and ``tools/realdata_entmax.py``; it writes only where it is told and needs no pytest.

Proxies: each VOC image cut to its object's bounding box and scaled so the object covers OBJECT_AREA pixels, mask 254
on object pixels and 0 elsewhere. VOC's void band (boundary, (224,224,192)) becomes 0, so paste mode never pastes it
and never makes it a target."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

TRAIN_LABELS = {"frankfurt_000001_058914": "frankfurt_000001_058914_gtFine_labelTrainIds_fromcolor.png",
                "frankfurt_000000_000294": "frankfurt_000000_000294_gtFine_labelTrainIds_256x128.png"}
VAL_FRAME = "frankfurt_000001_058914"
EVAL_FRAMES = ("frankfurt_000000_000576", "frankfurt_000000_002196", "frankfurt_000000_003025")  # held out, unlabelled
OBJECTS = ("vainf_1", "vainf_23", "vainf_114")  # aeroplane, sheep, bird
VOID = (224, 224, 192)  # VOC's boundary/void colour: neither object nor background
OBJECT_AREA = 4000  # pixels of each pasted object
EVAL_PLACES = ((380, 300), (600, 290), (200, 250))  # top-left (x, y) of each object's box in its 1024x512 frame


def voc_object(realdata: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A VOC image cut to its object's bounding box and scaled (image bilinear, mask nearest) so the object covers
    about OBJECT_AREA pixels, and the object mask: pixels of a class colour, not background (black) nor void."""
    image = Image.open(realdata / "ood_objects" / f"{name}_image.png").convert("RGB")
    target = np.asarray(Image.open(realdata / "ood_objects" / f"{name}_target.png").convert("RGB"))
    mask = target.any(-1) & ~np.all(target == VOID, -1)
    ys, xs = np.nonzero(mask)
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    scale = (OBJECT_AREA / mask.sum()) ** 0.5
    size = (round((box[2] - box[0]) * scale), round((box[3] - box[1]) * scale))
    image = np.asarray(image.crop(box).resize(size, Image.BILINEAR))
    mask = np.asarray(Image.fromarray(mask[box[1]:box[3], box[0]:box[2]]).resize(size, Image.NEAREST))
    return image, mask


def write_layouts(realdata: Path, base: Path) -> tuple[Path, Path]:
    """Cityscapes' layout (train: both labelled frames, their labels scaled to the frame with NEAREST; val: 058914)
    and meta-ood's COCO-proxy layout, under ``base``."""
    cs, coco = base / "cityscapes", base / "coco"
    for split, stems in (("train", list(TRAIN_LABELS)), ("val", [VAL_FRAME])):
        images, labels = cs / "leftImg8bit" / split / "frankfurt", cs / "gtFine" / split / "frankfurt"
        images.mkdir(parents=True, exist_ok=True)
        labels.mkdir(parents=True, exist_ok=True)
        for stem in stems:
            shutil.copyfile(realdata / "cityscapes" / f"{stem}_leftImg8bit.png", images / f"{stem}_leftImg8bit.png")
            size = Image.open(images / f"{stem}_leftImg8bit.png").size
            Image.open(realdata / "cityscapes" / TRAIN_LABELS[stem]).resize(size, Image.NEAREST).save(
                labels / f"{stem}_gtFine_labelTrainIds.png")
    (coco / "train2017").mkdir(parents=True, exist_ok=True)
    (coco / "annotations" / "ood_seg_train2017").mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(OBJECTS):
        image, mask = voc_object(realdata, name)
        Image.fromarray(image).save(coco / "train2017" / f"{i + 1:012d}.jpg", quality=95)
        Image.fromarray(np.where(mask, 254, 0).astype(np.uint8)).save(
            coco / "annotations" / "ood_seg_train2017" / f"{i + 1:012d}.png")
    return cs, coco


def eval_frames(realdata: Path, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The held-out frames resized to ``size`` (width, height), the same with one VOC object pasted at a fixed
    place, and masks of the pasted pixels: (3,H,W,3), (3,H,W,3), (3,H,W)."""
    clean, frames, masks = [], [], []
    for stem, name, (x0, y0) in zip(EVAL_FRAMES, OBJECTS, EVAL_PLACES):
        frame = np.array(Image.open(realdata / "cityscapes" / f"{stem}_leftImg8bit.png").convert("RGB")
                         .resize(size, Image.BILINEAR))
        image, mask = voc_object(realdata, name)
        ys, xs = np.nonzero(mask)
        if ys.max() + y0 >= size[1] or xs.max() + x0 >= size[0]:
            raise ValueError(f"{name} does not fit at {(x0, y0)} in a {size} frame")
        clean.append(frame.copy())
        frame[ys + y0, xs + x0] = image[ys, xs]
        pasted = np.zeros(frame.shape[:2], bool)
        pasted[ys + y0, xs + x0] = True
        frames.append(frame)
        masks.append(pasted)
    return np.stack(clean), np.stack(frames), np.stack(masks)
