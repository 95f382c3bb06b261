"""Result records: one immutable, content-addressed JSON document per run, with full provenance."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
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
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
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


def make_record(*, method: dict, dataset: dict, metrics: dict, cost: dict, conventions: dict | None = None,
                extra: dict | None = None) -> dict[str, Any]:
    """A record of one evaluation; ``extra`` adds top-level fields (e.g. the seed). The field digests are
    added here, so the dict equals what write_record writes and read_record returns."""
    return seal({
        "schema_version": SCHEMA_VERSION, "benchmark_version": BENCHMARK_VERSION,
        "method": method, "dataset": dataset, "metrics": metrics,
        "conventions": {**CONVENTIONS, **(conventions or {})}, "provenance": provenance(), "cost": cost,
        **(extra or {}),
    })


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


def write_record(record: dict, out_dir: str | Path) -> Path:
    """Validate ``record`` against the schema and write it under a name derived from its content; never
    rewrites an existing file (an identical record already there is kept; a different one is an error)."""
    record = seal(record)
    out_dir = Path(out_dir)
    validate_record(record, str(out_dir / f"(new record of {_name_of(record.get('method'))} on "
                                          f"{_name_of(record.get('dataset'))})"))
    path = out_dir / record_name(record)
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".record-", suffix=".tmp")
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
