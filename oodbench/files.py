"""Atomic file writes: a file is replaced whole or not at all, never left half-written by a crash."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


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
