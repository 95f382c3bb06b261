"""Score maps computed elsewhere, evaluated as a Method (``oodbench evaluate``), so the record is the same as ``run``'s.

Per sample id the method reads one score map (float16/float32 HxW, higher = more OoD) from the scores folder:
``<dir>/<id>.npy``, ``<dir>/<id>.npz`` (a single array, or the key ``scores`` or ``value``), ``<dir>/<id>.hdf5``
(dataset ``value``), or the SegmentMeIfYouCan output layout ``<dir>/<method>/<dataset>/<id>.hdf5`` (dataset
``value``, float16, as written by road-anomaly-benchmark's ``Evaluation.save_output`` under
``outputs/anomaly_p/``; ``<dir>`` may be ``outputs`` or ``outputs/anomaly_p``). HDF5 needs ``h5py``."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ScoreError
from .methods.base import Method, MethodOutput

if TYPE_CHECKING:
    from .data.base import Sample

NPZ_KEYS = ("scores", "value")
HDF5_KEY = "value"
ACCEPTED_DTYPES = (np.float16, np.float32, np.float64)


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
        self._dtypes: set[str] = set()
        self._formats: set[str] = set()
        self._resized: set[str] = set()  # ids, so a second pass over the split does not count twice

    def setup(self, progress: bool = True) -> dict[str, Any]:
        if not self.scores_dir.is_dir():
            raise ScoreError(f"{self.scores_dir}: no such folder of score maps (--scores)")
        return {}

    def candidates(self, sample_id: str) -> list[Path]:
        """The paths tried for ``sample_id``, in order."""
        d = self.scores_dir
        if self.smiyc is not None:
            method, dataset = self.smiyc
            return [d / method / dataset / f"{sample_id}.hdf5", d / "anomaly_p" / method / dataset / f"{sample_id}.hdf5"]
        return [d / f"{sample_id}{ext}" for ext in (".npy", ".npz", ".hdf5")]

    def _read(self, path: Path, sample_id: str) -> np.ndarray:
        try:
            if path.suffix == ".npy":
                return np.load(path, allow_pickle=False)
            if path.suffix == ".npz":
                with np.load(path, allow_pickle=False) as z:
                    keys = list(z.keys())
                    key = next((k for k in NPZ_KEYS if k in keys), keys[0] if len(keys) == 1 else None)
                    if key is None:
                        raise ScoreError(f"{path}: score file for sample {sample_id!r} holds arrays {keys}; store a "
                                         f"single array or name it one of {list(NPZ_KEYS)}")
                    return z[key]
            h5py = _h5py()
            with h5py.File(path, "r") as f:
                if HDF5_KEY not in f:
                    raise ScoreError(f"{path}: score file for sample {sample_id!r} has no dataset {HDF5_KEY!r} "
                                     f"(it holds {list(f.keys())})")
                return f[HDF5_KEY][()]
        except ScoreError:
            raise
        except (OSError, ValueError) as exc:
            raise ScoreError(f"{path}: cannot read the score file of sample {sample_id!r} ({exc})") from exc

    def load(self, sample: "Sample") -> np.ndarray:
        paths = self.candidates(sample.id)
        path = next((p for p in paths if p.is_file()), None)
        if path is None:
            raise ScoreError(f"no score file for sample {sample.id!r}; expected one of: "
                             f"{', '.join(str(p) for p in paths)}")
        score = self._read(path, sample.id)
        if score.dtype not in ACCEPTED_DTYPES:
            raise ScoreError(f"{path}: scores of sample {sample.id!r} have dtype {score.dtype}; store float16 or "
                             f"float32 (higher = more OoD)")
        if score.ndim == 3 and score.shape[0] == 1:
            score = score[0]
        if score.ndim != 2:
            raise ScoreError(f"{path}: scores of sample {sample.id!r} have shape {score.shape}; expected one HxW map")
        self._dtypes.add(str(score.dtype))
        self._formats.add(path.suffix.lstrip(".") + ("-smiyc" if self.smiyc else ""))
        target = tuple(sample.label.shape)
        if score.shape != target:
            if not self.resize:
                raise ScoreError(f"{path}: score map of sample {sample.id!r} has shape {score.shape}, its label map "
                                 f"{target}; pass --resize (resize=True) to resize scores bilinearly to the labels")
            score = resize_bilinear(score, target)
            self._resized.add(sample.id)
        return score

    def predict_samples(self, samples: "list[Sample]") -> MethodOutput:
        return MethodOutput(np.stack([self.load(s) for s in samples]))

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "kind": "precomputed", "scores_dir": str(self.scores_dir),
                "score_dtype": "/".join(sorted(self._dtypes)) or None,
                "score_format": "/".join(sorted(self._formats)) or None,
                "smiyc_layout": list(self.smiyc) if self.smiyc else None,
                "resize": "bilinear" if self.resize else None, "resized_maps": len(self._resized)}
