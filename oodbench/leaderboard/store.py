"""The record store: a folder of content-addressed record files, read and checked all at once."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from ..errors import OodbenchError
from .digest import record_digest
from .validate import RecordError, check_file


def entry_name(record: dict[str, Any]) -> str:
    """The row a record competes for: its method, with the network when ``--network`` chose one other than the method
    card's, and apart when it ran a local checkpoint (``--checkpoint``) that is not the published file, so that a
    private file never stands in for the published model (leaderboard, compare, paper)."""
    method = record["method"]
    info = method.get("model_info") or {}
    parts = [method["network"]] if method.get("network") and info.get("network_source") == "--network" else []
    if info.get("local_override") and not info.get("matches_published"):
        parts.append(f"local checkpoint {str(method.get('checkpoint_sha256') or '?')[:8]}")
    return method["name"] + (f" ({', '.join(parts)})" if parts else "")


@dataclass(frozen=True)
class Record:
    """One checked record file: its path and its JSON content."""

    path: Path
    data: dict[str, Any]

    @cached_property
    def id(self) -> str:
        """The content address (first 16 hex digits of the record digest), unique in a store."""
        return record_digest(self.data)[:16]

    @property
    def method(self) -> str:
        return self.data["method"]["name"]

    @property
    def entry(self) -> str:
        return entry_name(self.data)

    @property
    def table_key(self) -> tuple[str, str, int]:
        """(dataset, split, benchmark_version): records are only ranked against others with the same key."""
        return self.data["dataset"]["name"], self.data["dataset"]["split"], int(self.data["benchmark_version"])

    @property
    def utc_time(self) -> str:
        return self.data["provenance"]["utc_time"]


class BadRecordsError(RecordError):
    """Several record files are bad; ``errors`` holds one RecordError per file."""

    def __init__(self, folder: Path, errors: list[RecordError]):
        self.errors = errors
        self.source, self.problems = str(folder), [p for e in errors for p in e.problems]
        OodbenchError.__init__(self, f"{len(errors)} bad record file(s) in {folder} (skip them with --skip-bad):\n"
                               + "\n".join(str(e) for e in errors))


class BadRecordsWarning(UserWarning):
    """A record file was skipped because it is invalid or was edited after it was written."""


def load_records(folder: str | Path, skip_bad: bool = False) -> list[Record]:
    """Every ``*.json`` record in ``folder``, sorted by file name. Each file is checked against the schema and
    its content address; all bad files are reported at once (RecordError), or with ``skip_bad`` each one is
    skipped with a BadRecordsWarning. Hidden temporary files of writers in progress are ignored."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OodbenchError(f"record folder {folder} is a file, not a folder; give the folder of record files "
                            f"(`oodbench run --out DIR` writes them)")
    if not folder.is_dir():
        raise OodbenchError(f"record folder {folder} does not exist; write records with `oodbench run --out {folder}`")
    records, errors = [], []
    for path in sorted(folder.glob("*.json")):
        try:
            records.append(Record(path, check_file(path)))
        except RecordError as exc:
            errors.append(exc)
    if errors and not skip_bad:
        raise BadRecordsError(folder, errors)
    for exc in errors:
        warnings.warn(f"skipping bad record: {exc}", BadRecordsWarning, stacklevel=2)
    return records
