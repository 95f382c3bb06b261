"""Result records: one immutable, content-addressed JSON document per run, with full provenance."""
from __future__ import annotations

import json
import os
import platform
import secrets
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from .. import __version__
from .digest import DIGESTS_KEY, field_digests, record_digest
from .validate import RecordError, check_file, validate_record

SCHEMA_VERSION = 1  # layout of a record: oodbench/leaderboard/record.schema.json
# Bump whenever a metric definition changes. 2: LostAndFound mapping=metaood keeps random non-hazards in the meta
# stage's segments (as meta-ood); fishyscapes_laf uses the anomaly track's size filters; --meta-protocol loo
# z-scores over all segments. (Records of the embedded benchmark are numerically unchanged.)
BENCHMARK_VERSION = 2

CONVENTIONS = {
    "labels": "0 in-distribution, 1 OoD (positive), 255 ignored",
    "scores": "higher = more OoD",
    "pooling": "pooled over every non-ignored pixel of the split",
    "auroc": "trapezoid area under the ROC curve",
    "ap": "step sum over thresholds, as sklearn.metrics.average_precision_score",
    "fpr95": "FPR at the first threshold (descending) whose TPR >= 0.95",
    "ties": "equal scores form one threshold step, as scikit-learn",
}
_LIBRARIES = ("numpy", "scipy", "scikit-learn", "torch", "pillow")


def git_commit() -> str | None:
    """The commit of the oodbench checkout, or None when installed from a wheel."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=Path(__file__).parent,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


PATH_FLAGS = ("--data-root", "--labels", "--scores", "--checkpoint", "--init", "--proxy-root", "--out", "--records",
              "--baseline", "--output", "--cache")


def redact_paths(argv: list[str]) -> list[str]:
    """The command line with the values of path options cut to their last component: a shared record names what was
    run, not where it lay on someone's disk."""
    out, hide = [], False
    for arg in argv:
        flag, eq, value = arg.partition("=")
        if hide:
            arg = Path(arg).name or arg
        elif eq and flag in PATH_FLAGS:
            arg = f"{flag}={Path(value).name or value}"
        out.append(arg)
        hide = arg in PATH_FLAGS
    return out


def provenance() -> dict[str, Any]:
    libs = {}
    for name in _LIBRARIES:
        try:
            libs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            libs[name] = None
    return {
        "oodbench_version": __version__, "git_commit": git_commit(), "libraries": libs,
        "python": platform.python_version(), "platform": platform.platform(),
        "command": " ".join([Path(sys.argv[0]).name] + redact_paths(sys.argv[1:])),
        "utc_time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def json_safe(obj: Any) -> Any:
    """NaN/inf (undefined metrics) become null, so records are strict JSON."""
    if isinstance(obj, float):
        return obj if obj == obj and abs(obj) != float("inf") else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:
        return json_safe(obj.item())
    return obj


# Fields that hold a path on the machine that made the record: left out of records unless the caller asks
# (keep_paths=True), so that a shared or committed record folder does not carry anyone's home folder. What
# identifies the data is kept: dataset name, split and fingerprint. Readers never need these fields.
LOCAL_PATHS = {"dataset": ("data_root",)}


def _local_path(value: Any) -> bool:
    return isinstance(value, str) and (value.startswith("~") or Path(value).is_absolute())


def drop_local_paths(record: dict) -> dict:
    """``record`` without the LOCAL_PATHS fields, and dataset options that are absolute paths (e.g. ``path=``,
    ``laf_root=``) cut to their last component (a shallow copy; the input is not changed)."""
    out = dict(record)
    for section, fields in LOCAL_PATHS.items():
        if isinstance(out.get(section), dict) and any(f in out[section] for f in fields):
            out[section] = {k: v for k, v in out[section].items() if k not in fields}
    options = out.get("dataset", {}).get("options") if isinstance(out.get("dataset"), dict) else None
    if isinstance(options, dict) and any(_local_path(v) for v in options.values()):
        out["dataset"] = {**out["dataset"], "options": {k: Path(v).name if _local_path(v) else v
                                                        for k, v in options.items()}}
    return out


def make_record(*, method: dict, dataset: dict, metrics: dict, cost: dict, conventions: dict | None = None,
                extra: dict | None = None, keep_paths: bool = False) -> dict[str, Any]:
    """A record of one evaluation; ``extra`` adds top-level fields (e.g. the seed). The field digests are
    added here, so the dict equals what write_record writes and read_record returns. Local paths
    (``dataset.data_root``, see LOCAL_PATHS) are left out unless ``keep_paths``; pass the same ``keep_paths`` to
    write_record."""
    record = {
        "schema_version": SCHEMA_VERSION, "benchmark_version": BENCHMARK_VERSION,
        "method": method, "dataset": dataset, "metrics": metrics,
        "conventions": {**CONVENTIONS, **(conventions or {})}, "provenance": provenance(), "cost": cost,
        **(extra or {}),
    }
    return seal(record if keep_paths else drop_local_paths(record))


def seal(record: dict) -> dict:
    """``record`` as strict JSON values with fresh field digests: what write_record writes (call it again
    after editing a record in memory)."""
    record = json_safe({k: v for k, v in record.items() if k != DIGESTS_KEY})
    return {**record, DIGESTS_KEY: field_digests(record)}


def _name_of(section: Any) -> str:
    return str(section.get("name", "?")) if isinstance(section, dict) else "?"


def record_name(record: dict) -> str:
    """The content-addressed file name: <dataset>-<split>-<method>-<16 hex digits of record_digest>.json."""
    ds, m = record["dataset"], record["method"]
    return f"{ds['name']}-{ds['split']}-{m['name']}-{record_digest(record)[:16]}.json"


def _open_temporary(out_dir: Path) -> tuple[int, str]:
    """A new hidden file in ``out_dir`` created with mode 0666 less the umask (mkstemp would make it 0600, and
    os.link keeps the mode: a shared record folder would hold files only their writer can read)."""
    while True:
        tmp = str(out_dir / f".record-{secrets.token_hex(8)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


def write_record(record: dict, out_dir: str | Path, keep_paths: bool = False) -> Path:
    """Validate ``record`` against the schema and write it under a name derived from its content; never
    rewrites an existing file (an identical record already there is kept; a different one is an error). The file
    gets the umask's mode (0644 under umask 022), so a shared record folder is readable by others. Local paths
    (``dataset.data_root``) are left out unless ``keep_paths``."""
    record = seal(record if keep_paths else drop_local_paths(record))
    out_dir = Path(out_dir)
    validate_record(record, str(out_dir / f"(new record of {_name_of(record.get('method'))} on "
                                          f"{_name_of(record.get('dataset'))})"))
    path = out_dir / record_name(record)
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = _open_temporary(out_dir)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=1, sort_keys=True, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)  # atomic, and fails rather than overwrite; identical content means identical name
    except FileExistsError:  # the name is the content's, so the file there is this record unless it was edited
        try:
            same = read_record(path) == record
        except RecordError as exc:
            raise RecordError(str(path), exc.problems + [("(file)", "holds this name but was edited; not overwritten, "
                                                                    "move it away and write again")]) from None
        if not same:
            raise RecordError(str(path), [("(file)", "holds different content under this name; not overwritten")])
    finally:
        os.unlink(tmp)
    return path


def read_record(path: str | Path) -> dict:
    """One record file, checked against the schema and its content address (RecordError names the field)."""
    return check_file(path)
