"""Checkpoint download: sha256 verified while streaming, verified cache reuse, atomic replacement,
clean failure on mismatch, network error or interrupt, the --checkpoint override, and the resume of an
interrupted http download (Range requests to a local server that can drop, ignore ranges or send HTML)."""
import hashlib
import http.server
import os
import re
import threading
import time
import urllib.request
import warnings

import pytest

from oodbench import fetch
from oodbench.errors import CheckpointError, OodbenchError
from oodbench.models import hashing
from oodbench.models.download import (UnverifiedCheckpointWarning, default_cache_dir, fetch_checkpoint,
                                      resolve_checkpoint, sha256_of)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


@pytest.fixture
def source(tmp_path):
    """Write ``data`` as the published file and return its file:// URL."""
    folder = tmp_path / "server"
    folder.mkdir()

    def write(data: bytes, name: str = "model.pth") -> str:
        path = folder / name
        path.write_bytes(data)
        return path.as_uri()
    return write


def cache_files(cache):
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


V1 = os.urandom(3 * 1024 + 17)
V2 = os.urandom(5 * 1024 + 3)


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(fetch, "CHUNK_SIZE", 1024)


def test_downloads_and_verifies(source, cache):
    url = source(V1)
    path = fetch_checkpoint(url, digest(V1), cache_dir=cache, progress=False)
    assert path == cache / "model.pth" and path.read_bytes() == V1
    assert sha256_of(path) == digest(V1)
    assert cache_files(cache) == ["model.pth", "model.pth.sha256"]


def test_progress_bar_and_filename(source, cache):
    url = source(V1)
    path = fetch_checkpoint(url, digest(V1).upper(), cache_dir=cache, filename="renamed.pt", progress=True)
    assert path.name == "renamed.pt" and path.read_bytes() == V1


def test_cache_is_reused_without_reading_source_or_rehashing(source, cache, tmp_path, monkeypatch):
    url = source(V1)
    first = fetch_checkpoint(url, digest(V1), cache_dir=cache, progress=False)
    (tmp_path / "server" / "model.pth").unlink()
    monkeypatch.setattr(hashing, "sha256_file", lambda p: pytest.fail("re-hashed an unchanged file"))
    assert fetch_checkpoint(url, digest(V1), cache_dir=cache, progress=False) == first
    assert sha256_of(first) == digest(V1)


def test_sidecar_is_refreshed_when_size_or_mtime_changes(tmp_path):
    path = tmp_path / "w.pth"
    path.write_bytes(V1)
    assert sha256_of(path) == digest(V1)
    path.write_bytes(V2)
    assert sha256_of(path) == digest(V2)
    st = path.stat()
    path.write_bytes(V2[::-1])  # same size: only the mtime tells
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert sha256_of(path) == digest(V2[::-1])


def test_mismatch_raises_with_both_hashes_and_leaves_nothing(source, cache):
    url = source(V1)
    wrong = digest(b"something else")
    with pytest.raises(CheckpointError) as err:
        fetch_checkpoint(url, wrong, cache_dir=cache, progress=False)
    msg = str(err.value)
    assert url in msg and wrong in msg and digest(V1) in msg and "--checkpoint PATH" in msg
    assert cache_files(cache) == []


def test_changed_source_is_never_trusted_without_its_hash(source, cache):
    """The cache keeps the verified file: the old hash still gets it, a new hash downloads the new
    file, and a stale hash against a changed source fails rather than accepting the new bytes."""
    url = source(V1)
    fetch_checkpoint(url, digest(V1), cache_dir=cache, progress=False)
    source(V2)
    assert fetch_checkpoint(url, digest(V1), cache_dir=cache, progress=False).read_bytes() == V1
    with pytest.warns(UserWarning, match="downloading again"):
        assert fetch_checkpoint(url, digest(V2), cache_dir=cache, progress=False).read_bytes() == V2
    (cache / "model.pth").unlink()
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        fetch_checkpoint(url, digest(V1), cache_dir=cache, progress=False)


def test_cached_file_changed_on_disk_is_downloaded_again(source, cache):
    url = source(V1)
    path = fetch_checkpoint(url, digest(V1), cache_dir=cache, progress=False)
    path.write_bytes(b"truncated")
    with pytest.warns(UserWarning, match="downloading again"):
        assert fetch_checkpoint(url, digest(V1), cache_dir=cache, progress=False).read_bytes() == V1
    path.write_bytes(b"tampered")
    with pytest.warns(UnverifiedCheckpointWarning):
        assert fetch_checkpoint(url, None, cache_dir=cache, progress=False).read_bytes() == V1


