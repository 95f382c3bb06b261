"""Regression check of fresh records against a committed baseline (``leaderboard/ci/baseline.json``).

The baseline is a compact JSON mapping ``method/dataset/split`` to selected metrics, written from records
by ``write_baseline``. ``compare`` gives one row per metric with a verdict, and a Markdown table for a pull
request comment. Every metric has a direction (higher or lower is better) and an absolute tolerance: a
change against its direction by more than the tolerance is a regression. Rates (fractions in [0, 1]) default
to 0.005; segment counts to 0, since the embedded benchmark is deterministic for a fixed seed on CPU.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from tabulate import tabulate

from ..errors import OodbenchError
from ..files import atomic_write
from .catalogue import CATALOGUE, RATES, Metric, lookup
from .store import entry_name
from .validate import check_record

FORMAT = "oodbench-ci-baseline/1"
RATE_TOLERANCE, COUNT_TOLERANCE = 0.005, 0.0
EPS = 1e-12  # float noise that never counts as a change
COMPARED = (*RATES, "fp_before", "fn_before", "fp_after", "fn_after", "meta_auroc", "meta_ap")
METRICS: dict[str, Metric] = {name: CATALOGUE[name] for name in COMPARED}


def tolerance(metric: Metric) -> float:
    return RATE_TOLERANCE if metric.rate else COUNT_TOLERANCE


def _tolerances(overrides: dict[str, float] | None) -> dict[str, float]:
    """Each compared metric's tolerance: its kind's default, or the given override."""
    return {name: tolerance(spec) for name, spec in METRICS.items()} | dict(overrides or {})


VERDICTS = {"ok": "✅", "regression": "❌", "new": "🆕", "missing": "missing"}


def parse_tolerances(items: Iterable[str]) -> dict[str, float]:
    """``["ap=0.01", "fp_after=2"]`` -> {metric: absolute tolerance}; unknown metrics and bad values raise."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in METRICS:
            raise OodbenchError(f"--tolerance {item!r}: write METRIC=ABS with METRIC one of {', '.join(METRICS)}")
        try:
            tol = float(value)
        except ValueError:
            raise OodbenchError(f"--tolerance {item!r}: {value!r} is not a number") from None
        if not math.isfinite(tol) or tol < 0:
            raise OodbenchError(f"--tolerance {item!r}: the tolerance must be a finite number >= 0")
        out[name] = tol
    return out


def record_key(record: dict) -> str:
    """method/dataset/split, the method named as its leaderboard row (a local checkpoint's run is apart)."""
    return f"{entry_name(record)}/{record['dataset']['name']}/{record['dataset']['split']}"


def selected_metrics(record: dict) -> dict[str, float]:
    """The catalogue metrics the record defines (undefined ones, null in records, are left out)."""
    out = {}
    for name, spec in METRICS.items():
        value = lookup(record.get("metrics", {}), spec.path)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[name] = round(float(value), 6) if spec.rate else int(value)
    return out


def load_records(sources: Iterable[str | Path]) -> dict[str, dict]:
    """Records from files and folders (``*.json`` in a folder); the newest (provenance time) per key wins, as
    fresh CI runs should. Each is checked against the schema and its content address (RecordError names the
    file and field); JSON files that are not records (no method, dataset and metrics) are skipped."""
    found: dict[str, dict] = {}
    for src in sources:
        src = Path(src)
        if src.is_dir():
            paths = sorted(p for p in src.glob("*.json") if not p.name.startswith("."))
        elif src.is_file():
            paths = [src]
        else:
            raise OodbenchError(f"{src}: no such record file or folder")
        for path in paths:
            try:
                rec = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise OodbenchError(f"{path}: not a readable JSON record ({exc})") from None
            if not isinstance(rec, dict) or not {"method", "dataset", "metrics"} <= rec.keys():
                continue
            check_record(path, rec)
            key = record_key(rec)
            when = rec.get("provenance", {}).get("utc_time", "")
            if key not in found or when >= found[key].get("provenance", {}).get("utc_time", ""):
                found[key] = rec
    return found


def baseline_entry(record: dict) -> dict:
    return {"benchmark_version": record.get("benchmark_version"), "seed": record.get("seed"),
            "checkpoint_sha256": record.get("method", {}).get("checkpoint_sha256"),
            "metrics": selected_metrics(record)}


def read_baseline(path: str | Path) -> dict:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise OodbenchError(f"{path}: no baseline; create it with `oodbench compare --write-baseline --baseline "
                            f"{path} --records DIR`") from None
    except json.JSONDecodeError as exc:
        raise OodbenchError(f"{path}: invalid JSON ({exc})") from None
    if data.get("format") != FORMAT or not isinstance(data.get("entries"), dict):
        raise OodbenchError(f"{path}: not an oodbench baseline (expected \"format\": \"{FORMAT}\" and \"entries\")")
    return data


