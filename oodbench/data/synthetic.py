"""The embedded synthetic benchmark: small procedurally drawn road scenes written in the exact on-disk layouts
of Cityscapes, meta-ood's COCO proxy set and LostAndFound, so the real loaders and the whole pipeline run
end to end without downloads. Deterministic per seed; versioned; written atomically."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DatasetError
from ..paths import home
from .base import register_dataset
from .cityscapes import CityscapesDataset, check_split
from .coco_proxy import CocoProxyDataset
from .lostandfound import LostAndFoundDataset
from .synthetic_scenes import H, W, draw_proxy, draw_scene, finish, with_anomalies

SYNTHETIC_VERSION = "1"
COUNTS = {"cityscapes/train": 240, "cityscapes/val": 30, "coco/train": 120,
          "lostandfound/train": 30, "lostandfound/test": 60}
CITIES = {"train": ("synthcity", "synthburg", "synthdorf"), "val": ("synthheim",)}
LAF_SCENES = {"train": ("01_Synth_Str_1", "03_Synth_Weg_3"),
              "test": ("02_Synth_Str_2", "04_Synth_Weg_4", "05_Synth_Platz_5")}
FRAMES_PER_SEQUENCE = 5
NO_ANOMALY_EVERY = 15  # frames with index % 15 == 14 carry no anomaly

_TREE_CODES = {"cityscapes/train": 0, "cityscapes/val": 1, "coco/train": 2, "lostandfound/train": 3, "lostandfound/test": 4}


def _save(path: Path, array: np.ndarray, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)


def _write_frame(dest: Path, seed: int, key: str, i: int) -> set[str]:
    """Draw and write frame ``i`` of tree/split ``key``; its own seed makes it independent of the others."""
    rng = np.random.default_rng([seed, _TREE_CODES[key], i])
    tree, split = key.split("/")
    if tree == "coco":
        img, mask, kinds = draw_proxy(rng)
        stem = f"{i + 1:012d}"
        _save(dest / "coco" / f"{split}2017" / f"{stem}.jpg", finish(rng, img), quality=95)
        _save(dest / "coco" / "annotations" / f"ood_seg_{split}2017" / f"{stem}.png", mask)
        return kinds
    img, lab, kinds = draw_scene(rng)
    if tree == "cityscapes":
        city = CITIES[split][i % len(CITIES[split])]
        stem = f"{city}_{i // len(CITIES[split]):06d}_000019"
        _save(dest / tree / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", finish(rng, img), compress_level=1)
        _save(dest / tree / "gtFine" / split / city / f"{stem}_gtFine_labelTrainIds.png", lab)
        return kinds
    n = 0 if i % NO_ANOMALY_EVERY == NO_ANOMALY_EVERY - 1 else int(rng.integers(1, 4))
    ids, kinds = with_anomalies(rng, img, lab, n)
    scene = LAF_SCENES[split][i % len(LAF_SCENES[split])]
    j = i // len(LAF_SCENES[split])
    stem = f"{scene}_{j // FRAMES_PER_SEQUENCE:06d}_{10 * (j % FRAMES_PER_SEQUENCE + 1):06d}"
    _save(dest / tree / "leftImg8bit" / split / scene / f"{stem}_leftImg8bit.png", finish(rng, img), compress_level=1)
    _save(dest / tree / "gtCoarse" / split / scene / f"{stem}_gtCoarse_labelIds.png", ids)
    return kinds


def tree_hash(root: Path) -> str:
    """sha256 over every file's relative path and content hash, manifest excluded."""
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file() and q.name != "manifest.json"):
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def _write_frames(dest: Path, seed: int, jobs: list[tuple[str, int]]) -> dict[str, set[str]]:
    kinds: dict[str, set[str]] = {}
    for key, i in jobs:
        kinds.setdefault(key.split("/")[0], set()).update(_write_frame(dest, seed, key, i))
    return kinds


