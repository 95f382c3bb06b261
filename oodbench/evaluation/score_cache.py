"""Content-addressed cache of score maps: float16 ``<id>.npz`` files under a key made of the method's
configuration and code, its checkpoint, the oodbench version and the dataset split's fingerprint; each map also
carries a digest of the image it was computed from, so an edited frame is scored again, and a checksum of its
content, so that a truncated, bit-flipped or rewritten file is never used: ``get`` raises ``BadCacheEntry`` naming
it, and a pass with a model ``discard``s it (a warning) and scores the frame again. It lets an interrupted run resume,
a second pass (components at the oracle threshold) skip the model, and shards share their scores."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import OodbenchError, ScoreError
from ..files import atomic_write
from ..paths import home
from ..segments.collector import ImageSegments
from ..segments.overlap import OverlapTable

STORAGE = "float16"  # what SegmentMeIfYouCan stores; records that use cached scores say so
FORMAT = 5  # one <id>.npz per frame: the map, the meta stage's segments with their instance overlap table and a
# checksum of all (1: segments apart; 2: segments of LostAndFound under mapping=metaood without its random
# non-hazards; 3: no checksum; 4: segments without the overlap table)
SEGMENT_FIELDS = ("features", "targets", "num_gt", "pairs", "threshold")
# the segments' OverlapTable, field by field (stored as instances_<field>)
INSTANCE_FIELDS = ("gt_size", "pred_size", "pred_void", "pairs", "inter", "annotated")


def cache_key(method_config: dict[str, Any], checkpoint_sha256: str | None, dataset: str, split: str,
              fingerprint: str, options: dict[str, Any]) -> str:
    """sha256 over everything that determines the score maps (a changed checkpoint or data gives a new key)."""
    from .. import __version__

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


def checksum(arrays: dict[str, np.ndarray]) -> str:
    """blake2b over every array's name, dtype, shape and bytes, in name order (stored as ``checksum``)."""
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(arrays):
        a = np.asarray(arrays[name])
        h.update(json.dumps([name, a.dtype.str, list(a.shape)]).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _table_fits(arrays: dict[str, np.ndarray], n: int) -> bool:
    """An overlap table of ``n`` segments: sizes per segment, one intersection per in-range pair."""
    a = {f: arrays[f"instances_{f}"] for f in INSTANCE_FIELDS}
    pairs = a["pairs"]
    return (a["pred_size"].shape == a["pred_void"].shape == (n,) and a["gt_size"].ndim == 1 and pairs.ndim == 2
            and pairs.shape[1] == 2 and a["inter"].shape == pairs.shape[:1] and a["annotated"].shape == ()
            and bool(np.all((pairs >= 0) & (pairs < [a["gt_size"].size, n]))))


class BadCacheEntry(ScoreError):
    """A cache file that cannot be trusted: unreadable, changed since it was written (checksum), or not a map of the
    sample's shape. ``path`` is the file, ``reason`` what is wrong with it."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"score cache file {path} is bad ({reason})")
        self.path, self.reason = path, reason


class ScoreCacheWarning(UserWarning):
    """A bad cache file was discarded and its frame scored again."""


class ScoreCache:
    """One key's folder: ``put`` writes atomically (a crash leaves no partial map) with a checksum, ``get`` returns
    None on a miss (absent, or computed from another image) and raises ``BadCacheEntry`` for a file that fails its
    checks. ``dtype``: float16 (the persistent cache) or float32 (exact)."""

    def __init__(self, key: str, root: str | Path | None = None, dtype: str = STORAGE):
        self.key, self.dtype = key, np.dtype(dtype)
        if root is None:
            root = os.environ.get("OODBENCH_SCORE_CACHE") or home() / "score_cache"
        self.root = Path(root)
        self.folder = self.root / key[:2] / key
        self._writable = False

    def _path(self, sample_id: str) -> Path:
        return self.folder / f"{sample_id}.npz"

    def _write(self, path: Path, write) -> None:
        try:
            atomic_write(path, write, suffix=".part", sync=False)  # a lost map is only scored again
        except OSError as exc:
            raise self._unwritable(exc) from exc

    def _unwritable(self, exc: OSError) -> OodbenchError:
        blocker = next((p for p in (self.folder, *self.folder.parents) if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            where = f" ({blocker} is a file, not a folder)"
        else:
            where = f" ({exc.filename})" if exc.filename and Path(exc.filename) != self.folder else ""
        return OodbenchError(
            f"cannot write score maps into the score cache folder {self.folder}{where}: {exc.strerror or exc}; run "
            f"with --no-score-cache, or point OODBENCH_HOME (or OODBENCH_SCORE_CACHE, now {self.root}) at a "
            f"writable folder")

    def check_writable(self) -> None:
        """Create the key's folder and a probe file in it (removed again), once: an ``OodbenchError`` naming the
        folder and both fixes if that fails (read-only home or mount, a file in the way, no space), before a
        model's work would be lost to it."""
        if self._writable:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=self.folder, prefix=".probe.", suffix=".part")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise self._unwritable(exc) from exc
        self._writable = True

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
        targets, touch pairs and overlap table formed at ``threshold`` (no probabilities), if given."""
        digest = image_digest(image)
        if segments is None and self._holds_segments(sample_id, digest):
            return  # the same map, with segments a concurrent shard's meta stage formed: keep them
        arrays = {"score": np.asarray(stored), "image": np.array(digest)}
        if segments is not None:
            arrays.update(features=np.asarray(segments.features), targets=np.asarray(segments.targets),
                          num_gt=np.array(segments.num_gt), pairs=np.asarray(segments.pairs),
                          threshold=np.array(threshold, np.float64))
            if segments.instances is not None:
                arrays.update({f"instances_{f}": np.asarray(getattr(segments.instances, f)) for f in INSTANCE_FIELDS})
        arrays["checksum"] = np.array(checksum(arrays))
        self._write(self._path(sample_id), lambda fh: np.savez(fh, **arrays))

    def _holds_segments(self, sample_id: str, digest: str) -> bool:
        try:
            arrays = self._load(self._path(sample_id), None)
        except BadCacheEntry:
            return False  # replaced by the map at hand
        return arrays is not None and "threshold" in arrays and str(arrays["image"]) == digest

    def _load(self, path: Path, shape: tuple[int, ...] | None) -> dict[str, np.ndarray] | None:
        """Every array of a verified cache file (checksum, map dtype, ``shape`` if given, finite values, segment
        fields whole), without its checksum; None when there is no file. ``BadCacheEntry`` otherwise."""
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {name: z[name] for name in z.files}
        except FileNotFoundError:
            return None
        except Exception as exc:  # noqa: BLE001 - BadZipFile, CRC errors, truncated headers, pickles: all unreadable
            raise BadCacheEntry(path, f"unreadable: {type(exc).__name__}: {exc}") from exc
        stored = arrays.pop("checksum", None)
        if stored is None or stored.shape != () or stored.dtype.kind != "U":
            raise BadCacheEntry(path, "it holds no checksum")
        if str(stored) != checksum(arrays):
            raise BadCacheEntry(path, "checksum mismatch: its content changed after oodbench wrote it")
        missing = [name for name in ("score", "image") if name not in arrays]
        present = [name for name in SEGMENT_FIELDS if name in arrays]
        if present and len(present) != len(SEGMENT_FIELDS):
            missing += sorted(set(SEGMENT_FIELDS) - set(present))
        table = [f"instances_{f}" for f in INSTANCE_FIELDS]
        if any(name in arrays for name in table) and not (present and all(name in arrays for name in table)):
            missing += sorted({*table, *SEGMENT_FIELDS} - set(arrays))
        if missing:
            raise BadCacheEntry(path, f"fields {missing} are missing")
        score = arrays["score"]
        if score.dtype != self.dtype or score.ndim != 2:
            raise BadCacheEntry(path, f"its map is {score.dtype} of shape {score.shape}, not a 2-d {self.dtype} map")
        if shape is not None and score.shape != tuple(shape):
            raise BadCacheEntry(path, f"its map has shape {score.shape}, the sample's labels {tuple(shape)}")
        bad = ~np.isfinite(score)
        if bad.any():
            raise BadCacheEntry(path, f"its map holds {int(bad.sum())} NaN/inf scores")
        if present:
            features, targets, pairs = arrays["features"], arrays["targets"], arrays["pairs"]
            if features.ndim != 2 or targets.shape != features.shape[:1] or pairs.ndim != 2 or pairs.shape[1] != 2:
                raise BadCacheEntry(path, f"its segments are malformed (features {features.shape}, targets "
                                          f"{targets.shape}, pairs {pairs.shape})")
            if "instances_pairs" in arrays and not _table_fits(arrays, targets.size):
                raise BadCacheEntry(path, f"its segments' overlap table does not fit its {targets.size} segments")
        return arrays

    def discard(self, bad: BadCacheEntry) -> None:
        """Warn that ``bad`` is not used, and delete its file (a miss from now on: the frame is scored again)."""
        try:
            bad.path.unlink(missing_ok=True)
            done = "deleted it; the frame is scored again"
        except OSError as exc:
            done = f"could not delete it ({exc.strerror or exc}); the frame is scored again"
        warnings.warn(f"{bad}: not used, {done}", ScoreCacheWarning, stacklevel=2)

    def get(self, sample_id: str, image: np.ndarray | None, segment_threshold: float | None = None,
            shape: tuple[int, ...] | None = None) -> tuple[np.ndarray, ImageSegments | None] | None:
        """(float32 map, segments at ``segment_threshold`` or None when not asked for); None when the map is
        absent or computed from another image, or the segments asked for are absent or at another threshold.
        ``BadCacheEntry`` when the file is unreadable, fails its checksum, or its map is not finite or not of
        ``shape`` (the sample's labels, if given): never a map that was not written as it is."""
        path = self._path(sample_id)
        if not path.is_file():
            return None
        arrays = self._load(path, shape)
        if arrays is None or str(arrays["image"]) != image_digest(image):
            return None  # gone since, or the frame changed since: score it again
        segments = None
        if segment_threshold is not None:
            if "threshold" not in arrays or float(arrays["threshold"]) != float(segment_threshold):
                return None
            table = None
            if "instances_pairs" in arrays:
                table = OverlapTable(*(arrays[f"instances_{f}"] for f in INSTANCE_FIELDS[:-1]),
                                     annotated=bool(arrays["instances_annotated"]))
            segments = ImageSegments(sample_id, arrays["features"], arrays["targets"], int(arrays["num_gt"]),
                                     arrays["pairs"], table)
        return arrays["score"].astype(np.float32), segments

    def describe(self) -> dict[str, Any]:
        return {"key": self.key, "folder": str(self.folder), "storage": str(self.dtype)}
