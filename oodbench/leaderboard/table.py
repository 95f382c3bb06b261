"""Leaderboard tables: the best record per method in each (dataset, split, benchmark version), as a DataFrame.

One frame holds every table (the key columns tell them apart); renderers format it, the CSV is it verbatim."""
from __future__ import annotations

import math
from typing import Any

import pandas as pd

from .catalogue import CATALOGUE, RATES, lookup
from .catalogue import COUNTS as COUNT_NAMES
from .record import CONVENTIONS
from .store import Record

KEY = ["dataset", "split", "benchmark_version"]
RULES = (
    "One table per dataset, split and benchmark version (records of different benchmark versions use different "
    "metric definitions and are never ranked together). A method is a record's `method.name`; a run on a local "
    "checkpoint (`--checkpoint`) instead of the method card's is a row of its own, named with the file's sha256, so "
    "that it never outranks the published model. When a method has several records in a table, the row shows its "
    "best: highest pixel AP (undefined AP ranks last), ties broken by higher "
    "AUROC, then lower FPR95, then the newest record (`provenance.utc_time`), then the content address, so the choice "
    "is deterministic. Identical records cannot occur twice (the file name is the content's hash); records whose "
    "metrics are identical but whose provenance differs are reruns, and the newest of them is shown. Rows are "
    "ordered by the same rule. `records` counts a method's records in the table, `reruns` those with exactly the "
    "shown record's metrics (itself excluded). Undefined metrics (null or NaN in a record) read n/a and rank last. "
    "A record of a degenerate split is never ranked: with no in-distribution pixels (`metrics.pixel.num_neg` 0) "
    "AUROC and FPR95 are undefined and AP is trivially 100 %; with no OoD pixels (`num_pos` 0) AUROC, AP and "
    "FPR95 are undefined; with neither (every pixel ignored) every pixel metric is undefined. Such a record is "
    "chosen for a method only when it has no other, its row comes after the ranked rows with no rank and n/a for "
    "those metrics, and a note says why (column `unranked`).")
# (column, record path) of the metric columns; fractions in the frame and the CSV, percentages in the tables
METRICS = [(name, CATALOGUE[name].path) for name in RATES]
COUNTS = [(name, CATALOGUE[name].path) for name in COUNT_NAMES]
# (column, heading, kind) of the rendered tables; a metric column appears only where some row has a value
DISPLAY = [("rank", "#", "int"), ("method", "method", "text"), ("auroc", "AUROC", "pct"), ("ap", "AP", "pct"),
           ("fpr95", "FPR95", "pct"), ("siou", "sIoU", "pct"), ("ppv", "PPV", "pct"), ("f1_mean", "mean F1", "pct"),
           ("threshold_source", "component threshold", "text"), ("fp_before", "FP before", "int"),
           ("fp_after", "FP after", "int"), ("fn_before", "FN before", "int"), ("fn_after", "FN after", "int"),
           ("records", "records", "int")]
COLUMNS = [*KEY, "rank", "method", *(c for c, _ in METRICS), "threshold_source", "threshold", *(c for c, _ in COUNTS),
           "num_images", "records", "reruns", "ap_tie", "unranked", "conventions", "fingerprint", "record_id",
           "utc_time", "record_file"]
PIXEL = ("auroc", "ap", "fpr95")


def _get(metrics: dict, dotted: str) -> float:
    """The metric as a float; NaN where it is undefined (null, or absent)."""
    value = lookup(metrics, dotted)
    return math.nan if value is None else float(value)


def _missing_last(value: float, sign: float) -> float:
    return -math.inf if math.isnan(value) else sign * value


def unranked_reason(metrics: dict) -> str | None:
    """Why a record's pixel metrics cannot be ranked (a degenerate split, from ``metrics.pixel.num_pos`` and
    ``num_neg``), or None when both classes have pixels."""
    pos, neg = (_get(metrics, f"pixel.{n}") for n in ("num_pos", "num_neg"))
    if pos == 0 and neg == 0:
        return ("not ranked: the split has no scored pixels (all ignored, 0 OoD / 0 in-distribution), so every "
                "pixel metric is undefined")
    if neg == 0:
        return (f"not ranked: the split has no in-distribution pixels ({pos:.0f} OoD / 0 in-distribution), so "
                f"AUROC and FPR95 are undefined and AP is trivially 100 %")
    if pos == 0:
        return (f"not ranked: the split has no OoD pixels (0 OoD / {neg:.0f} in-distribution), so AUROC, AP and "
                f"FPR95 are undefined")
    return None


def _pixel(record: Record, name: str) -> float:
    """A pixel metric for ranking and display: NaN where undefined, and on a degenerate split (there AP is
    trivial or undefined, AUROC and FPR95 undefined, whatever the record holds)."""
    m = record.data["metrics"]
    return math.nan if unranked_reason(m) else _get(m, f"pixel.{name}")


def rank_key(record: Record) -> tuple:
    """Larger is better: ranked (not a degenerate split) first, then AP, AUROC, -FPR95 (undefined last), newer
    time, then the content address as a deterministic last word."""
    return (unranked_reason(record.data["metrics"]) is None, _missing_last(_pixel(record, "ap"), 1),
            _missing_last(_pixel(record, "auroc"), 1), _missing_last(_pixel(record, "fpr95"), -1), record.utc_time,
            record.id)


