"""Score maps computed elsewhere, evaluated as a Method (``oodbench evaluate``), so the record is the same as ``run``'s.

Per sample id the method reads one score map (float16/float32 HxW, higher = more OoD; float64 is read too, and any
byte order) from the scores folder: ``<dir>/<id>.npy``, ``<dir>/<id>.npz`` (a single array, or the key ``scores`` or
``value``), ``<dir>/<id>.hdf5`` (dataset ``value``), or the SegmentMeIfYouCan output layout
``<dir>/<method>/<dataset>/<id>.hdf5`` (dataset ``value``, float16, as written by road-anomaly-benchmark's
``Evaluation.save_output`` under ``outputs/anomaly_p/``; ``<dir>`` may be ``outputs`` or ``outputs/anomaly_p``).
HDF5 needs ``h5py``. Suffixes match in any case (``a.NPY``).

The folder is checked as a whole before any map is read, so a split is never evaluated on a silent subset: every
sample needs exactly one score file (two for one id, e.g. ``a.npy`` and ``a.npz``, are an error naming both); a score
file whose id has no label map is an error with the folder dataset (``--labels``: the folder is the whole split) and
a warning with a registered dataset (the folder may hold the maps of its other splits too); files of other kinds,
subfolders and entries that are not regular files (FIFOs, devices: never opened) are reported with a warning.
Hidden entries (names starting with '.') are ignored.

NaN and +-inf are allowed on ignore pixels (label 255) only, which no metric reads: they are replaced by the map's
lowest finite score (the record counts such maps in ``nonfinite_on_ignore_maps``). On evaluated pixels (label 0 or 1)
they are an error naming the file and the first such pixel; a map that must be resized (``--resize``) may hold none,
as bilinear resizing would spread them into evaluated pixels."""
from __future__ import annotations

import warnings
import zipfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data.base import FolderEntries, SkippedFileWarning, list_folder
from ..labels import IGNORE_LABEL
from ..errors import DatasetError, ScoreError
from ..methods.base import Method, MethodOutput

if TYPE_CHECKING:
    from ..data.base import Dataset, Sample

NPZ_KEYS = ("scores", "value")
HDF5_KEY = "value"
SCORE_SUFFIXES = (".npy", ".npz", ".hdf5")
FLOAT_SIZES = (2, 4, 8)  # float16, float32, float64
# the first bytes of each kind: a file is read by its suffix only when its content is of that kind
MAGIC = {".npy": (b"\x93NUMPY",), ".npz": (b"PK\x03\x04", b"PK\x05\x06"), ".hdf5": (b"\x89HDF\r\n\x1a\n",)}
WRITER = {".npy": "np.save", ".npz": "np.savez", ".hdf5": "h5py's create_dataset('value', ...)"}
# what reading a damaged file raises (numpy, zipfile, zlib, h5py): each becomes a ScoreError naming the file
READ_ERRORS = (OSError, EOFError, ValueError, KeyError, TypeError, RuntimeError, MemoryError, zipfile.BadZipFile,
               zlib.error)
EXAMPLES = 5  # file names or ids listed in one message


def _h5py():
    try:
        import h5py
    except ImportError as exc:
        raise ScoreError("reading .hdf5 score files (the SegmentMeIfYouCan layout) needs h5py: "
                         "pip install h5py, or save the scores as .npy/.npz") from exc
    return h5py


