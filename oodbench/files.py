"""Atomic file writes (a file is replaced whole or not at all, never left half-written by a crash) and card reading."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
import tomllib
from typing import Any, BinaryIO, Callable

from .errors import OodbenchError


def atomic_write(path: str | Path, data: str | bytes | Callable[[BinaryIO], object], *, suffix: str = ".tmp",
                 sync: bool = True) -> Path:
    """Write ``data`` (text, bytes, or a function that writes into a binary file, e.g. ``torch.save`` or
    ``np.savez``) to a hidden temporary file beside ``path`` (ending ``suffix``), flush it to disk unless ``sync``
    is False, make it readable by all, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            if sync:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_toml(path: Path, error: type[OodbenchError] = OodbenchError) -> dict[str, Any]:
    """A card's TOML; a syntax error is ``error`` naming the file and the place."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: invalid TOML ({exc})") from exc