def test_unpublished_hash_downloads_warns_and_records(source, cache, tmp_path):
    url = source(V1)
    with pytest.warns(UnverifiedCheckpointWarning, match=digest(V1)):
        path = fetch_checkpoint(url, None, cache_dir=cache, progress=False)
    assert path.read_bytes() == V1 and sha256_of(path) == digest(V1)
    (tmp_path / "server" / "model.pth").unlink()
    with pytest.warns(UnverifiedCheckpointWarning):
        assert fetch_checkpoint(url, None, cache_dir=cache, progress=False) == path


def test_unpublished_hash_does_not_reuse_a_file_from_another_url(source, cache, tmp_path):
    with pytest.warns(UnverifiedCheckpointWarning):
        fetch_checkpoint(source(V1), None, cache_dir=cache, progress=False)
    other = tmp_path / "mirror" / "model.pth"
    other.parent.mkdir()
    other.write_bytes(V2)
    with pytest.warns(UnverifiedCheckpointWarning):
        assert fetch_checkpoint(other.as_uri(), None, cache_dir=cache, progress=False).read_bytes() == V2


def test_missing_source_names_url(source, cache, tmp_path):
    url = (tmp_path / "server" / "absent.pth").as_uri()
    with pytest.raises(CheckpointError) as err:
        fetch_checkpoint(url, digest(V1), cache_dir=cache, progress=False)
    assert url in str(err.value) and "--checkpoint PATH" in str(err.value)
    assert cache_files(cache) == []


def interrupt_after_one_chunk(exc):
    def chunks(stream, size):
        yield stream.read(size)
        raise exc
    return chunks


@pytest.mark.parametrize("exc, raised", [(KeyboardInterrupt(), KeyboardInterrupt),
                                         (ConnectionResetError("peer reset"), CheckpointError)])
def test_interrupt_keeps_previous_file_and_leaves_no_part(source, cache, tmp_path, monkeypatch, exc, raised):
    url = source(V1)
    fetch_checkpoint(url, digest(V1), cache_dir=cache, progress=False)
    source(V2)
    monkeypatch.setattr(fetch, "_read_chunks", interrupt_after_one_chunk(exc))
    with pytest.raises(raised), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fetch_checkpoint(url, digest(V2), cache_dir=cache, progress=False)
    assert cache_files(cache) == ["model.pth", "model.pth.sha256"]
    (tmp_path / "server" / "model.pth").unlink()
    assert fetch_checkpoint(url, digest(V1), cache_dir=cache, progress=False).read_bytes() == V1