def threshold_source(metrics: dict) -> str | None:
    """Where the component metrics' score threshold came from, in a few words; None without component metrics."""
    choice = metrics.get("components", {}).get("threshold_choice")
    if not choice:
        return None
    if choice["source"] == "validation":
        return f"validation split {choice.get('split')} ({choice.get('rule')})"
    return {"given": "given", "oracle": f"oracle ({choice.get('rule') or 'best_f1'})"}.get(choice["source"],
                                                                                      choice["source"])


def conventions_note(record: Record) -> str:
    """'canonical', or the convention names whose text differs from this oodbench's canonical conventions."""
    conv = record.data["conventions"]
    differ = sorted(k for k in set(conv) | set(CONVENTIONS) if conv.get(k) != CONVENTIONS.get(k))
    return "canonical" if not differ else "differs: " + ", ".join(differ)


def _row(best: Record, group: list[Record]) -> dict[str, Any]:
    m = best.data["metrics"]
    ties = [r for r in group if r is not best and rank_key(r)[:4] == rank_key(best)[:4] and r.data["metrics"] != m
            and rank_key(best)[0]]  # unranked records all "tie" on undefined metrics: no note for that
    row: dict[str, Any] = {"dataset": best.table_key[0], "split": best.table_key[1],
                           "benchmark_version": best.table_key[2], "method": best.entry}
    row.update({col: _pixel(best, col) if col in PIXEL else _get(m, path) for col, path in METRICS})
    row["threshold_source"] = threshold_source(m)
    row["threshold"] = _get(m, "components.threshold")
    row.update({col: _get(m, path) for col, path in COUNTS})
    row.update({"num_images": int(best.data["dataset"]["num_images"]), "records": len(group),
                "reruns": sum(r is not best and r.data["metrics"] == m for r in group), "ap_tie": bool(ties),
                "unranked": unranked_reason(m) or math.nan, "conventions": conventions_note(best),
                "fingerprint": best.data["dataset"]["fingerprint"][:16], "record_id": best.id,
                "utc_time": best.utc_time, "record_file": best.path.name})
    return row


def best_records(records: list[Record]) -> dict[tuple, list[tuple[Record, list[Record]]]]:
    """Table key -> [(best record, all records of that method)], best method first."""
    groups: dict[tuple, dict[str, list[Record]]] = {}
    for r in records:
        groups.setdefault(r.table_key, {}).setdefault(r.entry, []).append(r)
    tables = {}
    for key in sorted(groups):
        chosen = [(max(g, key=rank_key), g) for g in groups[key].values()]
        tables[key] = sorted(chosen, key=lambda pair: rank_key(pair[0]), reverse=True)
    return tables


def leaderboard_frame(records: list[Record]) -> pd.DataFrame:
    """Every table's rows in one frame (columns COLUMNS), tables in key order, rows by rank; unranked rows (a
    degenerate split, see RULES) last, with no rank (the column is then of pandas' nullable Int64 type)."""
    rows = []
    for pairs in best_records(records).values():
        rank = 0
        for best, group in pairs:
            row = _row(best, group)
            ranked = not isinstance(row["unranked"], str)
            rank += ranked
            rows.append({**row, "rank": rank if ranked else None})
    frame = pd.DataFrame(rows, columns=COLUMNS)
    if frame["rank"].isna().any():
        frame["rank"] = frame["rank"].astype("Int64")
    return frame


def shown_columns(table: pd.DataFrame) -> list[tuple[str, str, str]]:
    """The DISPLAY columns with at least one value in this table (component and segment metrics are optional)."""
    return [c for c in DISPLAY if table[c[0]].notna().any()]


def tables(frame: pd.DataFrame) -> list[tuple[tuple, pd.DataFrame]]:
    """(table key, its rows) in key order."""
    return [(key, rows) for key, rows in frame.groupby(KEY, sort=True)]


def title(key: tuple) -> str:
    dataset, split, version = key
    return f"{dataset} / {split} (benchmark v{version})"


def summary(table: pd.DataFrame) -> str:
    """'60 images, 3 methods.' (+ a sentence when rows come from different copies of the data)."""
    n, unranked = len(table), int(table["unranked"].notna().sum())
    return (f"{table['num_images'].iloc[0]} images, {n} method{'s' if n != 1 else ''}"
            f"{f' ({unranked} not ranked)' if unranked else ''}.{fingerprint_note(table)}")


def fingerprint_note(table: pd.DataFrame) -> str:
    """A sentence when the rows of one table were evaluated on different copies of the data, else ''."""
    prints = sorted(set(table["fingerprint"]))
    if len(prints) == 1:
        return ""
    return f" The rows come from {len(prints)} different copies of the data (fingerprints {', '.join(prints)})."


def footnotes(table: pd.DataFrame) -> dict[str, str]:
    """Method -> why its row needs a note: not ranked (a degenerate split), chosen among several records, AP ties,
    non-canonical conventions."""
    notes = {}
    for row in table.itertuples():
        parts = [row.unranked] if isinstance(row.unranked, str) else []
        if row.records > 1:
            parts.append(f"best of {row.records} records by the rule above"
                         + (f"; {row.reruns} rerun(s) with identical metrics, the newest shown" if row.reruns else ""))
        if row.ap_tie:
            parts.append("another record has the same AP, AUROC and FPR95 with other metrics; the newest is shown")
        if row.conventions != "canonical":
            parts.append(f"conventions {row.conventions} (see its record)")
        if parts:
            notes[row.method] = "; ".join(parts) + f" (record {row.record_file})"
    return notes
