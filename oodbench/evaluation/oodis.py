"""OoDIS / Cityscapes instance submissions, written and read. Per image ``<frame>_instanceIds_pred.txt`` holds one
line ``<mask> <labelId> <confidence>`` (single spaces) per predicted instance; each mask is a binary PNG (8-bit, 255
on the instance; any non-zero pixel after conversion to grey counts) named ``<frame>_instanceIds_<k>_1.png`` beside
the txt, and ``1`` is the anomaly class. As read by cityscapesScripts' ``readPredInfo``/``assignGt2Preds`` and OoDIS
(kumuji/anomaly-benchmark-suite: ``preprocess_files.py`` copies the masks named after the txt from its folder and
needs one line at least, so an image without instances gets one empty mask, which both skip; ``verify_submission.py``
wants the ``_instanceIds_<k>_1.png`` names and the ``fishyscapes``, ``roadanomaly``, ``roadobstacle`` folders)."""
from __future__ import annotations

import math
import os
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError
from scipy import ndimage
from tqdm.auto import tqdm

from ..data.base import Dataset, SkippedFileWarning
from ..errors import OodbenchError, ScoreError
from ..files import atomic_write
from ..labels import IGNORE_LABEL
from ..methods import Method
from ..metrics.conventions import create_convention
from ..metrics.instances import InstanceMetricState, predicted_instances
from ..outputs import check_output_dir
from ..segments.overlap import OverlapTable, instance_ground_truth, masks_table
from .export import frame_scores, staged_folder
from .map_store import MapStore
from .prepare import Prepared, prepare
from .replay import Replay, second_pass
from .score_cache import ScoreCache
from .score_pass import Scored, score_pass
from .states import EvaluationStates
from .thresholds import ThresholdPolicy

SUBMISSION = "OoDIS/Cityscapes instance submission"
ANOMALY_ID = 1  # OoDIS's anomaly class (mask names end _1.png; its scorer maps it onto a Cityscapes instance class)
TXT_END = "_instanceIds_pred.txt"
MASK_NAME = re.compile(r".+_instanceIds_\d+_1\.png")
OODIS_FOLDERS = {"smiyc_roadanomaly21": "roadanomaly", "smiyc_roadobstacle21": "roadobstacle",
                 "fishyscapes_laf": "fishyscapes"}
LAF_FRAME = re.compile(r"\d+_(.+_\d{6}_\d{6})(?:_leftImg8bit)?")  # fishyscapes_laf ids: <NNNN>_<LostAndFound frame>


class SubmissionError(ScoreError):
    """A file of an instance submission is missing or malformed; the message names it and the fix."""


def folder_name(dataset: str, split: str) -> str:
    """The submission's folder for a split: OoDIS's name for its three datasets, else ``<dataset>-<split>``."""
    return OODIS_FOLDERS.get(dataset, f"{dataset}-{split}")


def frame_name(dataset: str, sample_id: str) -> str:
    """The frame part of the file names: the sample id (Fishyscapes L&F: the LostAndFound frame + ``_gtCoarse``, as
    OoDIS names them)."""
    match = LAF_FRAME.fullmatch(sample_id) if dataset == "fishyscapes_laf" else None
    return f"{match.group(1)}_gtCoarse" if match else sample_id


def submission_folder(path: str | Path, dataset: str, split: str) -> Path:
    """``path`` itself, or its subfolder for the split where it holds one (the root of a multi-dataset submission)."""
    path = Path(path).expanduser()
    inner = path / folder_name(dataset, split)
    if inner.is_dir():
        return inner
    if not path.is_dir():
        raise SubmissionError(f"{path}: no such folder of instance predictions (--instances)")
    return path


def write_frame(folder: Path, frame: str, ids: np.ndarray, confidence: np.ndarray) -> int:
    """The masks and txt of one image (instance ``k`` is ``ids == k``); returns the number of instances."""
    boxes = ndimage.find_objects(ids, max_label=len(confidence)) or [None]  # [None]: one empty mask
    lines = []
    for k, box in enumerate(boxes, 1 if len(confidence) else 0):
        mask = np.zeros(ids.shape, np.uint8)
        if box is not None:
            mask[box] = (ids[box] == k) * np.uint8(255)
        name = f"{frame}_instanceIds_{k}_{ANOMALY_ID}.png"
        atomic_write(folder / name, lambda f, image=Image.fromarray(mask): image.save(f, format="PNG"), sync=False)
        lines.append(f"{name} {ANOMALY_ID} {float(confidence[k - 1]) if k else 0.0!r}\n")
    atomic_write(folder / f"{frame}{TXT_END}", "".join(lines), sync=False)
    return len(confidence)