def test_interrupt_of_first_download_leaves_empty_cache(source, cache, monkeypatch):
    monkeypatch.setattr(fetch, "_read_chunks", interrupt_after_one_chunk(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        fetch_checkpoint(source(V1), digest(V1), cache_dir=cache, progress=False)
    assert cache_files(cache) == []


def test_timeout_is_a_checkpoint_error(source, cache, monkeypatch):
    def timeout(*args, **kwargs):
        raise TimeoutError("timed out")
    monkeypatch.setattr(urllib.request, "urlopen", timeout)
    url = source(V1)
    with pytest.raises(CheckpointError, match="TimeoutError.*--checkpoint PATH"):
        fetch_checkpoint(url, digest(V1), cache_dir=cache, progress=False)
    assert cache_files(cache) == []


def test_bad_arguments(source, cache):
    with pytest.raises(CheckpointError, match="not a sha256"):
        fetch_checkpoint(source(V1), "abc", cache_dir=cache)
    with pytest.raises(CheckpointError, match="unsupported URL scheme"):
        fetch_checkpoint("ftp://example.org/model.pth", digest(V1), cache_dir=cache)
    with pytest.raises(CheckpointError, match="filename=NAME"):
        fetch_checkpoint("https://example.org/", digest(V1), cache_dir=cache)


@pytest.fixture
def http_server(tmp_path):
    """A local HTTP server: /model.pth is V1, /page.pth is an HTML page, the rest 404."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body, ctype = {"/model.pth": (V1, "application/octet-stream"),
                           "/page.pth": (b"<html>sign in</html>", "text/html; charset=utf-8")}.get(self.path, (None, ""))
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http(http_server, cache):
    path = fetch_checkpoint(f"{http_server}/model.pth", digest(V1), cache_dir=cache, progress=False)
    assert path.read_bytes() == V1
    with pytest.raises(CheckpointError, match=r"/missing\.pth: download failed \(HTTP 404"):
        fetch_checkpoint(f"{http_server}/missing.pth", digest(V1), cache_dir=cache, progress=False)
    with pytest.raises(CheckpointError, match="HTML page"):
        fetch_checkpoint(f"{http_server}/page.pth", None, cache_dir=cache, progress=False)
    assert cache_files(cache) == ["model.pth", "model.pth.sha256"]


def test_resolve_precedence_and_errors(source, cache, tmp_path):
    local = tmp_path / "mine.pth"
    local.write_bytes(V2)
    unreachable = (tmp_path / "nowhere.pth").as_uri()
    assert resolve_checkpoint(checkpoint=str(local), url=unreachable, sha256=digest(V1), cache_dir=cache) == local
    assert cache_files(cache) == []
    with pytest.raises(CheckpointError, match="absent.pth: --checkpoint file not found"):
        resolve_checkpoint(checkpoint=tmp_path / "absent.pth", url=source(V1), sha256=digest(V1), cache_dir=cache)
    with pytest.raises(CheckpointError, match="it is a folder"):
        resolve_checkpoint(checkpoint=tmp_path, url=None, sha256=None)
    path = resolve_checkpoint(checkpoint=None, url=source(V1), sha256=digest(V1), cache_dir=cache, progress=False)
    assert path.read_bytes() == V1
    with pytest.raises(CheckpointError, match="--checkpoint PATH.*URL"):
        resolve_checkpoint(checkpoint=None, url=None, sha256=None)


def test_default_cache_dir_is_under_home(monkeypatch, tmp_path):
    monkeypatch.setenv("OODBENCH_HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / "checkpoints"


class RangeServer:
    """What the local server serves and how: ``files`` maps a path to (body, content type); ``drop_after[path] = N``
    sends N bytes of the next reply for that path, then closes the connection; ``ignore_range`` answers every
    request with the whole file (200). ``requests`` records (path, Range header) of each GET."""

    def __init__(self, base: str = ""):
        self.base = base
        self.files: dict[str, tuple[bytes, str]] = {}
        self.drop_after: dict[str, int] = {}
        self.ignore_range = False
        self.requests: list[tuple[str, str | None]] = []

    def serve(self, name: str, body: bytes, ctype: str = "application/octet-stream") -> str:
        self.files["/" + name] = (body, ctype)
        return f"{self.base}/{name}"

    def ranges(self, name: str) -> list[str | None]:
        return [rng for path, rng in self.requests if path == "/" + name]


def range_handler(state: RangeServer):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            rng = self.headers.get("Range")
            state.requests.append((self.path, rng))
            if self.path not in state.files:
                self.send_error(404)
                return
            body, ctype = state.files[self.path]
            m = re.fullmatch(r"bytes=(\d+)-", rng or "")
            start = int(m.group(1)) if m and not state.ignore_range else 0
            if start >= len(body) > 0:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206 if start else 200)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            self.send_header("Accept-Ranges", "none" if state.ignore_range else "bytes")
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            cut = state.drop_after.pop(self.path, None)
            try:
                self.wfile.write(body[start:] if cut is None else body[start:start + cut])
            except (BrokenPipeError, ConnectionResetError):  # the client gave up: nothing to do
                pass

        def log_message(self, *args):
            pass
    return Handler


@pytest.fixture
def range_server():
    """A ``RangeServer`` on 127.0.0.1 (a free port), shut down after the test."""
    state = RangeServer()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), range_handler(state))
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


BIG = os.urandom(20 * 1024 + 5)


def test_dropped_connection_keeps_part_and_resumes_with_range(range_server, cache, monkeypatch):
    url = range_server.serve("model.pth", BIG)
    range_server.drop_after["/model.pth"] = 7000
    with pytest.raises(CheckpointError) as err:
        fetch_checkpoint(url, digest(BIG), cache_dir=cache, progress=False)
    msg = str(err.value)
    assert url in msg and "truncated (7000 of" in msg
    assert "model.pth.part" in msg and "run the same command again" in msg
    assert cache_files(cache) == ["model.pth.part"] and (cache / "model.pth.part").read_bytes() == BIG[:7000]
    bars = []
    real_tqdm = fetch.tqdm
    monkeypatch.setattr(fetch, "tqdm", lambda **kw: bars.append(kw) or real_tqdm(**kw))
    path = fetch_checkpoint(url, digest(BIG), cache_dir=cache, progress=True)
    assert path.read_bytes() == BIG and sha256_of(path) == digest(BIG)
    assert range_server.ranges("model.pth") == [None, "bytes=7000-"]
    assert bars[0]["initial"] == 7000 and bars[0]["total"] == len(BIG)  # the bar starts at the resumed bytes
    assert cache_files(cache) == ["model.pth", "model.pth.sha256"]


def test_without_a_checksum_an_interrupted_download_starts_over(range_server, cache):
    """Nothing could vouch for a part spliced with what the URL serves later, so none is kept to resume."""
    url = range_server.serve("model.pth", BIG)
    range_server.drop_after["/model.pth"] = 7000
    with pytest.raises(CheckpointError) as err:
        fetch_checkpoint(url, None, cache_dir=cache, progress=False)
    assert "truncated (7000 of" in str(err.value) and "resume" not in str(err.value)
    assert not (cache / "model.pth.part").is_file() or (cache / "model.pth.part").stat().st_size == 0
    with pytest.warns(UserWarning, match="no published sha256"):
        assert fetch_checkpoint(url, None, cache_dir=cache, progress=False).read_bytes() == BIG
    assert range_server.ranges("model.pth") == [None, None]


def test_keyboard_interrupt_over_http_keeps_the_part(range_server, cache, monkeypatch):
    url = range_server.serve("model.pth", BIG)
    monkeypatch.setattr(fetch, "_read_chunks", interrupt_after_one_chunk(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        fetch_checkpoint(url, digest(BIG), cache_dir=cache, progress=False)
    monkeypatch.undo()
    monkeypatch.setattr(fetch, "CHUNK_SIZE", 1024)
    assert (cache / "model.pth.part").read_bytes() == BIG[:1024]
    assert fetch_checkpoint(url, digest(BIG), cache_dir=cache, progress=False).read_bytes() == BIG
    assert range_server.ranges("model.pth") == [None, "bytes=1024-"]


def test_server_ignoring_range_restarts_cleanly(range_server, cache):
    url = range_server.serve("model.pth", BIG)
    range_server.drop_after["/model.pth"] = 5000
    with pytest.raises(CheckpointError, match="truncated"):
        fetch_checkpoint(url, digest(BIG), cache_dir=cache, progress=False)
    range_server.ignore_range = True
    assert fetch_checkpoint(url, digest(BIG), cache_dir=cache, progress=False).read_bytes() == BIG
    assert range_server.ranges("model.pth") == [None, "bytes=5000-"]  # answered 200: the whole file, once
    assert cache_files(cache) == ["model.pth", "model.pth.sha256"]


def test_part_longer_than_the_file_gets_416_and_restarts(range_server, cache):
    url = range_server.serve("model.pth", BIG)
    cache.mkdir()
    (cache / "model.pth.part").write_bytes(os.urandom(len(BIG) + 10))
    assert fetch_checkpoint(url, digest(BIG), cache_dir=cache, progress=False).read_bytes() == BIG
    assert range_server.ranges("model.pth") == [f"bytes={len(BIG) + 10}-", None]


def test_stale_part_failing_the_checksum_is_downloaded_again_from_the_start(range_server, cache):
    url = range_server.serve("model.pth", BIG)
    cache.mkdir()
    (cache / "model.pth.part").write_bytes(b"x" * 3000)  # e.g. the start of an older version of the file
    assert fetch_checkpoint(url, digest(BIG), cache_dir=cache, progress=False).read_bytes() == BIG
    assert range_server.ranges("model.pth") == ["bytes=3000-", None]


def test_wrong_checksum_over_http_leaves_no_part(range_server, cache):
    url = range_server.serve("model.pth", BIG)
    with pytest.raises(CheckpointError, match=f"expected {digest(V1)}, got {digest(BIG)}"):
        fetch_checkpoint(url, digest(V1), cache_dir=cache, progress=False)
    assert cache_files(cache) == []


def test_md5_alone_is_verified(range_server, tmp_path):
    url = range_server.serve("data.zip", BIG)
    md5 = hashlib.md5(BIG).hexdigest()
    assert fetch.fetch_url(url, tmp_path / "data.zip", md5=md5.upper(), progress=False) == digest(BIG)
    wrong = hashlib.md5(b"other").hexdigest()
    with pytest.raises(OodbenchError, match=f"md5 mismatch: expected {wrong}, got {md5}"):
        fetch.fetch_url(url, tmp_path / "again.zip", md5=wrong, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.zip"]
    with pytest.raises(OodbenchError, match="not a md5 digest"):
        fetch.fetch_url(url, tmp_path / "x.zip", md5="abc")


def test_waits_for_a_concurrent_download_of_the_same_file(range_server, tmp_path):
    """Another process holding the part: wait, then take its finished file instead of downloading it again."""
    fcntl = pytest.importorskip("fcntl")
    url = range_server.serve("model.pth", BIG)
    dest = tmp_path / "model.pth"
    part = fetch.part_path(dest)
    result = {}
    with open(part, "a+b") as other:
        fcntl.flock(other, fcntl.LOCK_EX)
        thread = threading.Thread(target=lambda: result.update(sha=fetch.fetch_url(url, dest, sha256=digest(BIG),
                                                                                   progress=False)))
        thread.start()
        time.sleep(0.3)
        assert thread.is_alive()  # waiting for the lock
        other.write(BIG)
        other.flush()
        os.replace(part, dest)
    thread.join(10)
    assert result["sha"] == digest(BIG) and range_server.requests == []  # nothing downloaded twice
    assert sorted(os.listdir(tmp_path)) == ["model.pth"]
