"""``huggingface``: a split of a Hugging Face ``datasets`` dataset (a local ``save_to_disk`` folder or a hub id).

The ``datasets`` package (extra ``hf``) is imported only when this loader is created, so oodbench works
without it. Each row holds an image column and a label column; ``mapping`` turns native label values into
the canonical 0 in-distribution / 1 OoD / 255 ignore, either a dict ``{native: canonical}`` (values not
listed are rejected) or a name: ``canonical`` (0/1/255 as is), ``roadanomaly`` (0 -> 0, 2 -> 1),
``smiyc`` (0 -> 0, 1 -> 1, any other value -> 255, as the SegmentMeIfYouCan code)."""
from __future__ import annotations

import hashlib
import json
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


class HFDataset(Dataset):
    name = "huggingface"
    label_kind = "ood"

    def __init__(self, root: str | Path | None = None, split: str = "test", path: str | None = None,
                 image_column: str = "image", label_column: str = "label", mapping: str | dict = "canonical",
                 expected: int | None = None):
        try:
            import datasets as hf
        except ImportError as exc:
            raise DatasetError("the huggingface loader needs the `datasets` package: pip install 'oodbench[hf]'") from exc
        if not hasattr(hf, "load_from_disk"):  # e.g. the repository's datasets/ cards folder as a namespace package
            raise DatasetError("the huggingface loader needs the `datasets` package (found only "
                               f"{list(getattr(hf, '__path__', []))}): pip install 'oodbench[hf]'")
        source = path if path is not None else root
        if source is None:
            raise DatasetError("the huggingface loader needs path=<save_to_disk folder or hub id> (or --data-root)")
        super().__init__(Path(str(source)), split)
        self.source = str(source)
        self._lut, self._allowed, self.mapping = _lut(mapping)
        self.image_column, self.label_column = image_column, label_column
        try:
            if Path(self.source).expanduser().is_dir():
                data = hf.load_from_disk(str(Path(self.source).expanduser()))
                if isinstance(data, hf.DatasetDict):
                    if split not in data:
                        raise UnknownSplitError(f"unknown huggingface split {split!r} in {self.source}; valid splits: "
                                           f"{', '.join(data)}")
                    data = data[split]
            else:
                data = hf.load_dataset(self.source, split=split)
        except DatasetError:
            raise
        except Exception as exc:  # noqa: BLE001 - datasets raises many types; name the source
            raise DatasetError(f"{self.source}: cannot load split {split!r} with `datasets` ({exc})") from exc
        missing = [c for c in (image_column, label_column) if c not in data.column_names]
        if missing:
            raise DatasetError(f"{self.source}: no column {missing[0]!r}; columns: {', '.join(data.column_names)}")
        self._data = data
        self.files = [(None, None, f"{i:06d}") for i in range(len(data))]
        check_count(len(self.files), expected, Path(self.source), f"{split} rows")

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
        h = hashlib.sha256()
        for part in (self.source, self.split, self.image_column, self.label_column, self.mapping,
                     str(getattr(self._data, "_fingerprint", "")), str(len(self))):
            h.update(part.encode())
        return h.hexdigest()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "source": self.source, "mapping": self.mapping}


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
                label_column: str = "label", mapping: str | dict = "canonical", expected: int | None = None) -> HFDataset:
    return HFDataset(root, split, path, image_column, label_column, mapping, expected)
