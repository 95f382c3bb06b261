"""Checks a record against the shipped JSON Schema and its content address; errors name the file and field."""
from __future__ import annotations

import json
import math
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from ..errors import OodbenchError
from .digest import changed_fields, record_digest

SCHEMA_FILE = "record.schema.json"
ADDRESS = re.compile(r"-([0-9a-f]{16})\.json$")
CURVES = (("roc", "fpr", "tpr"), ("pr", "recall", "precision"))


class RecordError(OodbenchError):
    """A record file is unreadable, violates the schema, or no longer matches its content address."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source, self.problems = source, problems
        super().__init__("\n".join(f"{source}: field {field}: {msg}" for field, msg in problems))


@lru_cache(maxsize=1)
def schema() -> dict:
    """The record schema shipped in the package (draft 2020-12)."""
    return json.loads(resources.files(__package__).joinpath(SCHEMA_FILE).read_text())


@lru_cache(maxsize=1)
def _validator() -> Draft202012Validator:
    Draft202012Validator.check_schema(schema())
    return Draft202012Validator(schema())


def _path(parts) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".") or "(record)"


def schema_problems(record: Any) -> list[tuple[str, str]]:
    """(field path, message) for every schema violation, plus curve arrays of unequal length."""
    known = schema()["properties"]["schema_version"]["const"]
    if isinstance(record, dict) and record.get("schema_version") not in (None, known):
        return [("schema_version", f"{record['schema_version']!r} is not a version this oodbench reads ({known}); "
                                   f"upgrade oodbench")]
    problems = [(_path(e.absolute_path), e.message) for e in _validator().iter_errors(record)]
    curves = record.get("metrics", {}).get("curves") if not problems else None
    for name, x, y in CURVES if isinstance(curves, dict) else ():
        if len(curves[name][x]) != len(curves[name][y]):
            problems.append((f"metrics.curves.{name}", f"{x} has {len(curves[name][x])} points, {y} "
                                                       f"{len(curves[name][y])}; they must pair up"))
    return sorted(problems)


def validate_record(record: Any, source: str) -> None:
    """Raise RecordError naming ``source`` and each offending field when ``record`` violates the schema."""
    problems = schema_problems(record)
    if problems:
        raise RecordError(source, problems)


def address_problems(path: Path, record: dict) -> list[tuple[str, str]]:
    """Empty when the hash in the file name is the content's; else the changed fields (from field_digests)."""
    match = ADDRESS.search(path.name)
    if match is None:
        return [("(file name)", "has no content address (<dataset>-<split>-<method>-<16 hex digits>.json)")]
    actual = record_digest(record)[:16]
    if match.group(1) == actual:
        return []
    where = f"content hash {actual} != file name's {match.group(1)}: the record was edited after it was written"
    changed = changed_fields(record)
    if changed is None:
        return [("(unknown)", where + " (it stores no field_digests, so the field cannot be named)")]
    if not changed:
        return [("(file name or field_digests)", where.replace("the record was edited", "the file was renamed or its "
                                                                                      "field_digests edited"))]
    return [(field, where) for field in changed]


def _undefined(_token: str) -> None:
    return None


def _finite_or_none(text: str) -> float | None:
    value = float(text)
    return value if math.isfinite(value) else None


def parse_json(text: str) -> Any:
    """JSON as records are read everywhere: a literal ``NaN``/``Infinity`` (what ``json.dump`` writes for an
    undefined metric) or a number too large for a float is read as null, as ``json_safe`` writes it, so a record
    is always strict JSON in memory (its content address is defined) and undefined metrics are None."""
    return json.loads(text, parse_constant=_undefined, parse_float=_finite_or_none)


def read_json(path: str | Path) -> Any:
    """One JSON file via ``parse_json``; RecordError names the file and what is wrong (unreadable, not UTF-8,
    not JSON, nested too deeply, a number too long)."""
    path = Path(path)
    try:
        return parse_json(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RecordError(str(path), [("(json)", f"not valid JSON at line {exc.lineno} column {exc.colno}: "
                                                 f"{exc.msg}")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordError(str(path), [("(file)", f"cannot be read: {exc}")]) from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer of more than 4300 digits, or [[[[...]]]]
        raise RecordError(str(path), [("(json)", f"not a JSON document oodbench reads: {exc}")]) from None


def check_file(path: str | Path) -> dict:
    """Read, schema-check and address-check one record file; RecordError lists what is wrong."""
    return check_record(path, read_json(path))


def check_record(path: str | Path, record: Any) -> dict:
    """Schema-check and address-check a record read from ``path``; RecordError lists what is wrong."""
    validate_record(record, str(path))
    problems = address_problems(Path(path), record)
    if problems:
        raise RecordError(str(path), problems)
    return record
