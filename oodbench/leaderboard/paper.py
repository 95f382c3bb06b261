"""Published numbers (``leaderboard/paper/*.toml``) next to ours: each TOML file is one source (paper table,
leaderboard, GitHub issue) and lists entries (paper method -> our method, dataset, split, convention, metrics).
Numbers not transcribed are absent, never zero. Ours are read from records in the entry's convention
(``metrics.conventions.<name>``), so a difference is about the method, not about how AP was summed."""
from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tabulate import tabulate

from ..errors import OodbenchError
from ..paths import card_folder
from . import escape
from .catalogue import CATALOGUE, lookup


PAPER_DIR = card_folder("paper")
UNITS = ("percent", "fraction")


@dataclass
class Entry:
    """One published row: their method name, ours, where, how it was computed, the numbers."""

    file: str
    source: dict[str, Any]
    paper_method: str
    method: str
    dataset: str
    split: str
    metrics: dict[str, float]
    convention: str | None = None
    conventions: dict[str, str] = field(default_factory=dict)
    unit: str = "percent"
    note: str = ""

    def convention_of(self, metric: str) -> str | None:
        return self.conventions.get(metric, self.convention)


def _fail(path: Path, msg: str) -> None:
    raise OodbenchError(f"{path}: {msg}")


def _known_conventions() -> set[str] | None:
    try:
        from ..metrics.conventions import list_conventions
    except ImportError:  # pragma: no cover - conventions module absent: do not second-guess names
        return None
    return set(list_conventions())


def _entry(path: Path, source: dict, defaults: dict, raw: dict, known: set[str] | None) -> Entry:
    item = {**defaults, **raw}
    where = f"entry {raw.get('paper_method', '?')!r}"
    for key in ("paper_method", "method", "dataset", "split"):
        if not isinstance(item.get(key), str) or not item[key]:
            _fail(path, f"{where} needs {key} (a non-empty string)")
    metrics = item.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        _fail(path, f"{where} needs a [entry.metrics] table with at least one number (leave unknown ones out)")
    for name, value in metrics.items():
        if name not in CATALOGUE:
            _fail(path, f"{where}: unknown metric {name!r}; known: {', '.join(CATALOGUE)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            _fail(path, f"{where}: {name} = {value!r} is not a finite number (unknown numbers stay absent)")
    unit = item.get("unit", "percent")
    if unit not in UNITS:
        _fail(path, f"{where}: unit {unit!r} is not one of {', '.join(UNITS)}")
    entry = Entry(str(path), source, item["paper_method"], item["method"], item["dataset"], item["split"],
                  {k: float(v) for k, v in metrics.items()}, item.get("convention"),
                  dict(item.get("conventions", {})), unit, str(item.get("note", "")))
    for name in metrics:
        conv = entry.convention_of(name)
        if CATALOGUE[name].by_convention and conv is None:
            _fail(path, f"{where}: {name} depends on the evaluation convention; set convention = \"...\"")
        if conv is not None and known is not None and conv not in known:
            _fail(path, f"{where}: unknown convention {conv!r}; known: {', '.join(sorted(known))}")
    return entry


def load_file(path: str | Path, known: set[str] | None = None) -> list[Entry]:
    """Entries of one TOML file; a file without a [source] (kind and url or citation) is rejected."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise OodbenchError(f"{path}: invalid TOML ({exc})") from None
    source = data.get("source")
    if not isinstance(source, dict) or not source.get("kind") or not (source.get("url") or source.get("citation")):
        _fail(path, "needs a [source] table with kind and url or citation: every published number names its source")
    entries = data.get("entry")
    if not isinstance(entries, list) or not entries:
        _fail(path, "needs at least one [[entry]]")
    known = _known_conventions() if known is None else known
    return [_entry(path, source, data.get("defaults", {}), raw, known) for raw in entries]


def load_paper(folder: str | Path = PAPER_DIR) -> list[Entry]:
    """Every ``*.toml`` in ``folder``, sorted by file name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise OodbenchError(f"{folder}: no folder of published numbers (leaderboard/paper/*.toml)")
    known = _known_conventions()
    return [e for path in sorted(folder.glob("*.toml")) for e in load_file(path, known)]


def _ours(entry: Entry, record: dict, metric: str) -> tuple[float | None, str]:
    """Our number in the entry's convention, or None and why not."""
    spec, metrics = CATALOGUE[metric], record.get("metrics", {})
    conv = entry.convention_of(metric)
    if spec.by_convention and conv != "canonical":
        table = (metrics.get("conventions") or {}).get(conv)
        if not isinstance(table, dict):
            return None, f"convention not computed: rerun with --convention {conv}"
        value, where = table.get(metric), f"convention {conv}"
    else:
        value, where = lookup(metrics, spec.path), spec.section
    if value is None:
        return None, f"{metric} not in the record ({where})"
    note = ""
    if spec.section == "components":
        choice = (metrics.get("components") or {}).get("threshold_choice") or {}
        note = f"components at our {choice.get('source', '?')} threshold"
    return float(value), note


def paper_rows(entries: list[Entry], records: dict[str, dict]) -> list[dict[str, Any]]:
    """One row per published number: theirs, ours (same unit as theirs), delta = ours - theirs, note."""
    rows = []
    for e in entries:
        record = records.get(f"{e.method}/{e.dataset}/{e.split}")
        for metric, theirs in e.metrics.items():
            scale = 100.0 if CATALOGUE[metric].rate and e.unit == "percent" else 1.0
            ours, note = (None, "no record") if record is None else _ours(e, record, metric)
            ours = None if ours is None else ours * scale
            convention = (e.convention_of(metric) or "") if CATALOGUE[metric].by_convention else ""
            rows.append({"source": e.source.get("title") or e.source.get("url") or e.source.get("citation"),
                         "url": e.source.get("url"), "paper_method": e.paper_method, "method": e.method,
                         "dataset": e.dataset, "split": e.split, "convention": convention,
                         "metric": metric, "theirs": theirs, "ours": ours,
                         "delta": None if ours is None else ours - theirs, "note": note, "entry_note": e.note})
    return rows


def _num(value: float | None, signed: bool = False) -> str:
    return "" if value is None else (f"{value:+.2f}" if signed else f"{value:.2f}")


def markdown(rows: list[dict[str, Any]]) -> str:
    """Theirs next to ours (rates in the source's unit, mostly percent; deltas in the same unit), then the
    numbered sources with their addresses."""
    refs: dict[tuple, int] = {}
    table = []
    for r in rows:
        ref = refs.setdefault((r["source"], r["url"]), len(refs) + 1)
        table.append([escape.markdown(f"{r['paper_method']} ({r['method']})"),
                      escape.markdown(f"{r['dataset']}/{r['split']}"), r["metric"], escape.markdown(r["convention"]),
                      _num(r["theirs"]), _num(r["ours"]), _num(r["delta"], signed=True), escape.markdown(r["note"]),
                      f"[{ref}]"])
    body = tabulate(table, headers=["paper method (ours)", "dataset", "metric", "convention", "theirs", "ours",
                                    "delta", "note", "source"], tablefmt="github", disable_numparse=True)
    sources = "\n".join(f"[{n}] {title}" + (f" <{url}>" if url and url != title else "")
                         for (title, url), n in refs.items())
    return f"{body}\n\n{sources}"
