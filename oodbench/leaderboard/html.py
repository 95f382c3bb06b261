"""The static leaderboard page: one self-contained HTML file (data, CSS, JS, images inline; it loads nothing)."""
from __future__ import annotations

import base64
import json
import math
from datetime import datetime, timezone
from html import escape
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import pandas as pd

from .render import UNITS
from .store import Record
from .table import RULES, footnotes, shown_columns, summary, tables, title

PANEL_SEPARATOR = "__"  # panels are named <method>__<dataset>__<sample id>.png (written by `oodbench show`)


def find_panels(folder: str | Path | None, limit: int = 4) -> dict[tuple[str, str], list[tuple[str, Path]]]:
    """(method, dataset) -> up to ``limit`` (sample id, path) of the PNG score-map panels in ``folder``, by name."""
    found: dict[tuple[str, str], list[tuple[str, Path]]] = {}
    for path in sorted(Path(folder).glob("*.png")) if folder is not None else ():
        parts = path.stem.split(PANEL_SEPARATOR, 2)
        if len(parts) == 3:
            found.setdefault((parts[0], parts[1]), []).append((parts[2], path))
    return {key: items[:limit] for key, items in found.items()}


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _plain(value: Any) -> Any:
    """JSON-ready: NaN and pandas' NA -> null, numpy scalars -> Python."""
    if value is pd.NA:
        return None
    if hasattr(value, "item"):
        value = value.item()
    return None if isinstance(value, float) and math.isnan(value) else value


def page_data(records: list[Record], frame: pd.DataFrame,
              panels: dict[tuple[str, str], list[tuple[str, Path]]]) -> dict[str, Any]:
    """Everything the page's script draws: tables (rows of the frame), the shown records, the panels."""
    by_id = {r.id: r for r in records}
    out: dict[str, Any] = {"rules": RULES, "units": UNITS, "tables": [], "records": {}, "panels": {}}
    for key, table in tables(frame):
        notes = footnotes(table)
        numbered = {method: i for i, method in enumerate(notes, start=1)}
        columns = [{"key": col, "label": label, "kind": kind} for col, label, kind in shown_columns(table)]
        rows = []
        for _, row in table.iterrows():
            rid = row["record_id"]
            images = panels.get((row["method"], row["dataset"]), [])
            rows.append({"id": rid, **{c: _plain(row[c]) for c in table.columns}, "note": numbered.get(row["method"]),
                         "panels": len(images)})
            record = by_id[rid].data
            out["records"][rid] = {"file": by_id[rid].path.name, "curves": record["metrics"].get("curves"),
                                   "metrics": {k: v for k, v in record["metrics"].items() if k != "curves"},
                                   **{k: record[k] for k in ("method", "dataset", "conventions", "provenance", "cost")}}
            if images:
                out["panels"][rid] = [{"name": name, "src": data_uri(path)} for name, path in images]
        out["tables"].append({"title": title(key), "columns": columns, "rows": rows,
                              "notes": [f"{m}: {text}" for m, text in notes.items()],
                              "info": summary(table)})
    return out


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def to_html(records: list[Record], frame: pd.DataFrame, source: str, panels_dir: str | Path | None = None,
            max_panels: int = 4) -> str:
    """The page as one string; the JSON data is embedded with '<' escaped so it cannot end its script block."""
    data = page_data(records, frame, find_panels(panels_dir, max_panels))
    blob = json.dumps(data, allow_nan=False, separators=(",", ":")).replace("<", "\\u003c")
    return Template(_asset("page.html")).substitute(
        title="oodbench leaderboard", css=_asset("page.css"), js=_asset("page.js"), data=blob,
        source=escape(source), generated=datetime.now(timezone.utc).isoformat(timespec="seconds"))


