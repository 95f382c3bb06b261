"""A score cache that cannot lie (issue 17): a truncated, bit-flipped or rewritten cache file is named in a warning,
discarded and scored again (the record is the clean run's), or, where no model can score it again (`oodbench
merge`), an error naming the file; a cache folder that cannot be written is an error naming it and the fixes before
the model runs, and no record is written."""
from __future__ import annotations

import errno
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from oodbench.cli import main
from oodbench.evaluation.score_cache import FORMAT, BadCacheEntry, ScoreCache, ScoreCacheWarning, checksum
from oodbench.segments.collector import ImageSegments

RUN = ["--method", "entropy", "--quiet"]


def _record(out: Path) -> dict:
    (path,) = out.glob("*.json")
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """A clean run, and the cache folder it wrote (under the session's OODBENCH_HOME)."""
    out = tmp_path_factory.mktemp("clean")
    assert main(["run", *RUN, "--out", str(out)]) == 0
    record = _record(out)
    key = record["scores"]["cache"]
    folder = ScoreCache(key).folder
    assert len(list(folder.glob("*.npz"))) == record["dataset"]["num_images"]
    return record, folder


@pytest.fixture
def victim(clean):
    """One cache file of the clean run (its bytes are put back after the test)."""
    _, folder = clean
    path = sorted(folder.glob("*.npz"))[5]
    original = path.read_bytes()
    yield path
    path.write_bytes(original)


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {name: z[name] for name in z.files}


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10  # inside the map's bytes
    path.write_bytes(bytes(data))


def _rescored(path: Path) -> None:
    """Re-saved by hand with other scores, keeping the digest and checksum fields: valid-looking, but a lie."""
    arrays = _arrays(path)
    arrays["score"] = (1 - arrays["score"].astype(np.float32)).astype(np.float16)
    np.savez(path, **arrays)


def _resigned(change):
    """Re-saved with ``change`` and a checksum that matches it: caught by the checks of the map itself."""
    def corrupt(path: Path) -> None:
        arrays = _arrays(path)
        arrays.pop("checksum")
        change(arrays)
        np.savez(path, checksum=np.array(checksum(arrays)), **arrays)
    return corrupt


def _unsigned(path: Path) -> None:
    arrays = _arrays(path)
    arrays.pop("checksum")
    np.savez(path, **arrays)  # as an older FORMAT wrote it


CORRUPTIONS = {
    "truncated": (_truncate, "unreadable"),
    "bit-flipped": (_flip, "unreadable|checksum mismatch"),
    "rescored": (_rescored, "checksum mismatch"),
    "no checksum": (_unsigned, "no checksum"),
    "wrong shape": (_resigned(lambda a: a.update(score=a["score"][:, :-1])), "shape"),
    "non-finite": (_resigned(lambda a: a["score"].__setitem__((0, 0), np.inf)), "NaN/inf"),
    "other dtype": (_resigned(lambda a: a.update(score=a["score"].astype(np.float32))), "float32"),
}


@pytest.mark.slow
@pytest.mark.parametrize("how", list(CORRUPTIONS))
def test_a_bad_cache_file_is_named_discarded_and_scored_again(clean, victim, tmp_path, how, capsys):
    record, _ = clean
    corrupt, reason = CORRUPTIONS[how]
    corrupt(victim)
    with pytest.warns(ScoreCacheWarning, match=re.escape(str(victim))) as caught:
        assert main(["run", *RUN, "--out", str(tmp_path)]) == 0
    (warning,) = [w for w in caught if issubclass(w.category, ScoreCacheWarning)]
    assert re.search(reason, str(warning.message)) and "method" not in str(warning.message)
    again = _record(tmp_path)
    assert again["metrics"] == record["metrics"]
    assert again["scores"]["from_cache"] < record["dataset"]["num_images"]  # the bad file's batch was scored again
    # the file was replaced by a good one: a later run reads every map from the cache, and has no warning
    assert "error" not in capsys.readouterr().err
    _arrays(victim)  # readable again
    second = tmp_path / "second"
    assert main(["run", *RUN, "--out", str(second)]) == 0
    assert _record(second)["scores"]["from_cache"] == record["dataset"]["num_images"]
    assert _record(second)["metrics"] == record["metrics"]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["truncated", "rescored", "wrong shape"])
