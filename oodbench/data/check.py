"""``oodbench data check``: read every sample of every split of a dataset copy and report all problems found.

Uses the loaders' own checks (file pairing, counts, label values, image/label sizes), catching each
DatasetError per split and per sample so one broken file does not hide the others; adds card-level checks
(expected counts, sample ids, canonical label values, sha256 checksums from the card's ``[checksums]``)."""
from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..errors import DatasetError
from .base import DATASETS, IGNORE_LABEL, ID_LABEL, OOD_LABEL, SkippedFileWarning, hashing_progress
from .cards import list_cards, load_card

CANONICAL = np.array([ID_LABEL, OOD_LABEL, IGNORE_LABEL])


@dataclass
class SplitReport:
    split: str
    num_samples: int | None = None
    fingerprint: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class CheckReport:
    dataset: str
    root: str | None
    splits: list[SplitReport] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # dataset-wide (checksums, card)

    @property
    def ok(self) -> bool:
        return not self.problems and all(s.ok for s in self.splits)

    def render(self) -> str:
        lines = [f"dataset {self.dataset} at {self.root or '(default location)'}"]
        for s in self.splits:
            head = f"  {s.split}: " + ("OK" if s.ok else f"{len(s.problems)} problem(s)")
            if s.num_samples is not None:
                head += f" ({s.num_samples} samples)"
            if s.fingerprint:
                head += f" fingerprint {s.fingerprint}"
            lines.append(head)
            lines += [f"    - {p}" for p in s.problems]
        if self.problems:
            lines.append(f"  dataset-wide: {len(self.problems)} problem(s)")
            lines += [f"    - {p}" for p in self.problems]
        lines.append("result: " + ("OK" if self.ok else "PROBLEMS FOUND"))
        return "\n".join(lines)


def card_splits(name: str) -> dict[str, dict[str, Any]]:
    """``{split: table}`` of the dataset card ``datasets/<name>.toml``; empty without a card."""
    if name not in list_cards():
        return {}
    splits = load_card(name).get("splits", {})
    return {k: (v if isinstance(v, dict) else {}) for k, v in splits.items()}


def _construct(name: str, root: Any, split: str, options: dict[str, Any], report: SplitReport):
    """The dataset of one split, or None. A failed count check is reported, then the split is built again
    without it, so its samples are still read."""
    try:
        with warnings.catch_warnings(record=True) as skipped:
            warnings.simplefilter("always", SkippedFileWarning)
            ds = DATASETS.create(name, root=root, split=split, **options)
        for w in skipped:  # a file the loader skipped is a problem of the copy; other warnings pass on
            if issubclass(w.category, SkippedFileWarning):
                report.problems.append(str(w.message))
            else:
                warnings.warn(w.message, w.category, stacklevel=2)
        return ds
    except DatasetError as exc:
        report.problems.append(str(exc))
    if "expected" in options:
        return None
    try:
        return DATASETS.create(name, root=root, split=split, **options, expected=False)
    except (DatasetError, TypeError):
        return None


def check_split(name: str, root: Any, split: str, options: dict[str, Any], expected: int | None,
                deep: bool = False, progress: bool = False) -> SplitReport:
    report = SplitReport(split)
    ds = _construct(name, root, split, options, report)
    if ds is None:
        return report
    report.num_samples = len(ds)
    if expected is not None and "expected" not in options and len(ds) != expected and not report.problems:
        report.problems.append(f"{ds.root}: found {len(ds)} samples in split {split!r}, the dataset card says "
                               f"{expected}; pass --option expected=N for a partial or synthetic copy")
    ids = ds.ids
    dupes = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) != len(ids) else []
    if dupes:
        report.problems.append(f"duplicate sample ids: {dupes[:5]}")
    bad_ids = [i for i in ids if not i or "/" in i or "\\" in i]
    if bad_ids:
        report.problems.append(f"sample ids that are not file stems: {bad_ids[:5]}")
    for i in tqdm(range(len(ds)), desc=f"checking {name}/{split}", unit="img", disable=not progress):
        try:
            sample = ds[i]
        except DatasetError as exc:
            report.problems.append(str(exc))
            continue
        except Exception as exc:  # noqa: BLE001 - a loader bug on one file must not hide the rest
            report.problems.append(f"sample {ids[i]!r}: {type(exc).__name__}: {exc}")
            continue
        if ds.label_kind == "ood" and sample.label is not None:
            bad = np.setdiff1d(np.unique(sample.label), CANONICAL)
            if bad.size:
                report.problems.append(f"sample {sample.id!r}: the loader produced label values {bad.tolist()[:10]} "
                                       f"outside 0/1/255")
    try:
        with hashing_progress(progress):
            report.fingerprint = ds.fingerprint(deep=deep)
    except OSError as exc:
        report.problems.append(f"cannot fingerprint the split: {exc}")
    return report


def check_checksums(root: Path, checksums: dict[str, str], progress: bool = False) -> list[str]:
    """Problems with the card's ``[checksums]`` (path relative to the data root -> sha256)."""
    problems = []
    for rel, want in tqdm(sorted(checksums.items()), desc="checksums", unit="file", disable=not progress):
        path = root / rel
        if not path.is_file():
            problems.append(f"{path}: missing (listed in the card's checksums)")
            continue
        with path.open("rb") as fh:
            got = hashlib.file_digest(fh, "sha256").hexdigest()
        if got.lower() != str(want).lower():
            problems.append(f"{path}: sha256 {got} differs from the card's {want}; re-download this file")
    return problems


def check_dataset(name: str, root: str | Path | None = None, splits: list[str] | None = None,
                  options: dict[str, Any] | None = None, deep: bool = False, progress: bool = False) -> CheckReport:
    """Check each split (the card's, unless ``splits`` is given) and the card's checksums; ``progress``: tqdm bars
    on stderr over the samples read and, with ``deep``, the frames hashed."""
    options = dict(options or {})
    DATASETS.get(name)  # unknown names fail here, with close matches
    table = card_splits(name)
    if not splits:
        splits = list(table)
        if not splits:
            raise DatasetError(f"dataset {name!r} has no card with a [splits] table (datasets/{name}.toml); "
                               f"name the splits to check with --split")
    report = CheckReport(name, str(root) if root is not None else None)
    for split in splits:
        count = table.get(split, {}).get("count")
        report.splits.append(check_split(name, root, split, options, count if isinstance(count, int) else None, deep,
                                         progress))
    checksums = load_card(name).get("checksums") if name in list_cards() else None
    if checksums:
        if root is None:
            report.problems.append("the card lists checksums; pass --data-root to verify them")
        else:
            report.problems += check_checksums(Path(root), checksums, progress)
    return report
