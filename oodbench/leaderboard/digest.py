"""Content addresses of records, and per-field digests that let a reader name the field an edit changed."""
from __future__ import annotations

import hashlib
import json
from typing import Any, Iterator

DIGESTS_KEY = "field_digests"  # derived from the rest of the record, so it is left out of the content address
DIGEST_DEPTH = 3  # "metrics.pixel.ap": deep enough to name a metric, small enough to keep records compact


def canonical_json(obj: Any) -> bytes:
    """The bytes that are hashed: sorted keys, no whitespace, strict JSON (no NaN)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def record_digest(record: dict) -> str:
    """sha256 of the record without its field digests; the first 16 hex digits are its file name's address."""
    return hashlib.sha256(json.dumps({k: v for k, v in record.items() if k != DIGESTS_KEY}, sort_keys=True,
                                     allow_nan=False).encode()).hexdigest()


def _leaves(obj: Any, prefix: str, depth: int) -> Iterator[tuple[str, Any]]:
    if isinstance(obj, dict) and obj and depth < DIGEST_DEPTH:
        for key, value in obj.items():
            yield from _leaves(value, f"{prefix}.{key}" if prefix else str(key), depth + 1)
    else:
        yield prefix, obj


def field_digests(record: dict) -> dict[str, str]:
    """Dotted path -> first 8 hex digits of the sha256 of that field, for every field down to DIGEST_DEPTH."""
    body = {k: v for k, v in record.items() if k != DIGESTS_KEY}
    return {path: hashlib.sha256(canonical_json(value)).hexdigest()[:8] for path, value in _leaves(body, "", 0)}


def changed_fields(record: dict) -> list[str] | None:
    """Paths whose content no longer matches the digests stored in the record; None when it stores none."""
    stored = record.get(DIGESTS_KEY)
    if not isinstance(stored, dict):
        return None
    now = field_digests(record)
    changed = [p for p in now if stored.get(p) != now[p]]
    changed += [f"{p} (removed)" for p in stored if p not in now]
    return sorted(changed)