def _number(text: str, where: str, what: str, fix: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise SubmissionError(f"{where}: {what} {text!r} is not a number; {fix}") from None


def _mask(path: Path, where: str) -> np.ndarray:
    """A mask as the reference reads it: converted to 8-bit grey, non-zero pixels on."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("L")) != 0
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise SubmissionError(f"{path} (listed in {where}) cannot be read as an image ({exc}); write each mask as a "
                              f"PNG, 255 on the instance and 0 elsewhere") from exc


def frame_predictions(folder: Path, frame: str, shape: tuple[int, int]) -> Iterator[tuple[np.ndarray, float]]:
    """One image's predictions, (binary mask, confidence) in the txt's order, read one at a time; empty masks are
    skipped. Masks may overlap: the reference matches each on its own."""
    txt = folder / f"{frame}{TXT_END}"
    if not txt.is_file():
        raise SubmissionError(f"{txt}: no prediction file for image {frame!r}; every image needs "
                              f"<frame>{TXT_END} in {folder} (`oodbench export oodis` writes them; an image without "
                              f"instances lists one empty mask)")
    seen: dict[str, int] = {}
    for n, line in enumerate(txt.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{txt}, line {n}"
        fields = line.split(" ")
        if len(fields) != 3:
            raise SubmissionError(f"{where}: {line!r} has {len(fields)} space-separated fields; write "
                                  f"'<mask>.png {ANOMALY_ID} <confidence>' with single spaces, as cityscapesScripts "
                                  f"reads it")
        rel, label, conf = fields
        path = folder / rel
        if os.path.isabs(rel) or not os.path.normpath(path).startswith(os.path.normpath(folder) + os.sep):
            raise SubmissionError(f"{where}: mask path {rel!r} is not a relative path inside {folder}; name the mask "
                                  f"file beside the txt (OoDIS copies masks from the txt's folder by name)")
        if not path.is_file():
            raise SubmissionError(f"{where}: mask {path} does not exist; write it, or drop the line")
        label_id = _number(label, where, "label id", f"write the anomaly class id {ANOMALY_ID}")
        if label_id != ANOMALY_ID:
            raise SubmissionError(f"{where}: label id {label} is not OoDIS's anomaly class; expected {ANOMALY_ID} (the "
                                  f"'_1' that ends the mask names)")
        value = _number(conf, where, "confidence", "write the instance's confidence as a decimal number")
        if not math.isfinite(value):
            raise SubmissionError(f"{where}: confidence {conf!r} is not finite; write a finite number")
        mask = _mask(path, where)
        if mask.shape != tuple(shape):
            raise SubmissionError(f"{path} (listed in {where}): mask of shape {mask.shape[0]}x{mask.shape[1]} (HxW), "
                                  f"the image's labels are {shape[0]}x{shape[1]}; write masks at label resolution")
        key = os.path.normpath(rel)
        if key in seen:
            raise SubmissionError(f"{where}: mask {rel} is listed twice (also on line {seen[key]}); list each "
                                  f"instance once")
        seen[key] = n
        if mask.any():
            yield mask, value


def frame_table(folder: Path, frame: str, gt: np.ndarray, void: np.ndarray,
                annotated: bool = False) -> tuple[OverlapTable, np.ndarray]:
    """The overlap table of one image's submitted masks with its ground-truth instances ``gt`` and ``void`` pixels,
    and the masks' confidences."""
    confidence: list[float] = []

    def masks() -> Iterator[np.ndarray]:
        for mask, value in frame_predictions(folder, frame, gt.shape):
            confidence.append(value)
            yield mask

    table = masks_table(gt, void, masks(), annotated)
    return table, np.asarray(confidence, np.float64)


def evaluate_submission(path: str | Path, ds: Dataset, progress: bool = False) -> dict[str, Any]:
    """Instance AP of the submission at ``path`` on every image of ``ds`` (which needs labels): the instance
    metrics ``oodbench run`` records, with the submission's masks and confidences as the predictions."""
    folder = submission_folder(path, ds.name, ds.split)
    state = InstanceMetricState(float("nan"), predictions=f"the masks of an {SUBMISSION}, with its confidences")
    frames = set()
    for i in tqdm(range(len(ds)), desc=f"instances of {folder}", unit="img", disable=not progress):
        sample = ds[i]
        if sample.label is None:
            raise OodbenchError(f"{ds.name}/{ds.split} sample {sample.id!r} has no labels; instance AP needs the "
                                f"ground truth (OoDIS's hidden test splits are scored by its server)")
        frame = frame_name(ds.name, sample.id)
        frames.add(f"{frame}{TXT_END}")
        gt, annotated = instance_ground_truth(sample.label, sample.instance_label)
        state.add_table(*frame_table(folder, frame, gt, sample.label == IGNORE_LABEL, annotated))
    stray = sorted(p.name for p in folder.glob(f"*{TXT_END}") if p.name not in frames)
    if stray:
        warnings.warn(f"{folder}: {len(stray)} prediction file(s) belong to no image of {ds.name}/{ds.split} and are "
                      f"not evaluated: {', '.join(stray[:5])}", SkippedFileWarning, stacklevel=2)
    return {**state.compute(), "threshold": None, "predictions": {"format": SUBMISSION, "folder": str(folder)}}


@dataclass
class Exported:
    """What ``export_oodis`` wrote (a consumer of scored frames): the folder, its images and instances, and the
    threshold with its choice."""

    folder: Path
    dataset: str
    images: int = 0
    instances: int = 0
    threshold: float = math.nan
    choice: dict[str, Any] | None = None

    def __call__(self, item: Scored) -> None:
        self.images += 1
        self.instances += write_frame(self.folder, frame_name(self.dataset, item.sample.id),
                                      *predicted_instances(item.score, self.threshold))


def _submission_file(path: Path) -> bool:
    return path.is_file() and (path.name.endswith(TXT_END) or MASK_NAME.fullmatch(path.name) is not None)


def export_oodis(method: str | Method, dataset: str, split: str, out: str | Path, threshold: str | float = "oracle",
                 data_root: str | Path | None = None, dataset_options: dict[str, Any] | None = None, seed: int = 0,
                 checkpoint: str | Path | None = None, network: str | None = None, batch_size: int = 4,
                 score_cache: bool = True, progress: bool = True) -> Exported:
    """The instances of every frame as the submission folder ``<out>/<folder_name>``: components of score >
    ``threshold`` (as ``oodbench run --threshold`` takes it; the default, the split's own best pixel F1, needs
    labels) with their mean scores, from the maps (and score cache) ``run`` uses, so that its ``metrics.instances``
    come back from the files. The folder appears whole once every frame is on disk, replacing an earlier export."""
    check_output_dir(out, "--out")
    policy = ThresholdPolicy.parse(threshold)
    prep = prepare(method, dataset, split, data_root, dataset_options, seed, checkpoint, batch_size, progress,
                   score_cache=score_cache, cache_root=None, network=network)
    ds = prep.ds
    target = Path(out) / folder_name(ds.name, ds.split)
    spaced = [i for i in ds.ids if " " in frame_name(ds.name, i)]
    if spaced:
        raise OodbenchError(f"{ds.name}/{ds.split}: sample id {spaced[0]!r} holds a space, which the submission's "
                            f"space-separated lines cannot carry; rename the frames")
    labelled = len(ds) > 0 and ds[0].label is not None
    if policy.kind == "oracle" and not labelled:
        raise OodbenchError(f"{ds.name}/{ds.split} has no labels, so the default threshold (the split's own best "
                            f"pixel F1, as `oodbench run` takes it) cannot be chosen; give --threshold 0.5 or "
                            f"--threshold SPLIT[:best_f1|tpr95] (a labelled split, e.g. validation)")
    with staged_folder(target, _submission_file, "an instance submission") as partial:
        done = Exported(partial, ds.name)
        _write_all(prep, policy, labelled, done, f"{prep.method.name} -> {target}", batch_size, progress)
    done.folder = target
    return done


def _write_all(prep: Prepared, policy: ThresholdPolicy, labelled: bool, done: Exported, desc: str, batch_size: int,
               progress: bool) -> None:
    """Choose the threshold as ``run`` does and write every frame: labelled splits through ``run``'s score pass
    (and its second pass for the oracle), unlabelled ones from the method's maps directly."""
    ds, cache = prep.ds, prep.cache(prep.ds)
    store = MapStore(cache)
    if policy.kind == "oracle":
        states = EvaluationStates(conventions={n: create_convention(n) for n in policy.needs_conventions()})
        with tempfile.TemporaryDirectory(prefix="oodbench-scores-") as scratch:
            spill = None if cache is not None else ScoreCache("pass", scratch, dtype="float32")
            replay = Replay((cache or spill).dtype, spill)
            score_pass(prep.method, ds, batch_size, progress, f"{prep.method.name} on {ds.name}/{ds.split}",
                       [states.consume, replay], store)
            done.threshold, best_f1 = policy.oracle(states.pixel, states.conventions)
            done.choice = policy.describe(done.threshold, pixel_f1=best_f1)
            second_pass(replay, ds, batch_size, progress, desc, [done], cache or spill)
        return
    other, state = prep.pixel_pass(policy.split, "threshold") if policy.kind == "validation" else (None, None)
    done.threshold = policy.choose(state)
    done.choice = policy.describe(done.threshold, **({"validation": {"split": other.split, "fingerprint":
                                                                     other.fingerprint()}} if other else {}))
    if labelled:
        score_pass(prep.method, ds, batch_size, progress, desc, [done], store)
        return
    for sample, score in frame_scores(prep, prep.method.name, batch_size, progress, desc):
        if not np.isfinite(score).all():
            raise OodbenchError(f"{prep.method.name}: the score map of {sample.id} holds NaN/inf; scores must be "
                                f"finite")
        done(Scored(sample, np.asarray(score, np.float32)))