def test_merge_names_a_bad_cache_file_and_changes_nothing(clean, victim, tmp_path, how, capsys):
    corrupt, _ = CORRUPTIONS[how]
    corrupt(victim)
    before = victim.read_bytes()
    capsys.readouterr()
    assert main(["merge", *RUN, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(victim) in err and "rerun `oodbench run`" in err and "--shard" in err
    assert "Traceback" not in err and "method 'entropy' returned" not in err
    assert not list(tmp_path.iterdir())  # no record
    assert victim.read_bytes() == before  # the failed merge leaves the cache as it was


@pytest.mark.slow
def test_a_clean_cache_merges_to_the_clean_record(clean, tmp_path):
    record, _ = clean
    assert main(["merge", *RUN, "--out", str(tmp_path)]) == 0
    assert _record(tmp_path)["metrics"] == record["metrics"]


def _no_record_and_no_model(tmp_path, capsys, monkeypatch) -> str:
    import oodbench.evaluation.score_pass

    calls = []
    predict = oodbench.evaluation.score_pass._predict
    monkeypatch.setattr(oodbench.evaluation.score_pass, "_predict", lambda *a: calls.append(1) or predict(*a))
    out = tmp_path / "records"
    capsys.readouterr()
    assert main(["run", *RUN, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "--no-score-cache" in err and "OODBENCH_HOME" in err
    assert not calls, "the model ran before the unwritable cache was found"
    assert not out.exists() or not list(out.iterdir())
    return err


@pytest.mark.slow
def test_a_cache_root_that_is_a_file_is_refused_before_the_model_runs(clean, tmp_path, capsys, monkeypatch):
    """$OODBENCH_HOME/score_cache a regular file (writes fail as root too), here via OODBENCH_SCORE_CACHE."""
    blocker = tmp_path / "score_cache"
    blocker.write_text("not a folder")
    monkeypatch.setenv("OODBENCH_SCORE_CACHE", str(blocker))
    err = _no_record_and_no_model(tmp_path, capsys, monkeypatch)
    assert f"score cache folder {blocker}{os.sep}" in err and f"({blocker} is a file, not a folder)" in err
    assert blocker.read_text() == "not a folder"


@pytest.mark.slow
def test_a_home_whose_score_cache_is_a_file_is_refused(clean, tmp_path, capsys, monkeypatch):
    """$OODBENCH_HOME/score_cache a regular file, in a home that shares the session's data and models."""
    real = Path(os.environ["OODBENCH_HOME"])
    home = tmp_path / "home"
    home.mkdir()
    for entry in real.iterdir():
        if entry.name != "score_cache":
            (home / entry.name).symlink_to(entry)
    (home / "score_cache").write_text("not a folder")
    monkeypatch.setenv("OODBENCH_HOME", str(home))
    monkeypatch.delenv("OODBENCH_SCORE_CACHE", raising=False)
    err = _no_record_and_no_model(tmp_path, capsys, monkeypatch)
    assert f"score cache folder {home / 'score_cache'}{os.sep}" in err and "is a file, not a folder" in err


def _read_only_below(root: Path, monkeypatch) -> None:
    """Every file created under ``root`` fails as on a read-only mount (EROFS), whoever runs the test."""
    mkstemp, mkdir = tempfile.mkstemp, Path.mkdir

    def refused(where) -> bool:
        return Path(where).resolve().is_relative_to(root.resolve())

    def ro_mkstemp(*args, dir=None, **kwargs):
        if dir is not None and refused(dir):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dir))
        return mkstemp(*args, dir=dir, **kwargs)

    def ro_mkdir(self, *args, **kwargs):
        if refused(self) and not self.is_dir():
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return mkdir(self, *args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", ro_mkstemp)
    monkeypatch.setattr(Path, "mkdir", ro_mkdir)


@pytest.mark.slow
def test_a_read_only_cache_is_refused_before_the_model_runs(clean, tmp_path, capsys, monkeypatch):
    root = tmp_path / "ro_cache"
    root.mkdir()
    monkeypatch.setenv("OODBENCH_SCORE_CACHE", str(root))
    _read_only_below(root, monkeypatch)
    err = _no_record_and_no_model(tmp_path, capsys, monkeypatch)
    assert f"score cache folder {root}{os.sep}" in err and "Read-only file system" in err


@pytest.mark.slow
def test_a_read_only_cache_that_holds_every_map_is_read(clean, tmp_path, monkeypatch):
    """Nothing to write, nothing refused: a full cache on a read-only mount gives the clean record."""
    record, folder = clean
    _read_only_below(folder.parent.parent, monkeypatch)
    assert main(["run", *RUN, "--out", str(tmp_path)]) == 0
    again = _record(tmp_path)
    assert again["metrics"] == record["metrics"] and again["scores"]["from_cache"] == record["dataset"]["num_images"]


def _in_read_only_mount(target: Path, out: Path, source: Path | None = None):
    """`oodbench run` in a private mount namespace where ``target`` is a read-only mount (tmpfs, or a bind of
    ``source``); None where this system allows no such namespace."""
    if shutil.which("unshare") is None:
        return None
    mounted = (f"mount -t tmpfs -o ro tmpfs {target}" if source is None else
               f"mount --bind {source} {target} && mount -o remount,bind,ro {target}")
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", mounted], capture_output=True, text=True)
    if probe.returncode != 0:
        return None
    command = f"{mounted} && exec {shlex.quote(sys.executable)} -m oodbench.cli run --method entropy --quiet " \
              f"--out {shlex.quote(str(out))}"
    env = {**os.environ, "OODBENCH_SCORE_CACHE": str(target)}
    return subprocess.run(["unshare", "-rm", "sh", "-c", command], capture_output=True, text=True, env=env,
                          timeout=600)


@pytest.mark.slow
def test_a_real_read_only_mount(clean, tmp_path):
    """On a read-only mount (where the system lets a test mount one): an empty cache is refused before the model
    runs, a cache holding every map is read."""
    record, folder = clean
    empty = tmp_path / "empty"
    empty.mkdir()
    done = _in_read_only_mount(empty, tmp_path / "refused")
    if done is None:
        pytest.skip("no private mount namespace here (unshare -rm)")
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"score cache folder {empty}{os.sep}" in done.stderr and "Read-only file system" in done.stderr
    assert "--no-score-cache" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "refused").exists()
    full = tmp_path / "full"
    full.mkdir()
    done = _in_read_only_mount(full, tmp_path / "read", source=folder.parent.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    again = _record(tmp_path / "read")
    assert again["metrics"] == record["metrics"] and again["scores"]["from_cache"] == record["dataset"]["num_images"]


# the cache alone, without a run


def _filled(tmp_path, segments: bool = False) -> tuple[ScoreCache, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image, score = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), rng.random((6, 8))
    cache = ScoreCache("k" * 64, tmp_path)
    segs = ImageSegments("f0", rng.random((3, 5)), np.array([1, 0, 1], np.int8), 2, np.array([[0, 1], [1, 1]]))
    cache.put("f0", cache.stored("f0", score), image, segs if segments else None, 0.5 if segments else None)
    return cache, image, score


def test_the_key_changes_with_the_format():
    assert FORMAT >= 4  # entries without a checksum live under keys no current run reads


@pytest.mark.parametrize("field", ["features", "targets", "pairs", "num_gt", "threshold", "image"])
def test_a_changed_segment_or_digest_field_fails_the_checksum(tmp_path, field):
    cache, image, _ = _filled(tmp_path, segments=True)
    path = cache.folder / "f0.npz"
    arrays = _arrays(path)
    arrays[field] = np.asarray(arrays[field]) + (1 if field != "image" else "x")
    np.savez(path, **arrays)
    with pytest.raises(BadCacheEntry, match=re.escape(str(path)) + ".*checksum mismatch"):
        cache.get("f0", image, 0.5)


def test_put_replaces_a_bad_file_and_get_checks_the_samples_shape(tmp_path):
    cache, image, score = _filled(tmp_path)
    path = cache.folder / "f0.npz"
    path.write_bytes(b"PK\x03\x04 garbage")
    with pytest.raises(BadCacheEntry, match="unreadable"):
        cache.get("f0", image)
    cache.put("f0", cache.stored("f0", score), image)  # a bad file holds no segments to keep: overwritten
    assert cache.get("f0", image, shape=(6, 8)) is not None
    with pytest.raises(BadCacheEntry, match=r"shape \(6, 8\), the sample's labels \(8, 6\)"):
        cache.get("f0", image, shape=(8, 6))


def test_discard_warns_and_deletes(tmp_path):
    cache, image, _ = _filled(tmp_path)
    path = cache.folder / "f0.npz"
    _truncate(path)
    try:
        cache.get("f0", image)
    except BadCacheEntry as bad:
        with pytest.warns(ScoreCacheWarning, match=re.escape(str(path)) + ".*deleted it"):
            cache.discard(bad)
    assert not path.exists() and cache.get("f0", image) is None


def test_a_write_that_fails_later_names_the_folder(tmp_path):
    cache, image, score = _filled(tmp_path)
    cache.folder.chmod(0o755)
    blocker = tmp_path / "file"
    blocker.write_text("")
    other = ScoreCache("k" * 64, blocker)
    with pytest.raises(Exception, match=re.escape(str(other.folder)) + ".*--no-score-cache"):
        other.put("f0", other.stored("f0", score), image)
    with pytest.raises(Exception, match=re.escape(str(other.folder)) + ".*--no-score-cache"):
        other.check_writable()
