"""Verified, resumable downloads of one file by URL (http, https, file), shared by checkpoints and dataset archives.

The file streams into ``<dest>.part`` while it is hashed and is renamed over ``dest`` only once its size and
checksums match, so ``dest`` is never half-written nor replaced by a wrong file. Over http(s) an interrupted
download with a checksum to meet keeps its ``.part``: the next call re-hashes what is there and asks for the rest
with a ``Range`` request.
A server that answers 200 (no range support), 416 or an unexpected range restarts the file from its first byte.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

from tqdm.auto import tqdm

from .errors import OodbenchError

try:
    import fcntl
except ImportError:  # pragma: no cover  (Windows: no lock, one download at a time is the user's care)
    fcntl = None

__all__ = ["CHUNK_SIZE", "SCHEMES", "fetch_url", "normalize_digest", "part_path"]

CHUNK_SIZE = 1 << 20
SCHEMES = ("http", "https", "file")
DIGEST_LENGTHS = {"sha256": 64, "md5": 32}
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def part_path(dest: Path) -> Path:
    """Where the download of ``dest`` is written until it is verified."""
    return dest.with_name(dest.name + ".part")


def normalize_digest(value: str | None, algo: str, error: type[OodbenchError] = OodbenchError) -> str | None:
    """``value`` as lower-case hex, checked to be an ``algo`` digest; None stays None."""
    if value is None:
        return None
    digest = value.strip().lower()
    if not re.fullmatch(f"[0-9a-f]{{{DIGEST_LENGTHS[algo]}}}", digest):
        raise error(f"{value!r} is not a {algo} digest ({DIGEST_LENGTHS[algo]} hexadecimal characters)")
    return digest


def _read_chunks(stream: BinaryIO, size: int) -> Iterator[bytes]:
    """Yield the response body in chunks (a seam for tests that interrupt a download)."""
    while chunk := stream.read(size):
        yield chunk


def _hash_file(f: BinaryIO, hashes: dict) -> int:
    """Feed the whole of ``f`` to ``hashes``; return its size."""
    f.seek(0)
    size = 0
    for chunk in iter(lambda: f.read(CHUNK_SIZE), b""):
        size += len(chunk)
        for h in hashes.values():
            h.update(chunk)
    return size


def _reset(hashes: dict) -> dict:
    hashes.update({algo: hashlib.new(algo) for algo in hashes})
    return hashes


def _restart(f: BinaryIO, hashes: dict) -> int:
    f.truncate(0)
    _reset(hashes)
    return 0


def _same_file(f: BinaryIO, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(f.fileno()), os.stat(path))
    except FileNotFoundError:
        return False


@contextmanager
def _locked_part(part: Path) -> Iterator[tuple[BinaryIO, bool]]:
    """Open ``part`` (created empty if absent) under an exclusive lock; yield it and whether another process held
    it first. An empty part is removed on the way out."""
    waited = False
    while True:
        f = open(part, "a+b")  # appends: writes always land at the end, also after a truncate
        if fcntl is None:
            break
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            waited = True
            fcntl.flock(f, fcntl.LOCK_EX)  # another process downloads the same file: wait for it
        if _same_file(f, part):  # it may have renamed or removed the part meanwhile: then lock the new one
            break
        f.close()
    try:
        yield f, waited
    finally:
        f.flush()
        if os.fstat(f.fileno()).st_size == 0 and _same_file(f, part):
            part.unlink()
        f.close()


def _open(url: str, offset: int, timeout: float):
    """The response to a GET of ``url`` from byte ``offset``; None when the server answers 416 (range not
    satisfiable: the part is not a prefix of the file)."""
    headers = {"User-Agent": "oodbench", **({"Range": f"bytes={offset}-"} if offset else {})}
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if offset and exc.code == 416:
            exc.close()
            return None
        raise


def _start_and_total(resp, offset: int) -> tuple[int, int | None]:
    """(first byte the response body holds, size of the whole file or None)."""
    length = resp.headers.get("Content-Length")
    length = int(length) if length and length.isdigit() else None
    if getattr(resp, "status", 200) == 206:
        m = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", "").strip())
        if m is None:
            return -1, None
        start = int(m.group(1))
        return start, int(m.group(3)) if m.group(3) != "*" else None if length is None else start + length
    return 0, length


def _transfer(url: str, f: BinaryIO, hashes: dict, resume: bool, timeout: float, progress: bool, label: str,
              what: str, fail) -> int:
    """Append ``url`` to ``f`` (hashing it) from where the part ends when ``resume``, else from the start; return
    the byte the transfer resumed from (0 for a fresh start)."""
    offset = _hash_file(f, _reset(hashes)) if resume else _restart(f, hashes)
    resp = _open(url, offset, timeout)
    start, total = _start_and_total(resp, offset) if resp is not None else (-1, None)
    if start != offset:  # 416, a 200 with the whole file, or an unexpected range: start over
        offset = _restart(f, hashes)
        if start != 0:
            if resp is not None:
                resp.close()
            resp = _open(url, 0, timeout)
            start, total = _start_and_total(resp, 0)
    with resp:
        if url.lower().startswith("http") and resp.headers.get_content_type() == "text/html":
            raise fail(f"{url}: the server sent an HTML page, not the {what} (a login or confirmation page?)")
        received = offset
        with tqdm(total=total, initial=offset, desc=label, unit="B", unit_scale=True, unit_divisor=1024,
                  disable=not progress, leave=False) as bar:
            for chunk in _read_chunks(resp, CHUNK_SIZE):
                f.write(chunk)
                for h in hashes.values():
                    h.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if total is not None and received != total:
        raise fail(f"{url}: download truncated ({received} of {total} bytes)")
    return offset


def fetch_url(url: str, dest: str | Path, *, sha256: str | None = None, md5: str | None = None,
              what: str = "file", manual: str = "download the file by hand", error: type[OodbenchError] = OodbenchError,
              progress: bool = True, timeout: float = 60.0) -> str:
    """Download ``url`` to ``dest`` and return its sha256; raise ``error`` (its message ends with ``manual``, how to
    do without this download) on a network error, truncation, HTML page or checksum mismatch.

    ``sha256`` and/or ``md5`` (where only an md5 is published) must match, else ``dest`` is left as it was. A part
    resumed from an earlier call that then fails its checksum is downloaded once more from the start (it may predate
    a change of the file); a wrong file is never kept for a later resume."""
    dest = Path(dest)
    scheme = urllib.parse.urlparse(url).scheme.lower()
    if scheme not in SCHEMES:
        raise error(f"{url}: unsupported URL scheme {scheme!r}; use one of {', '.join(SCHEMES)}, or {manual}")
    expected = {algo: normalize_digest(value, algo, error) for algo, value in (("sha256", sha256), ("md5", md5))
                if value is not None}
    hashes = {algo: hashlib.new(algo) for algo in ("sha256", *expected.keys() - {"sha256"})}
    # a part is resumed only where a checksum will vouch for the whole: without one, a file changed at the URL (or
    # another mirror) between two calls would be spliced unnoticed
    resumable = scheme in ("http", "https") and bool(expected)
    part = part_path(dest)

    def fail(message: str) -> OodbenchError:
        f.flush()
        kept = os.fstat(f.fileno()).st_size if resumable else 0
        keep = f"; {kept} bytes are kept in {part}: run the same command again to resume" if kept else ""
        return error(f"{message}{keep}. Check the URL and your connection, or {manual}")

    dest.parent.mkdir(parents=True, exist_ok=True)
    with _locked_part(part) as (f, waited):
        if waited and expected and dest.is_file():  # the process we waited for may have fetched it
            have = _reset(dict(hashes))
            with open(dest, "rb") as done:
                _hash_file(done, have)
            if all(have[algo].hexdigest() == value for algo, value in expected.items()):
                return have["sha256"].hexdigest()
        try:
            for resume in ((True, False) if resumable else (False,)):
                try:
                    resumed = _transfer(url, f, hashes, resume, timeout, progress, dest.name, what, fail)
                except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
                    raise fail(f"{url}: download failed ({_reason(exc)})") from exc
                actual = {algo: h.hexdigest() for algo, h in hashes.items()}
                wrong = [algo for algo, value in expected.items() if actual[algo] != value]
                if not wrong or not resumed:
                    break
        except BaseException:  # interrupted: keep what arrived over http(s) for a resume
            if not resumable:
                f.truncate(0)
            raise
        if wrong:
            f.truncate(0)
            raise error(f"{url}: " + ", ".join(f"{algo} mismatch: expected {expected[algo]}, got {actual[algo]}"
                                               for algo in wrong)
                        + f". The file at this URL is not the published {what}: check the URL, or {manual}")
        f.flush()
        os.fsync(f.fileno())
        os.replace(part, dest)
        return actual["sha256"]


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    if isinstance(exc, http.client.IncompleteRead):
        return f"connection closed with {exc.expected} bytes still to come"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
