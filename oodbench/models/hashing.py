"""sha256 of checkpoint files: plain, and cached in a ``<file>.sha256`` sidecar so a multi-GB checkpoint is hashed
once (the one place checkpoints are hashed)."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..errors import CheckpointError
from ..files import atomic_write


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def read_sidecar(path: Path) -> dict:
    try:
        rec = json.loads(sidecar_path(path).read_text())
    except (OSError, ValueError):
        return {}
    return rec if isinstance(rec, dict) and isinstance(rec.get("sha256"), str) else {}


def write_sidecar(path: Path, digest: str, st: os.stat_result, url: str | None) -> None:
    """Best effort: the sidecar only saves re-hashing, so a read-only folder is not an error."""
    rec = {"sha256": digest, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "ino": st.st_ino}
    if url:
        rec["url"] = url
    try:
        atomic_write(sidecar_path(path), json.dumps(rec), sync=False)  # a lost sidecar only costs a re-hash
    except OSError:
        pass


def sha256_of(path: str | Path) -> str:
    """sha256 of ``path``, cached in ``<path>.sha256`` keyed on size, mtime, ctime and inode so a multi-GB
    checkpoint is hashed once; a file replaced or copied over it (even with its mtime kept) is hashed again."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found; download it or pass --checkpoint PATH")
    st = path.stat()
    rec = read_sidecar(path)
    if [rec.get(k) for k in ("size", "mtime_ns", "ctime_ns", "ino")] == [st.st_size, st.st_mtime_ns, st.st_ctime_ns,
                                                                       st.st_ino]:
        return rec["sha256"]
    digest = sha256_file(path)
    if path.stat().st_mtime_ns == st.st_mtime_ns:  # not rewritten while we hashed it
        # The URL still describes the file only if its content is what was downloaded.
        write_sidecar(path, digest, st, rec.get("url") if rec.get("sha256") == digest else None)
    return digest
