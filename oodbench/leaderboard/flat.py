"""Every record as one flat row for pandas: nested fields become dotted columns (``metrics.pixel.ap``), written as
JSON Lines (``records.jsonl``) or Parquet (``records.parquet``), with the leaderboard's view of each record.

Lists (curves, per-tau counts, training logs) are JSON text, so every cell is a scalar that both formats keep
exactly; undefined values are null. A column whose records disagree on the kind of value (text in one, a number
in another) holds JSON text throughout. ``field_digests`` (a check of the file itself) is left out: its hex digests
read as numbers in ``pandas.read_json``, and the record id leads back to the file."""
from __future__ import annotations

import io
import json
import math
from typing import Any

import pandas as pd

from ..errors import OodbenchError
from .store import Record
from .table import unranked_reason

LEADERBOARD = ("leaderboard.record_id", "leaderboard.record_file", "leaderboard.entry", "leaderboard.shown",
               "leaderboard.rank", "leaderboard.unranked")
FIRST = ("leaderboard.record_id", "leaderboard.record_file", "dataset.name", "dataset.split", "benchmark_version",
         "method.name", "leaderboard.entry", "leaderboard.shown", "leaderboard.rank", "leaderboard.unranked",
         "provenance.utc_time", "schema_version")
SECTIONS = ("metrics.pixel", "metrics.components", "metrics.segments", "metrics.bootstrap", "metrics", "method",
            "dataset", "conventions", "cost", "provenance")
LEFT_OUT = ("field_digests",)


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> {dotted key: scalar}; lists -> JSON text; NaN and infinities -> None; empty dicts vanish."""
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    if isinstance(value, (list, tuple)):
        value = json.dumps(value, separators=(",", ":"))
    elif isinstance(value, float) and not math.isfinite(value):
        value = None
    return {prefix: value}


def column_order(columns: set[str]) -> list[str]:
    """Identity and leaderboard columns first, then the metrics, method, dataset, ... sections, then the rest;
    alphabetical within a section."""
    def place(column: str) -> tuple[int, str]:
        return next((i for i, s in enumerate(SECTIONS) if column == s or column.startswith(s + ".")),
                    len(SECTIONS)), column

    return [c for c in FIRST if c in columns] + sorted(set(columns) - set(FIRST), key=place)


def _kind(value: Any) -> str:
    return "bool" if isinstance(value, bool) else "number" if isinstance(value, (int, float)) else "text"


def flat_rows(records: list[Record], frame: pd.DataFrame) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per record (every column in every row, null where absent) and the column order; ``frame`` is the
    leaderboard table (``leaderboard_frame``), which tells whether a record is the row shown for its method."""
    shown = dict(zip(frame["record_id"], frame["rank"]))
    rows = []
    for r in records:
        row = flatten({k: v for k, v in r.data.items() if k not in LEFT_OUT})
        clash = set(row) & set(LEADERBOARD)
        if clash:
            raise OodbenchError(f"{r.path}: field {sorted(clash)[0]} clashes with a column the flat export adds")
        rank = shown.get(r.id)
        row.update({"leaderboard.record_id": r.id, "leaderboard.record_file": r.path.name, "leaderboard.entry": r.entry,
                    "leaderboard.shown": r.id in shown,
                    "leaderboard.rank": None if rank is None or pd.isna(rank) else int(rank),
                    "leaderboard.unranked": unranked_reason(r.data["metrics"])})
        rows.append(row)
    columns = column_order({c for row in rows for c in row})
    for c in columns:
        if len({_kind(row[c]) for row in rows if row.get(c) is not None}) > 1:
            for row in rows:
                row[c] = None if row.get(c) is None else json.dumps(row[c])
    return [{c: row.get(c) for c in columns} for row in rows], columns


def to_jsonl(rows: list[dict[str, Any]]) -> str:
    """One JSON object per line, the same keys in the same order on every line."""
    return "".join(json.dumps(row, allow_nan=False) + "\n" for row in rows)


def _series(values: list[Any]) -> pd.Series:
    kinds = {type(v) for v in values if v is not None}
    if kinds == {int}:
        return pd.Series(values, dtype="Int64")
    if kinds and kinds <= {int, float}:
        return pd.Series([math.nan if v is None else float(v) for v in values], dtype="float64")
    if kinds == {bool}:
        return pd.Series(values, dtype="boolean")
    return pd.Series(values, dtype=object)


def flat_frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    """The rows as a DataFrame with nullable integer and boolean columns, so that no integer becomes a float."""
    return pd.DataFrame({c: _series([row[c] for row in rows]) for c in columns}, columns=columns)


def require_pyarrow() -> None:
    """Fail before anything is written when Parquet is asked for and pyarrow cannot be imported."""
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError as exc:
        raise OodbenchError(f"--formats parquet needs pyarrow, which cannot be imported ({exc}): pip install pyarrow "
                            f"(or pip install 'oodbench[parquet]'), or write --formats jsonl") from None


def to_parquet(rows: list[dict[str, Any]], columns: list[str]) -> bytes:
    """The rows as one Parquet file (pyarrow), in memory."""
    require_pyarrow()
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(flat_frame(rows, columns), preserve_index=False)
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()