def resize_bilinear(score: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float map to ``shape`` (H, W), half-pixel centres (align_corners=False)."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(score, dtype=np.float32))[None, None]
    return F.interpolate(t, size=tuple(shape), mode="bilinear", align_corners=False)[0, 0].numpy()


def _listed(names: list[str]) -> str:
    return ", ".join(names[:EXAMPLES]) + (f" and {len(names) - EXAMPLES} more" if len(names) > EXAMPLES else "")


def _kind_of(head: bytes) -> str | None:
    return next((kind for kind, magics in MAGIC.items() if head.startswith(magics)), None)


class PrecomputedScores(Method):
    """Loads the score map of each sample id from ``scores_dir``; ``smiyc=(method, dataset)`` selects the
    SegmentMeIfYouCan layout. ``resize``: bilinearly resize maps whose shape differs from the label map."""

    provides_probs = False

    def __init__(self, scores_dir: str | Path, name: str, resize: bool = False,
                 smiyc: tuple[str, str] | None = None):
        self.scores_dir = Path(scores_dir).expanduser()
        self.name = name
        self.resize = resize
        self.smiyc = tuple(smiyc) if smiyc else None
        self._dataset: Dataset | None = None
        self._entries: FolderEntries | None = None
        self._index: dict[str, Path] | None = None
        self._dtypes: set[str] = set()
        self._formats: set[str] = set()
        self._resized: set[str] = set()  # ids, so a second pass over the split does not count twice
        self._masked: set[str] = set()  # ids whose NaN/inf on ignore pixels were replaced

    # -- the folder as a whole --------------------------------------------------------------------
    def bind(self, dataset: "Dataset") -> None:
        self._dataset = dataset

    def setup(self, progress: bool = True) -> dict[str, Any]:
        if not self.scores_dir.is_dir():
            raise ScoreError(f"{self.scores_dir}: no such folder of score maps (--scores)")
        index = self.index()
        if self._dataset is not None:
            self._check_pairs(self._dataset, index)
        return {}

    def folder(self) -> Path:
        """The folder holding the maps: ``scores_dir``, or its SegmentMeIfYouCan subfolder."""
        if self.smiyc is None:
            return self.scores_dir
        method, dataset = self.smiyc
        found = [p for p in (self.scores_dir / method / dataset, self.scores_dir / "anomaly_p" / method / dataset)
                 if p.is_dir()]
        if len(found) == 2:
            raise ScoreError(f"{self.scores_dir}: both {found[0]} and {found[1]} exist, so it is unclear which maps "
                             f"to evaluate; pass the folder that holds the wanted one as --scores (e.g. "
                             f"{self.scores_dir / 'anomaly_p'}) or remove the other")
        if not found:
            raise ScoreError(f"{self.scores_dir}: no SegmentMeIfYouCan folder {method}/{dataset}/ (nor anomaly_p/"
                             f"{method}/{dataset}/); check --scores (outputs or outputs/anomaly_p) and --smiyc "
                             f"METHOD/DATASET")
        return found[0]

    def index(self) -> dict[str, Path]:
        """``{id: score file}`` of the folder, every other entry reported (see the module doc)."""
        if self._index is not None:
            return self._index
        folder = self.folder()
        try:
            entries = list_folder(folder)
        except DatasetError as exc:
            raise ScoreError(str(exc)) from None
        entries.warn_other(f"{folder} (score maps)")
        suffixes = (".hdf5",) if self.smiyc else SCORE_SUFFIXES
        unknown = [p.name for p in entries.files if p.suffix.lower() not in suffixes]
        unknown += [p.name + "/" for p in entries.folders]
        if unknown:
            hint = "; for the SegmentMeIfYouCan layout <DIR>/METHOD/DATASET/<id>.hdf5 pass --smiyc METHOD/DATASET" \
                if entries.folders and not self.smiyc else ""
            warnings.warn(f"{folder}: {len(unknown)} entr{'y is' if len(unknown) == 1 else 'ies are'} not score "
                          f"maps <id>{'|'.join(suffixes)} and not read: {_listed(unknown)}{hint}",
                          SkippedFileWarning, stacklevel=2)
        index: dict[str, Path] = {}
        for path in entries.files:
            if path.suffix.lower() not in suffixes:
                continue
            other = index.setdefault(path.stem, path)
            if other is not path:
                raise ScoreError(f"{folder}: two score files for sample {path.stem!r}: {other.name} and {path.name}; "
                                 f"keep one of them, so it is clear which one is evaluated")
        self._entries, self._index = entries, index
        return index

    def _check_pairs(self, dataset: "Dataset", index: dict[str, Path]) -> None:
        """Every sample of the bound split has a score file; score files without a sample are reported."""
        ids = dataset.ids
        missing = [i for i in ids if i not in index]
        if missing:
            raise self._missing(missing[0], also=missing[1:])
        known = set(ids)
        stray = sorted(p.name for i, p in index.items() if i not in known)
        if not stray:
            return
        where = getattr(dataset, "label_dir", dataset.root)
        what = (f"{self.folder()}: {len(stray)} score file(s) have no label map in {where}: {_listed(stray)}")
        if dataset.name == "folder":
            raise ScoreError(f"{what}. Every score file must pair with a label map <id>.png, or the evaluation would "
                             f"silently cover fewer images than were scored: add the missing label maps, or move "
                             f"these score files out of the folder")
        warnings.warn(f"{what} (split {dataset.split!r} of {dataset.name}); they are not evaluated. Maps of the "
                      f"dataset's other splits may sit here; otherwise check the file names", SkippedFileWarning,
                      stacklevel=2)

    def _missing(self, sample_id: str, also: list[str] = ()) -> ScoreError:
        folder = self.folder()
        suffixes = (".hdf5",) if self.smiyc else SCORE_SUFFIXES
        paths = [folder / f"{sample_id}{ext}" for ext in suffixes]
        notes = []
        entries = self._entries
        if entries is not None:
            near = [f"{p.name} ({kind})" for p, kind in entries.other if p.stem == sample_id]
            near += [p.name for p in entries.files if p.stem == sample_id]
            if near:
                notes.append(f"found only {', '.join(near)}, which is not read")
        if also:
            notes.append(f"{len(also)} more sample(s) lack one too: {_listed(also)}")
        return ScoreError(f"no score file for sample {sample_id!r}; expected one of: "
                          f"{', '.join(str(p) for p in paths)}" + "".join(f"; {n}" for n in notes))

    def candidates(self, sample_id: str) -> list[Path]:
        """The paths tried for ``sample_id``, in order."""
        d = self.scores_dir
        if self.smiyc is not None:
            method, dataset = self.smiyc
            return [d / method / dataset / f"{sample_id}.hdf5", d / "anomaly_p" / method / dataset / f"{sample_id}.hdf5"]
        return [d / f"{sample_id}{ext}" for ext in SCORE_SUFFIXES]

    # -- one file ----------------------------------------------------------------------------------
    def _read(self, path: Path, sample_id: str) -> np.ndarray:
        """The array a score file holds; anything wrong with the file is a ScoreError naming it and the fix."""
        kind = path.suffix.lower()
        where = f"{path}: the score file of sample {sample_id!r}"
        try:
            with path.open("rb") as fh:
                head = fh.read(8)
            if not head:
                raise ScoreError(f"{where} is empty (0 bytes); write it again with {WRITER[kind]}")
            actual = _kind_of(head)
            if actual != kind and (kind != ".hdf5" or actual):  # HDF5 may start with a user block: h5py judges it
                is_what = f"a {actual} file" if actual else f"no {kind} file (it starts with {head!r})"
                fix = f"rename it to {path.stem}{actual}" if actual else f"write it with {WRITER[kind]}"
                raise ScoreError(f"{where} is {is_what}; {fix}")
            if kind == ".npy":
                return np.load(path, allow_pickle=False)
            if kind == ".npz":
                with np.load(path, allow_pickle=False) as z:
                    keys = list(z.keys())
                    key = next((k for k in NPZ_KEYS if k in keys), keys[0] if len(keys) == 1 else None)
                    if key is None:
                        raise ScoreError(f"{where} holds arrays {keys}; store a single array or name it one of "
                                         f"{list(NPZ_KEYS)}")
                    return z[key]
            return self._read_hdf5(path, where)
        except ScoreError:
            raise
        except READ_ERRORS as exc:
            raise ScoreError(f"{where} cannot be read ({type(exc).__name__}: {exc}); it is damaged, truncated or "
                             f"not a float array: write the HxW float16/float32 map again with {WRITER[kind]}") from exc

    def _read_hdf5(self, path: Path, where: str) -> np.ndarray:
        h5py = _h5py()
        with h5py.File(path, "r") as f:
            if HDF5_KEY not in f:
                raise ScoreError(f"{where} has no dataset {HDF5_KEY!r} (it holds {list(f.keys())}); store the map "
                                 f"as f.create_dataset({HDF5_KEY!r}, data=scores)")
            obj = f[HDF5_KEY]
            if not isinstance(obj, h5py.Dataset):
                held = (f" holding {list(obj.keys())[:EXAMPLES]}" if len(obj) else " (empty)") \
                    if isinstance(obj, h5py.Group) else ""
                raise ScoreError(f"{where}: {HDF5_KEY!r} is an HDF5 {type(obj).__name__.lower()}{held}, not a "
                                 f"dataset; store the map itself as f.create_dataset({HDF5_KEY!r}, data=scores)")
            dtype = obj.dtype
            if dtype.kind != "f":
                what = "text" if dtype.kind in "SUO" else f"dtype {dtype}"
                raise ScoreError(f"{where}: dataset {HDF5_KEY!r} holds {what}, not a float score map; store the "
                                 f"HxW scores as float16 or float32 (higher = more OoD)")
            if obj.shape is None:
                raise ScoreError(f"{where}: dataset {HDF5_KEY!r} is empty (no dataspace); store the HxW scores")
            return np.asarray(obj[()])

    def load(self, sample: "Sample") -> np.ndarray:
        path = self.index().get(sample.id)
        if path is None:
            raise self._missing(sample.id)
        score = self._read(path, sample.id)
        if not isinstance(score, np.ndarray):
            score = np.asarray(score)
        dtype = score.dtype
        if dtype.kind != "f" or dtype.itemsize not in FLOAT_SIZES:
            raise ScoreError(f"{path}: scores of sample {sample.id!r} have dtype {dtype}; store float16 or "
                             f"float32 (float64 is read too; higher = more OoD)")
        if not dtype.isnative:  # e.g. big-endian '>f4' written on another machine: the same values, native order
            score = score.astype(dtype.newbyteorder("="))
        if score.ndim == 3 and score.shape[0] == 1:
            score = score[0]
        if score.ndim != 2 or 0 in score.shape:
            raise ScoreError(f"{path}: scores of sample {sample.id!r} have shape {score.shape}; expected one HxW map")
        self._dtypes.add(str(score.dtype))
        self._formats.add(path.suffix.lower().lstrip(".") + ("-smiyc" if self.smiyc else ""))
        target = tuple(sample.label.shape)
        if score.shape != target and not self.resize:
            raise ScoreError(f"{path}: score map of sample {sample.id!r} has shape {score.shape}, its label map "
                             f"{target}; pass --resize (resize=True) to resize scores bilinearly to the labels")
        score = self._finite(score, sample, path, resized=score.shape != target)
        if score.shape != target:
            score = resize_bilinear(score, target)
            self._resized.add(sample.id)
        return score

    def _finite(self, score: np.ndarray, sample: "Sample", path: Path, resized: bool) -> np.ndarray:
        """NaN/inf only on ignore pixels, there replaced by the map's lowest finite score (see the module doc)."""
        bad = ~np.isfinite(score)
        if not bad.any():
            return score
        count = int(np.count_nonzero(bad))
        if resized:
            raise ScoreError(f"{path}: score map of sample {sample.id!r} holds {count} NaN/inf value(s) and has shape "
                             f"{score.shape}, not its label map's {tuple(sample.label.shape)}; resizing would spread "
                             f"them into evaluated pixels: store the map at the label map's size (NaN/inf are then "
                             f"allowed on ignore pixels, label 255) or replace them (np.nan_to_num)")
        evaluated = bad & (sample.label != IGNORE_LABEL)
        if evaluated.any():
            y, x = (int(v) for v in np.argwhere(evaluated)[0])
            raise ScoreError(f"{path}: score map of sample {sample.id!r} has {int(np.count_nonzero(evaluated))} "
                             f"NaN/inf value(s) on evaluated pixels (label 0 or 1), the first at row {y}, column {x} "
                             f"(value {score[y, x]}, label {int(sample.label[y, x])}); NaN/inf are allowed only on "
                             f"ignore pixels (label 255): fix the scores, replace them (np.nan_to_num), or set those "
                             f"pixels to 255 in the label map")
        finite = score[~bad]
        score = score.copy()
        score[bad] = finite.min() if finite.size else 0
        self._masked.add(sample.id)
        return score

    def predict_samples(self, samples: "list[Sample]") -> MethodOutput:
        return MethodOutput(np.stack([self.load(s) for s in samples]))

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "kind": "precomputed", "scores_dir": str(self.scores_dir),
                "score_dtype": "/".join(sorted(self._dtypes)) or None,
                "score_format": "/".join(sorted(self._formats)) or None,
                "smiyc_layout": list(self.smiyc) if self.smiyc else None,
                "resize": "bilinear" if self.resize else None, "resized_maps": len(self._resized),
                "nonfinite_on_ignore_maps": len(self._masked)}