def generate_synthetic(dest: str | Path, seed: int = 0, counts: dict[str, int] | None = None,
                       workers: int | None = None) -> dict:
    """Write the three trees into ``dest`` (not atomic; see ``ensure_synthetic``) and ``manifest.json`` last.
    Frames are drawn by ``workers`` threads (default: up to 4); the bytes do not depend on it."""
    dest, counts = Path(dest), dict(COUNTS if counts is None else counts)
    jobs = [(key, i) for key, n in counts.items() for i in range(n)]
    workers = min(4, os.cpu_count() or 1) if workers is None else max(1, workers)
    if workers == 1 or len(jobs) < 100:
        parts = [_write_frames(dest, seed, jobs)]
    else:
        with ThreadPoolExecutor(workers) as pool:
            parts = list(pool.map(_write_frames, [dest] * workers, [seed] * workers, [jobs[w::workers] for w in range(workers)]))
    kinds: dict[str, set[str]] = {}
    for part in parts:
        for tree, found in part.items():
            kinds.setdefault(tree, set()).update(found)
    manifest = {"version": SYNTHETIC_VERSION, "seed": seed, "image_size": [H, W], "counts": counts,
                "kinds": {k: sorted(v) for k, v in sorted(kinds.items())}, "files_sha256": tree_hash(dest)}
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def read_manifest(root: Path) -> dict | None:
    try:
        return json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError):
        return None


def synthetic_root(seed: int = 0) -> Path:
    return home() / "synthetic" / f"v{SYNTHETIC_VERSION}-seed{seed}"


def _complete(root: Path, seed: int) -> bool:
    m = read_manifest(root)
    return bool(m) and m.get("version") == SYNTHETIC_VERSION and m.get("seed") == seed and m.get("counts") == COUNTS


def _discard_incomplete(target: Path, seed: int) -> None:
    """Move a stale incomplete tree out of the way; put it back if a concurrent caller completed it meanwhile."""
    if not target.exists() or _complete(target, seed):
        return
    trash = Path(tempfile.mkdtemp(prefix=f".trash-{target.name}-", dir=target.parent))
    try:
        os.replace(target, trash / "old")
        if _complete(trash / "old", seed):
            os.replace(trash / "old", target)
    except OSError:
        pass
    finally:
        shutil.rmtree(trash, ignore_errors=True)


def ensure_synthetic(seed: int = 0) -> Path:
    """The root of the generated benchmark for ``seed``, generating it only when absent or incomplete. Each
    caller builds in its own temp folder and renames it into place; a caller that loses the race discards its copy."""
    target = synthetic_root(seed)
    if _complete(target, seed):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    _discard_incomplete(target, seed)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
    try:
        generate_synthetic(tmp, seed)
        try:
            os.replace(tmp, target)
        except OSError as exc:
            if not _complete(target, seed):
                raise DatasetError(f"{target}: cannot move the generated benchmark into place ({exc}); delete the folder and retry") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _tree(root: str | Path | None, seed: int, name: str) -> Path:
    base = ensure_synthetic(seed) if root is None else Path(root)
    return base / name if (base / name).is_dir() else base


def _named(ds, name: str, split: str):
    ds.name, ds.split, ds.domain = name, split, "embedded"
    ds.validation_split = "val"
    return ds


@register_dataset("synthetic")
def synthetic(root=None, split: str = "test", mapping: str = "smiyc", seed: int = 0,
              expected: int | bool | None = None) -> LostAndFoundDataset:
    """Synthetic LostAndFound (the OoD evaluation set): ``val`` reads the on-disk ``train`` split, ``test`` reads ``test``."""
    check_split(split, ("val", "test"), "synthetic")
    disk = "train" if split == "val" else "test"
    expected = COUNTS[f"lostandfound/{disk}"] if expected is None else expected
    return _named(LostAndFoundDataset(_tree(root, seed, "lostandfound"), disk, mapping=mapping, expected=expected),
                  "synthetic", split)


@register_dataset("synthetic_cityscapes")
def synthetic_cityscapes(root=None, split: str = "train", seed: int = 0,
                         expected: int | bool | None = None) -> CityscapesDataset:
    """Synthetic Cityscapes (in-distribution training set, train ids)."""
    check_split(split, ("train", "val"), "synthetic_cityscapes")
    expected = COUNTS[f"cityscapes/{split}"] if expected is None else expected
    return _named(CityscapesDataset(_tree(root, seed, "cityscapes"), split, expected=expected), "synthetic_cityscapes",
                  split)


@register_dataset("synthetic_coco")
def synthetic_coco(root=None, split: str = "train", seed: int = 0, expected: int | bool | None = None) -> CocoProxyDataset:
    """Synthetic COCO proxy set (0/254 masks) for entropy-maximization training."""
    check_split(split, ("train",), "synthetic_coco")
    expected = COUNTS[f"coco/{split}"] if expected is None else expected
    return _named(CocoProxyDataset(_tree(root, seed, "coco"), split, expected=expected), "synthetic_coco", split)
