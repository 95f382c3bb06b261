"""Regression check of fresh records against a committed baseline (``leaderboard/ci/baseline.json``).

The baseline is a compact JSON mapping ``method/dataset/split`` to selected metrics, written from records
by ``write_baseline``. ``compare`` gives one row per metric with a verdict, and a Markdown table for a pull
request comment. Every metric has a direction (higher or lower is better) and an absolute tolerance: a
change against its direction by more than the tolerance is a regression. Rates (fractions in [0, 1]) default
to 0.005; segment counts to 0, since the embedded benchmark is deterministic for a fixed seed on CPU.
A metric that is undefined in the record (null, or NaN in the file) but defined in the baseline is a failure
("undefined"); so is a record of another model checkpoint than the baseline's (``checkpoint_sha256``), whose
numbers compare another model, unless the caller allows it (``--allow-checkpoint-change``).
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
from . import escape
from .catalogue import CATALOGUE, RATES, Metric, lookup
from .store import entry_name
from .validate import RecordError, check_record, read_json

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


VERDICTS = {"ok": "✅", "regression": "❌", "new": "🆕", "missing": "missing", "undefined": "❌ undefined",
            "checkpoint": "❌ checkpoint changed"}
ALLOWED_CHECKPOINT = "⚠️ checkpoint changed (allowed by --allow-checkpoint-change)"
CHECKPOINT_FIX = "another model, so its rows do not compare like with like; if intended, pass --allow-checkpoint-change"


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


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def selected_metrics(record: dict) -> dict[str, float]:
    """The catalogue metrics the record defines (undefined ones, null in records, are left out)."""
    out = {}
    for name, spec in METRICS.items():
        value = lookup(record.get("metrics", {}), spec.path)
        if _number(value):
            out[name] = round(float(value), 6) if spec.rate else int(value)
    return out


def undefined_metrics(record: dict) -> set[str]:
    """The catalogue metrics the record holds as undefined (null; a NaN in the file is read as null), as opposed
    to metrics it does not have at all."""
    out = set()
    for name, spec in METRICS.items():
        section, _, leaf = spec.path.rpartition(".")
        parent = lookup(record.get("metrics", {}), section)
        if isinstance(parent, dict) and leaf in parent and not _number(parent[leaf]):
            out.add(name)
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
            rec = read_json(path)  # RecordError naming the file; NaN is read as null (undefined)
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


def _baseline_problems(data) -> list[str]:
    """What makes ``data`` no oodbench baseline, or [] (each problem names the place)."""
    if not isinstance(data, dict):
        return [f"the top level is a JSON {type(data).__name__}, not an object"]
    if data.get("format") != FORMAT or not isinstance(data.get("entries"), dict):
        return [f"expected \"format\": \"{FORMAT}\" and \"entries\""]
    problems = []
    for key, entry in data["entries"].items():
        if not isinstance(entry, dict):
            problems.append(f"entry {key!r} is a JSON {type(entry).__name__}, not an object")
        elif not isinstance(entry.get("metrics", {}), dict):
            problems.append(f"entry {key!r}: metrics is not an object")
        else:
            problems += [f"entry {key!r}: metric {m} is {v!r}, not a number or null"
                         for m, v in entry.get("metrics", {}).items() if v is not None and not _number(v)]
    return problems


def read_baseline(path: str | Path) -> dict:
    """The baseline file, checked; OodbenchError names the file, the problem and how to make a new one."""
    path = Path(path)
    if path.is_dir():
        raise OodbenchError(f"--baseline {path}: is a folder; give the baseline file, e.g. {path / 'baseline.json'}")
    try:
        data = read_json(path)
    except RecordError as exc:
        if not path.exists():
            raise OodbenchError(f"{path}: no baseline; create it with `oodbench compare --write-baseline --baseline "
                                f"{path} --records DIR`") from None
        raise OodbenchError(f"{path}: not an oodbench baseline: {exc.problems[0][1]}; fix or recreate it with "
                            f"`oodbench compare --write-baseline --replace --baseline {path} --records DIR`") from None
    problems = _baseline_problems(data)
    if problems:
        raise OodbenchError(f"{path}: not an oodbench baseline: {'; '.join(problems)}; fix or recreate it with "
                            f"`oodbench compare --write-baseline --replace --baseline {path} --records DIR`")
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


def checkpoint_change(entry: dict, record: dict) -> tuple[str, str] | None:
    """(old, new) first 12 hex digits of the model checkpoint when the record's differs from the baseline entry's;
    None when they agree or the entry does not say (a baseline written before it stored the checkpoint)."""
    if "checkpoint_sha256" not in entry:
        return None
    old, new = entry.get("checkpoint_sha256"), (record.get("method") or {}).get("checkpoint_sha256")
    return None if old == new else (str(old)[:12], str(new)[:12])


def compare(baseline: dict, records: dict[str, dict], tolerances: dict[str, float] | None = None) -> list[Row]:
    """One row per (entry, metric): baseline entries against the records of the same key, then record keys the
    baseline lacks (new). A key whose record ran another model checkpoint gets a row of its own first (verdict
    "checkpoint") and its metric rows say so; a metric defined in the baseline but undefined in the record is
    "undefined"."""
    tol = _tolerances(tolerances)
    rows: list[Row] = []
    for key, entry in baseline["entries"].items():
        rec = records.get(key)
        base = entry.get("metrics", {})
        if rec is None:
            rows += [Row(key, m, v, None, "missing", "no record") for m, v in base.items()]
            continue
        now, undefined = selected_metrics(rec), undefined_metrics(rec)
        changed = checkpoint_change(entry, rec)
        start = len(rows)
        if changed:
            rows.append(Row(key, "checkpoint", None, None, "checkpoint",
                            f"{changed[0]} -> {changed[1]}: {CHECKPOINT_FIX}"))
        for m, v in base.items():
            if m not in METRICS:
                rows.append(Row(key, m, v, None, "missing", "metric unknown to this oodbench"))
            elif v is None:  # a baseline edited by hand: undefined there
                rows.append(Row(key, m, None, now.get(m), "new", "undefined in the baseline") if m in now
                            else Row(key, m, None, None, "ok", "undefined in both"))
            elif m in now:
                rows.append(Row(key, m, v, now[m], *_judge(m, v, now[m], tol[m])))
            elif m in undefined:
                rows.append(Row(key, m, v, None, "undefined", "in the record (null or NaN), defined in the baseline"))
            else:
                rows.append(Row(key, m, v, None, "missing", "not in the record"))
        rows += [Row(key, m, None, v, "new", "not in the baseline") for m, v in now.items() if m not in base]
        for r in rows[start + 1:] if changed else ():
            r.note = f"{r.note} (other checkpoint)".strip()
    for key in sorted(set(records) - set(baseline["entries"])):
        rows += [Row(key, m, None, v, "new", "no baseline entry") for m, v in selected_metrics(records[key]).items()]
    return rows


def provenance_notes(baseline: dict, records: dict[str, dict], rows: list[Row] | None = None) -> list[str]:
    """Why numbers may differ legitimately: another benchmark version or seed; for keys with a regression, also
    another model checkpoint file (which the table flags as a failure of its own, see compare)."""
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
            notes.append(f"{escape.markdown_code(key)}: {escape.markdown(name)} {escape.markdown(old)} -> "
                         f"{escape.markdown(new)} ({why})")
    return notes


def _fmt(metric: str, value: float | None, signed: bool = False) -> str:
    if value is None:
        return ""
    if metric not in CATALOGUE or CATALOGUE[metric].rate:
        return f"{100 * value:+.2f}" if signed else f"{100 * value:.2f}"
    return f"{int(value):+d}" if signed else str(int(value))


FAILING = ("regression", "undefined")


def failed(rows: list[Row], allow_missing: bool = False, allow_checkpoint_change: bool = False) -> bool:
    """Whether the check fails: a regression, a metric now undefined, a missing entry (unless ``allow_missing``),
    another model checkpoint (unless ``allow_checkpoint_change``)."""
    return any(r.verdict in FAILING or (r.verdict == "missing" and not allow_missing)
               or (r.verdict == "checkpoint" and not allow_checkpoint_change) for r in rows)


def markdown(rows: list[Row], tolerances: dict[str, float] | None = None, notes: list[str] | None = None,
             allow_missing: bool = False, allow_checkpoint_change: bool = False) -> str:
    """The pull-request comment: a status line, the table (rates in percent, deltas in points), notes. Names from
    records are escaped (escape.markdown)."""
    tol = _tolerances(tolerances)
    bad = [r for r in rows if r.verdict == "regression"]
    missing = [r for r in rows if r.verdict == "missing"]
    status = "❌ regression" if failed(rows, allow_missing, allow_checkpoint_change) else "✅ no regression"
    head = (f"### oodbench regression check: {status}\n\n{len(rows)} metric(s) compared; {len(bad)} regression(s), "
            f"{len(missing)} missing, {sum(r.verdict == 'new' for r in rows)} new")
    for verdict, label in (("undefined", "undefined"), ("checkpoint", "checkpoint change(s)")):
        count = sum(r.verdict == verdict for r in rows)
        head += f", {count} {label}" if count else ""
    head += (f". Rates in %, deltas in points; absolute tolerances (fractions): rates {RATE_TOLERANCE:g}, counts "
             f"{COUNT_TOLERANCE:g}")
    custom = {m: t for m, t in tol.items() if t != tolerance(METRICS[m])}
    if custom:
        head += " (overridden: " + ", ".join(f"{m}={t:g}" for m, t in custom.items()) + ")"
    table = []
    for r in rows:
        method, dataset, split = (r.key.split("/", 2) + ["", ""])[:3]
        shown = ALLOWED_CHECKPOINT if r.verdict == "checkpoint" and allow_checkpoint_change else VERDICTS[r.verdict]
        verdict = shown + (f" {r.note}" if r.note else "")
        table.append([escape.markdown(method), escape.markdown(f"{dataset}/{split}"), escape.markdown(r.metric),
                      _fmt(r.metric, r.baseline), _fmt(r.metric, r.now), _fmt(r.metric, r.delta, signed=True),
                      verdict])
    body = tabulate(table, headers=["method", "dataset", "metric", "baseline", "now", "delta", "verdict"],
                    tablefmt="github", disable_numparse=True)
    tail = "".join(f"\n- {n}" for n in notes or [])
    return f"{head}.\n\n{body}\n" + (f"\nNotes:{tail}\n" if tail else "")
