"""Content-addressed cache of score maps: float16 ``<id>.npz`` files under a key made of the method's
configuration and code, its checkpoint, the oodbench version and the dataset split's fingerprint; each map also
carries a digest of the image it was computed from, so an edited frame is scored again. It lets an interrupted
run resume, a second pass (components at the oracle threshold) skip the model, and shards share their scores."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ScoreError
from .files import atomic_write
from .paths import home
from .segments.collector import ImageSegments

STORAGE = "float16"  # what SegmentMeIfYouCan stores; records that use cached scores say so
FORMAT = 3  # one <id>.npz per frame: the map and the meta stage's segments (1: segments apart; 2: segments of
# LostAndFound under mapping=metaood without its random non-hazards)


def cache_key(method_config: dict[str, Any], checkpoint_sha256: str | None, dataset: str, split: str,
              fingerprint: str, options: dict[str, Any]) -> str:
    """sha256 over everything that determines the score maps (a changed checkpoint or data gives a new key)."""
    from . import __version__

    blob = json.dumps({"method": method_config, "checkpoint": checkpoint_sha256, "dataset": dataset, "split": split,
                       "fingerprint": fingerprint, "options": options, "storage": STORAGE, "format": FORMAT,
                       "oodbench": __version__},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def image_digest(image: np.ndarray | None) -> str:
    """A cheap content digest of the frame a map was computed from ('' for label-only samples)."""
    if image is None:
        return ""
    return hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=16).hexdigest()


class ScoreCache:
    """One key's folder: ``put`` writes atomically (a crash leaves no partial map), ``get`` returns None on a miss
    (absent, or computed from another image). ``dtype``: float16 (the persistent cache) or float32 (exact)."""

    def __init__(self, key: str, root: str | Path | None = None, dtype: str = STORAGE):
        self.key, self.dtype = key, np.dtype(dtype)
        if root is None:
            root = os.environ.get("OODBENCH_SCORE_CACHE") or home() / "score_cache"
        self.folder = Path(root)
        self.folder = self.folder / key[:2] / key

    def _path(self, sample_id: str) -> Path:
        return self.folder / f"{sample_id}.npz"

    def _write(self, path: Path, write) -> None:
        atomic_write(path, write, suffix=".part", sync=False)  # a lost map is only scored again

    def stored(self, sample_id: str, score: np.ndarray) -> np.ndarray:
        """The map as the cache stores it (in its dtype), so that metrics see what a resumed run will read back."""
        with np.errstate(over="ignore"):
            stored = np.asarray(score, dtype=self.dtype)
        if not np.isfinite(stored).all():
            raise ScoreError(f"sample {sample_id!r}: scores overflow float16 (|score| > 65504) and cannot be cached; "
                             f"rescale the score or run with --no-score-cache")
        return stored

    def put(self, sample_id: str, stored: np.ndarray, image: np.ndarray | None,
            segments: ImageSegments | None = None, threshold: float | None = None) -> None:
        """One file per frame: the ``stored`` map with the image's digest, and the meta stage's segment features,
        targets and touch pairs formed at ``threshold`` (no probabilities), if given."""
        digest = image_digest(image)
        if segments is None and self._holds_segments(sample_id, digest):
            return  # the same map, with segments a concurrent shard's meta stage formed: keep them
        arrays = {"score": stored, "image": np.array(digest)}
        if segments is not None:
            arrays.update(features=segments.features, targets=segments.targets, num_gt=np.array(segments.num_gt),
                          pairs=segments.pairs, threshold=np.array(threshold, np.float64))
        self._write(self._path(sample_id), lambda fh: np.savez(fh, **arrays))

    def _holds_segments(self, sample_id: str, digest: str) -> bool:
        path = self._path(sample_id)
        try:
            with np.load(path, allow_pickle=False) as z:
                return "threshold" in z.files and str(z["image"]) == digest
        except (OSError, ValueError, EOFError, KeyError):
            return False

    def get(self, sample_id: str, image: np.ndarray | None,
            segment_threshold: float | None = None) -> tuple[np.ndarray, ImageSegments | None] | None:
        """(float32 map, segments at ``segment_threshold`` or None when not asked for); None when the map is
        absent or computed from another image, or the segments asked for are absent or at another threshold."""
        path = self._path(sample_id)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["image"]) != image_digest(image):
                    return None  # the frame changed since: score it again
                segments = None
                if segment_threshold is not None:
                    if "threshold" not in z.files or float(z["threshold"]) != float(segment_threshold):
                        return None
                    segments = ImageSegments(sample_id, z["features"], z["targets"], int(z["num_gt"]), z["pairs"])
                return z["score"].astype(np.float32), segments
        except (ValueError, OSError, EOFError, KeyError) as exc:
            raise ScoreError(f"{path}: unreadable cached score map ({exc}); delete it to recompute") from exc

    def describe(self) -> dict[str, Any]:
        return {"key": self.key, "folder": str(self.folder), "storage": str(self.dtype)}
