"""Score maps written for another tool's evaluation: a SegmentMeIfYouCan submission, ``<out>/<method>/<dataset>/
<frame>.hdf5`` with a float16 ``value`` dataset (gzip level 9), as road-anomaly-benchmark's own ``Evaluation``
stores them; test splits without labels included, so the files go to the benchmark's hidden evaluation. Also what
every export shares: the frames with their score maps, and a folder published whole."""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from tqdm.auto import tqdm

from ..errors import OodbenchError
from ..files import atomic_write
from ..data.base import Sample
from ..methods import Method
from ..outputs import check_entry_name, check_output_dir
from .prepare import Prepared, prepare
from .score_pass import batches

SMIYC_DATASETS = {"smiyc_roadanomaly21": "AnomalyTrack", "smiyc_roadobstacle21": "ObstacleTrack"}


def smiyc_dataset_name(dataset: str, split: str) -> str:
    """The benchmark's name of a split (``AnomalyTrack-test``); other datasets keep ``<dataset>-<split>``."""
    return f"{SMIYC_DATASETS.get(dataset, dataset)}-{split}"


def write_value(path: Path, scores: np.ndarray) -> None:
    """One frame's map as the benchmark writes it: float16 ``value``, gzip level 9; atomically."""
    import h5py

    def write(f) -> None:
        with h5py.File(f, "w") as h5:
            h5.create_dataset("value", data=np.asarray(scores, np.float16), compression=9)

    atomic_write(path, write)


def frame_scores(prep: Prepared, label: str, batch_size: int, progress: bool,
                 desc: str) -> Iterator[tuple[Sample, np.ndarray]]:
    """Every frame of the prepared split with its score map, checked against the image size (labels not needed,
    so hidden test splits too); ``label`` names the method in errors."""
    with tqdm(total=len(prep.ds), desc=desc, disable=not progress) as bar:
        for batch in batches(prep.ds, batch_size):
            scores = prep.method.predict_samples(batch).scores
            for sample, score in zip(batch, scores):
                score = np.asarray(score)
                if sample.image is not None and score.shape != sample.image.shape[:2]:
                    raise OodbenchError(f"{label}: score map {score.shape} of {sample.id} differs from its image "
                                        f"{sample.image.shape[:2]}; the benchmark needs maps at image resolution")
                yield sample, score
            bar.update(len(batch))


@contextmanager
def staged_folder(target: Path, ours: Callable[[Path], bool], what: str) -> Iterator[Path]:
    """A hidden folder beside ``target`` to write into: once the block succeeds it is synced to disk and renamed to
    ``target`` (an earlier one moved aside, then removed), so ``target`` is whole or absent, never half-written; a
    failure removes it. An existing ``target`` is refused (before any work) unless ``ours`` accepts each entry."""
    other = [p.name for p in target.iterdir() if not ours(p)] if target.is_dir() else [target.name] * target.exists()
    if other:
        raise OodbenchError(f"{target} exists and holds more than {what} ({', '.join(other[:5])}); move it away or "
                            f"give another --out")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        yield partial
        getattr(os, "sync", lambda: None)()  # every file on disk before the folder is published
        aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        if target.exists():
            os.replace(target, aside / target.name)
        os.replace(partial, target)
        shutil.rmtree(aside, ignore_errors=True)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def export_smiyc(method: str | Method, dataset: str, split: str, out: str | Path, name: str | None = None,
                 data_root: str | Path | None = None, dataset_options: dict[str, Any] | None = None, seed: int = 0,
                 checkpoint: str | Path | None = None, network: str | None = None, batch_size: int = 4,
                 progress: bool = True) -> Path:
    """Score every frame of ``dataset/split`` (labels not needed) and write the submission folder; returns it."""
    try:
        import h5py  # noqa: F401  (checked before any frame is scored)
    except ImportError as exc:
        raise OodbenchError("writing a SegmentMeIfYouCan submission needs h5py: pip install 'oodbench[hdf5]'") from exc
    check_output_dir(out, "--out")
    prep = prepare(method, dataset, split, data_root, dataset_options, seed, checkpoint, batch_size, progress,
                   score_cache=False, cache_root=None, network=network)
    label = name or prep.method.name
    check_entry_name(label)
    folder = Path(out) / label / smiyc_dataset_name(dataset, split)
    for sample, score in frame_scores(prep, label, batch_size, progress, f"{label} -> {folder}"):
        write_value(folder / f"{sample.id}.hdf5", score)
    return folder
