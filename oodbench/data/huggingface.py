"""``huggingface``: a split of a Hugging Face ``datasets`` dataset (a local ``save_to_disk`` folder or a hub id).

The ``datasets`` package (extra ``hf``) is imported only when this loader is created, so oodbench works
without it. Each row holds an image column and a label column; ``mapping`` turns native label values into
the canonical 0 in-distribution / 1 OoD / 255 ignore, either a dict ``{native: canonical}`` (values not
listed are rejected) or a name: ``canonical`` (0/1/255 as is), ``roadanomaly`` (0 -> 0, 2 -> 1),
``smiyc`` (0 -> 0, 1 -> 1, any other value -> 255, as the SegmentMeIfYouCan code). ``revision`` pins a hub
dataset's branch, tag or commit; ``id_column`` names the column whose strings are the sample ids (default: row
numbers, ``000000``). The fingerprint uses public ``datasets`` API only: the sha256 of the split's Arrow files
(``Dataset.cache_files``), or with ``deep`` of the decoded rows."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError, UnknownSplitError
from .base import IGNORE_LABEL, Dataset, Sample, check_count, check_values, register_dataset

NAMED_MAPPINGS: dict[str, dict[int, int] | None] = {
    "canonical": {0: 0, 1: 1, 255: 255},
    "roadanomaly": {0: 0, 2: 1},
    "smiyc": None,  # 0 -> 0, 1 -> 1, everything else -> 255
}
# Sample ids name files (the score cache's <id>.npz, a scores folder's <id>.npy): no folders, no hidden names
UNSAFE_ID = re.compile(r"^$|^\.|[/\\\x00-\x1f]")


def _lut(mapping: str | dict) -> tuple[np.ndarray, np.ndarray | None, str]:
    """(lookup table, allowed native values or None for "any", description)."""
    if isinstance(mapping, str):
        if mapping not in NAMED_MAPPINGS:
            raise DatasetError(f"unknown huggingface mapping {mapping!r}; valid names: {', '.join(NAMED_MAPPINGS)} "
                               f"or a dict {{native: canonical}}")
        table = NAMED_MAPPINGS[mapping]
        if table is None:
            lut = np.full(256, IGNORE_LABEL, dtype=np.uint8)
            lut[0], lut[1] = 0, 1
            return lut, None, mapping
    else:
        table = {int(k): int(v) for k, v in dict(mapping).items()}
    bad = {k: v for k, v in table.items() if not 0 <= k <= 255 or v not in (0, 1, 255)}
    if bad:
        raise DatasetError(f"huggingface mapping {bad} is invalid: native values must be 0..255 and canonical 0, 1 or 255")
    lut = np.full(256, IGNORE_LABEL, dtype=np.uint8)
    for k, v in table.items():
        lut[k] = v
    return lut, np.array(sorted(table)), mapping if isinstance(mapping, str) else json.dumps(table, sort_keys=True)


def _import_datasets():
    try:
        import datasets as hf
    except ImportError as exc:
        raise DatasetError("the huggingface loader needs the `datasets` package: pip install 'oodbench[hf]'") from exc
    if not hasattr(hf, "load_from_disk"):  # e.g. the repository's datasets/ cards folder as a namespace package
        raise DatasetError("the huggingface loader needs the `datasets` package (found only "
                           f"{list(getattr(hf, '__path__', []))}): pip install 'oodbench[hf]'")
    return hf


def _check_revision(revision: Any, source: str, local: bool) -> str | None:
    """The revision to load: a string for a hub id; None for a local folder, which holds one version only."""
    if revision is None:
        return None
    if not isinstance(revision, str) or not revision:
        raise DatasetError(f"huggingface revision={revision!r} for {source} must be a branch, tag or commit hash "
                           f"string (on the command line a revision of digits only is read as a number and loses "
                           f"its leading zeros: pass the full 40-character commit hash)")
    if local:
        raise DatasetError(f"{source}: revision={revision!r} applies to hub ids only; this is a local save_to_disk "
                           f"folder, which holds one version (the record's fingerprint pins its content). Drop the "
                           f"revision option, or pass the hub id as path= to load that revision")
    return revision


class HFDataset(Dataset):
    name = "huggingface"
    label_kind = "ood"

    def __init__(self, root: str | Path | None = None, split: str = "test", path: str | None = None,
                 image_column: str = "image", label_column: str = "label", mapping: str | dict = "canonical",
                 expected: int | None = None, revision: str | None = None, id_column: str | None = None):
        hf = _import_datasets()
        source = path if path is not None else root
        if source is None:
            raise DatasetError("the huggingface loader needs path=<save_to_disk folder or hub id> (or --data-root)")
        super().__init__(Path(str(source)), split)
        self.source = str(source)
        folder = Path(self.source).expanduser()
        self.local = folder.is_dir()
        if not self.local and self.source.startswith(("/", ".", "~")):
            raise DatasetError(f"{self.source}: no such folder; path= takes a save_to_disk folder or a hub id "
                               f"(user/name)")
        self.revision = _check_revision(revision, self.source, self.local)
        self._lut, self._allowed, self.mapping = _lut(mapping)
        self.image_column, self.label_column, self.id_column = image_column, label_column, id_column
        try:
            if self.local:
                data = hf.load_from_disk(str(folder))
                if isinstance(data, hf.DatasetDict):
                    if split not in data:
                        raise UnknownSplitError(f"unknown huggingface split {split!r} in {self.source}; valid splits: "
                                                f"{', '.join(data)}")
                    data = data[split]
            else:
                data = hf.load_dataset(self.source, split=split, revision=self.revision)
        except DatasetError:
            raise
        except Exception as exc:  # noqa: BLE001 - datasets raises many types; name the source
            at = f" at revision {self.revision!r}" if self.revision else ""
            raise DatasetError(f"{self.source}: cannot load split {split!r}{at} with `datasets` ({exc})") from exc
        for role, column in (("image", image_column), ("label", label_column), ("id", id_column)):
            if column is not None and column not in data.column_names:
                raise DatasetError(f"{self.source}: no column {column!r}; columns: {', '.join(data.column_names)} "
                                   f"(split {split!r}; name the {role} column with {role}_column=)")
        self._data = data
        ids = self._ids(data) if id_column is not None else [f"{i:06d}" for i in range(len(data))]
        self.files = [(None, None, i) for i in ids]
        self._fingerprints: dict[bool, str] = {}
        check_count(len(self.files), expected, Path(self.source), f"{split} rows")

    def _ids(self, data) -> list[str]:
        """The id column's strings, refused where they are not strings, cannot name a file, or repeat."""
        where = f"{self.source}[{self.split}] column {self.id_column!r}"
        ids = list(data[self.id_column])
        for row, value in enumerate(ids):
            if not isinstance(value, str):
                raise DatasetError(f"{where}: row {row} holds {value!r} ({type(value).__name__}), not a string; cast "
                                   f"the column to strings (Dataset.cast_column(..., Value('string'))) or leave "
                                   f"id_column unset to use row numbers")
            if UNSAFE_ID.search(value):
                raise DatasetError(f"{where}: row {row} holds {value!r}, which cannot be a sample id (ids name files: "
                                   f"no empty value, leading '.', '/', '\\' or control character)")
        seen: dict[str, int] = {}
        repeated = []
        for row, value in enumerate(ids):
            if value in seen:
                repeated.append(f"{value!r} (rows {seen[value]} and {row})")
            seen.setdefault(value, row)
        if repeated:
            raise DatasetError(f"{where}: {len(repeated)} ids are duplicated, e.g. {', '.join(repeated[:3])}; sample "
                               f"ids must be unique: pick a unique column or leave id_column unset")
        return ids

    def __getitem__(self, index: int) -> Sample:  # type: ignore[override]
        row = self._data[int(index)]
        image = np.asarray(_pil(row[self.image_column]).convert("RGB"), dtype=np.uint8)
        native = np.asarray(_pil(row[self.label_column]))
        where = Path(f"{self.source}[{self.split}][{index}].{self.label_column}")
        if native.ndim != 2:
            raise DatasetError(f"{where}: label has shape {native.shape}, expected a single-channel HxW map")
        if native.shape != image.shape[:2]:
            raise DatasetError(f"{where}: label size {native.shape[1]}x{native.shape[0]} differs from image size "
                               f"{image.shape[1]}x{image.shape[0]}")
        label = self._encode_label(native, where)
        return Sample(self.files[index][2], image, label,
                      {"dataset": self.name, "split": self.split, "label_kind": self.label_kind})

    def _encode_label(self, native: np.ndarray, path: Path) -> np.ndarray:
        if self._allowed is not None:
            check_values(native, self._allowed, path, f"huggingface mapping {self.mapping}")
        elif native.max(initial=0) > 255 or native.min(initial=0) < 0:
            raise DatasetError(f"{path}: label values outside 0..255")
        return self._lut[native.astype(np.int64)]

    def fingerprint(self, deep: bool = False) -> str:
        """sha256 of the options that shape the samples and of the split's Arrow files (``Dataset.cache_files``);
        ``deep`` (or a split held in memory, without files): of every decoded row instead. Computed once."""
        if deep not in self._fingerprints:
            h = hashlib.sha256()
            files = [Path(f["filename"]) for f in self._data.cache_files]
            kind = "rows" if deep or not files else "arrow"
            header = {"kind": kind, "hub_id": None if self.local else self.source, "revision": self.revision,
                      "columns": [self.image_column, self.label_column, self.id_column], "mapping": self.mapping,
                      "rows": len(self)}
            h.update(json.dumps(header, sort_keys=True).encode())
            if kind == "arrow":
                for file in files:
                    h.update(file.name.encode())
                    h.update(_file_sha256(file))
            else:
                for index in range(len(self)):
                    sample = self[index]
                    h.update(json.dumps([sample.id, sample.image.shape]).encode())
                    h.update(sample.image.tobytes())
                    h.update(sample.label.tobytes())
            self._fingerprints[deep] = h.hexdigest()
        return self._fingerprints[deep]

    def describe(self) -> dict[str, Any]:
        """Where the rows came from, without local paths: the hub id and revision, or the folder's name."""
        source = Path(self.source).expanduser().resolve().name if self.local else self.source
        return {**super().describe(), "source": source,
                "source_kind": "save_to_disk" if self.local else "hub", "revision": self.revision,
                "image_column": self.image_column, "label_column": self.label_column, "id_column": self.id_column,
                "mapping": self.mapping}


def _file_sha256(path: Path) -> bytes:
    try:
        with path.open("rb") as fh:
            return hashlib.file_digest(fh, "sha256").digest()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read this Arrow file of the dataset ({exc}); re-save or re-download "
                           f"the dataset") from exc


def _pil(value):
    from PIL import Image

    if isinstance(value, Image.Image):
        return value
    if isinstance(value, dict) and value.get("bytes") is not None:
        import io

        return Image.open(io.BytesIO(value["bytes"]))
    if isinstance(value, dict) and value.get("path"):
        return Image.open(value["path"])
    return Image.fromarray(np.asarray(value))


@register_dataset("huggingface")
def huggingface(root=None, split: str = "test", path: str | None = None, image_column: str = "image",
                label_column: str = "label", mapping: str | dict = "canonical", expected: int | None = None,
                revision: str | None = None, id_column: str | None = None) -> HFDataset:
    return HFDataset(root, split, path, image_column, label_column, mapping, expected, revision, id_column)