def write_baseline(path: str | Path, records: dict[str, dict], replace: bool = False) -> dict:
    """Create or update the baseline: entries of ``records`` are (re)written, others kept unless ``replace``.
    Written atomically, keys sorted, so the file diffs cleanly in review."""
    path = Path(path)
    entries = {} if replace or not path.exists() else dict(read_baseline(path)["entries"])
    entries.update({key: baseline_entry(rec) for key, rec in records.items()})
    data = {"format": FORMAT,
            "about": "oodbench CI regression baseline: method/dataset/split -> metrics (fractions; counts as "
                     "integers). Update with `oodbench compare --write-baseline`.",
            "entries": dict(sorted(entries.items()))}
    atomic_write(path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    return data


@dataclass
class Row:
    key: str
    metric: str
    baseline: float | None
    now: float | None
    verdict: str  # ok | regression | new | missing
    note: str = ""

    @property
    def delta(self) -> float | None:
        return None if self.baseline is None or self.now is None else self.now - self.baseline


def _judge(metric: str, base: float, now: float, tol: float) -> tuple[str, str]:
    spec = METRICS[metric]
    gain = (now - base) if spec.higher_is_better else (base - now)
    if gain < -(tol + EPS):
        return "regression", f"worse by more than {tol:g}"
    return "ok", "better" if gain > tol + EPS else ""


def compare(baseline: dict, records: dict[str, dict], tolerances: dict[str, float] | None = None) -> list[Row]:
    """One row per (entry, metric): baseline entries against the records of the same key, then record keys the
    baseline lacks (new)."""
    tol = _tolerances(tolerances)
    rows: list[Row] = []
    for key, entry in baseline["entries"].items():
        rec = records.get(key)
        base = entry.get("metrics", {})
        if rec is None:
            rows += [Row(key, m, v, None, "missing", "no record") for m, v in base.items()]
            continue
        now = selected_metrics(rec)
        for m, v in base.items():
            if m not in METRICS:
                rows.append(Row(key, m, v, None, "missing", "metric unknown to this oodbench"))
            elif m not in now:
                rows.append(Row(key, m, v, None, "missing", "not in the record"))
            else:
                rows.append(Row(key, m, v, now[m], *_judge(m, v, now[m], tol[m])))
        rows += [Row(key, m, None, v, "new", "not in the baseline") for m, v in now.items() if m not in base]
    for key in sorted(set(records) - set(baseline["entries"])):
        rows += [Row(key, m, None, v, "new", "no baseline entry") for m, v in selected_metrics(records[key]).items()]
    return rows


def provenance_notes(baseline: dict, records: dict[str, dict], rows: list[Row] | None = None) -> list[str]:
    """Why numbers may differ legitimately: another benchmark version or seed; for keys with a regression, also
    another model checkpoint file (its sha256 alone may change with file metadata, so it is no verdict)."""
    failing = {r.key for r in rows or () if r.verdict == "regression"}
    notes = []
    for key, entry in baseline["entries"].items():
        rec = records.get(key)
        if rec is None:
            continue
        now = baseline_entry(rec)
        for name, why in (("benchmark_version", "metric definitions changed: regenerate the baseline"),
                          ("seed", "another seed"), ("checkpoint_sha256", "another model checkpoint file")):
            old, new = entry.get(name), now.get(name)
            if old == new or (name == "checkpoint_sha256" and key not in failing):
                continue
            if name == "checkpoint_sha256":
                old, new = str(old)[:12], str(new)[:12]
            notes.append(f"`{key}`: {name} {old} -> {new} ({why})")
    return notes


def _fmt(metric: str, value: float | None, signed: bool = False) -> str:
    if value is None:
        return ""
    if metric not in CATALOGUE or CATALOGUE[metric].rate:
        return f"{100 * value:+.2f}" if signed else f"{100 * value:.2f}"
    return f"{int(value):+d}" if signed else str(int(value))


def failed(rows: list[Row], allow_missing: bool = False) -> bool:
    return any(r.verdict == "regression" or (r.verdict == "missing" and not allow_missing) for r in rows)


def markdown(rows: list[Row], tolerances: dict[str, float] | None = None, notes: list[str] | None = None,
             allow_missing: bool = False) -> str:
    """The pull-request comment: a status line, the table (rates in percent, deltas in points), notes."""
    tol = _tolerances(tolerances)
    bad = [r for r in rows if r.verdict == "regression"]
    missing = [r for r in rows if r.verdict == "missing"]
    status = "❌ regression" if failed(rows, allow_missing) else "✅ no regression"
    head = (f"### oodbench regression check: {status}\n\n{len(rows)} metric(s) compared; {len(bad)} regression(s), "
            f"{len(missing)} missing, {sum(r.verdict == 'new' for r in rows)} new. Rates in %, deltas in points; "
            f"absolute tolerances (fractions): rates {RATE_TOLERANCE:g}, counts {COUNT_TOLERANCE:g}")
    custom = {m: t for m, t in tol.items() if t != tolerance(METRICS[m])}
    if custom:
        head += " (overridden: " + ", ".join(f"{m}={t:g}" for m, t in custom.items()) + ")"
    table = []
    for r in rows:
        method, dataset, split = (r.key.split("/", 2) + ["", ""])[:3]
        verdict = VERDICTS[r.verdict] + (f" {r.note}" if r.note else "")
        table.append([method, f"{dataset}/{split}", r.metric, _fmt(r.metric, r.baseline), _fmt(r.metric, r.now),
                      _fmt(r.metric, r.delta, signed=True), verdict])
    body = tabulate(table, headers=["method", "dataset", "metric", "baseline", "now", "delta", "verdict"],
                    tablefmt="github", disable_numparse=True)
    tail = "".join(f"\n- {n}" for n in notes or [])
    return f"{head}.\n\n{body}\n" + (f"\nNotes:{tail}\n" if tail else "")
