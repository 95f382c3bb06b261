"""Result records: one immutable, content-addressed JSON document per run, with full provenance."""
from __future__ import annotations

import hashlib
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

SCHEMA_VERSION = 1
BENCHMARK_VERSION = 1  # bump whenever a metric definition changes

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


def _json_safe(obj: Any) -> Any:
    """NaN/inf (undefined metrics) become null, so records are strict JSON."""
    if isinstance(obj, float):
        return obj if obj == obj and abs(obj) != float("inf") else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:
        return _json_safe(obj.item())
    return obj


def make_record(*, method: dict, dataset: dict, metrics: dict, cost: dict, conventions: dict | None = None,
                extra: dict | None = None) -> dict[str, Any]:
    return _json_safe({
        "schema_version": SCHEMA_VERSION, "benchmark_version": BENCHMARK_VERSION,
        "method": method, "dataset": dataset, "metrics": metrics,
        "conventions": {**CONVENTIONS, **(conventions or {})}, "provenance": provenance(), "cost": cost,
        **(extra or {}),
    })


def record_digest(record: dict) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True, allow_nan=False).encode()).hexdigest()


def write_record(record: dict, out_dir: str | Path) -> Path:
    """Write ``record`` under a name derived from its content; never rewrites an existing file."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ds, m = record["dataset"], record["method"]
    path = out_dir / f"{ds['name']}-{ds['split']}-{m['name']}-{record_digest(record)[:16]}.json"
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".record-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=1, sort_keys=True, allow_nan=False)
            f.write("\n")
        os.link(tmp, path)  # fails rather than overwrite; identical content means identical name
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    return path


def read_record(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())
