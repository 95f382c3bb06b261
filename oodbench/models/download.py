"""Checkpoint download by URL into a verified cache: sha256 checked while streaming, atomic rename, resume of an
interrupted http(s) download (:mod:`oodbench.fetch`), and a ``--checkpoint PATH`` override for offline use.

A cached file is reused only when it matches the published sha256, or, when none is published,
when it is unchanged since this same URL delivered it (see :func:`fetch_checkpoint`).
"""
from __future__ import annotations

import urllib.parse
import warnings
from pathlib import Path

from .. import paths
from ..errors import CheckpointError
from ..fetch import SCHEMES, fetch_url, normalize_digest
from .hashing import read_sidecar, sha256_of, write_sidecar

__all__ = ["UnverifiedCheckpointWarning", "default_cache_dir", "fetch_checkpoint", "resolve_checkpoint", "sha256_of"]


class UnverifiedCheckpointWarning(UserWarning):
    """A checkpoint was used without a published sha256 to check it against."""


def default_cache_dir() -> Path:
    """Where downloaded checkpoints live: ``<oodbench home>/checkpoints``."""
    return paths.home() / "checkpoints"


def _normalize_sha256(sha256: str | None) -> str | None:
    return normalize_digest(sha256, "sha256", CheckpointError)


def _cache_name(url: str, filename: str | None) -> str:
    try:
        parsed = urllib.parse.urlparse(url)
    except ValueError as exc:
        raise CheckpointError(f"{url}: malformed URL ({exc})") from exc
    if parsed.scheme.lower() not in SCHEMES:
        raise CheckpointError(f"{url}: unsupported URL scheme {parsed.scheme!r}; use one of {', '.join(SCHEMES)}, "
                              f"or download the file by hand and pass --checkpoint PATH")
    name = filename or urllib.parse.unquote(parsed.path.rstrip("/").rsplit("/", 1)[-1])
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise CheckpointError(f"{url}: cannot name the cached file {name!r} after this URL; pass filename=NAME")
    return name


def _download(url: str, dest: Path, expected: str | None, progress: bool, timeout: float) -> str:
    """Fetch ``url`` over ``dest`` (verified, resumable: see :func:`oodbench.fetch.fetch_url`) and record its hash."""
    actual = fetch_url(url, dest, sha256=expected, what="checkpoint", error=CheckpointError,
                       manual="download the file by hand and pass --checkpoint PATH", progress=progress,
                       timeout=timeout)
    write_sidecar(dest, actual, dest.stat(), url)
    return actual


def fetch_checkpoint(url: str, sha256: str | None, *, cache_dir: str | Path | None = None,
                     filename: str | None = None, progress: bool = True, timeout: float = 60.0) -> Path:
    """Return the cached checkpoint for ``url``, downloading it first when needed.

    With ``sha256``: a cached file with that hash is reused; anything else is downloaded again, and
    the new file replaces the cached one only if it has that hash. Without (unpublished): a cached
    file is reused only if this same URL delivered it and it is unchanged since, else downloaded
    again; either way an :class:`UnverifiedCheckpointWarning` gives the hash to publish.
    """
    expected = _normalize_sha256(sha256)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    dest = cache / _cache_name(url, filename)
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CheckpointError(f"{cache}: cannot create the checkpoint cache ({exc}); "
                              f"set $OODBENCH_HOME to a writable folder or pass --checkpoint PATH") from exc
    actual = None
    if dest.is_file():
        recorded = read_sidecar(dest)
        actual = sha256_of(dest)
        if expected is not None and actual == expected:
            return dest
        if expected is None and recorded.get("url") == url and recorded.get("sha256") == actual:
            _warn_unverified(url, dest, actual)
            return dest
    if actual is not None and expected is not None:
        warnings.warn(f"{dest}: cached file has sha256 {actual}, expected {expected}; downloading again",
                      stacklevel=2)
    actual = _download(url, dest, expected, progress, timeout)
    if expected is None:
        _warn_unverified(url, dest, actual)
    return dest


def _warn_unverified(url: str, dest: Path, actual: str) -> None:
    warnings.warn(f"{url}: no published sha256, so {dest} is unverified (its sha256 is {actual}; "
                  f"records carry it). Publish that hash with the URL to verify future downloads",
                  UnverifiedCheckpointWarning, stacklevel=3)


def resolve_checkpoint(*, checkpoint: str | Path | None, url: str | None, sha256: str | None,
                       cache_dir: str | Path | None = None, filename: str | None = None,
                       progress: bool = True, timeout: float = 60.0) -> Path:
    """The checkpoint file to load: ``checkpoint`` (the ``--checkpoint PATH`` override, used as is,
    for offline use or one's own weights) wins; else the verified download of ``url``."""
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise CheckpointError(f"{path}: --checkpoint file not found"
                                  + (" (it is a folder; pass the checkpoint file inside it)" if path.is_dir() else ""))
        return path
    if url:
        return fetch_checkpoint(url, sha256, cache_dir=cache_dir, filename=filename, progress=progress, timeout=timeout)
    raise CheckpointError("no checkpoint given: pass --checkpoint PATH to a local file, "
                          "or give a download URL (with its sha256) in the method card")
