"""Sharded, merged, resumed and distributed (torchrun-style, gloo) runs give the record of one plain run."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from oodbench.cli import main
from oodbench.errors import OodbenchError, ScoreError
from oodbench.methods import create_method
from oodbench.evaluation.runner import run

METHOD = "entmax_meta"


def _comparable(record: dict) -> dict:
    """What must not depend on how the work was split: the method, the data and every metric."""
    return {k: record[k] for k in ("method", "dataset", "metrics")}


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    record, _ = run(METHOD, progress=False, bootstrap=20, cache_root=tmp_path_factory.mktemp("plain_cache"))
    assert record["scores"] == {**record["scores"], "storage": "float16", "from_cache": 0, "processes": 1}
    return record


def test_shards_then_merge_equal_one_run(plain, tmp_path):
    cache = tmp_path / "cache"
    sizes = [run(METHOD, progress=False, bootstrap=20, cache_root=cache, shard=(i, 3))[0]["num_images"]
             for i in range(3)]
    assert sizes == [20, 20, 20]
    merged, _ = run(METHOD, progress=False, bootstrap=20, cache_root=cache, from_cache=True)
    assert merged["scores"]["from_cache"] == 60
    assert _comparable(merged) == _comparable(plain)


def test_merge_names_the_missing_shard(tmp_path):
    run("entmax", progress=False, cache_root=tmp_path, shard=(0, 2))
    with pytest.raises(ScoreError, match=r"lacks samples \[.*\] \(maps, or segments.*\): run the shard\(s\) that score"):
        run("entmax", progress=False, cache_root=tmp_path, from_cache=True)
    method = create_method("entmax")
    method.setup = lambda progress: pytest.fail("refused only after loading the model")
    with pytest.raises(OodbenchError, match="need the score cache; drop --no-score-cache$"):
        run(method, progress=False, score_cache=False, shard=(1, 2))


def test_interrupted_run_resumes_from_the_cache(plain, tmp_path, monkeypatch):
    method = create_method(METHOD)
    calls = {"n": 0}
    predict = type(method).predict

    def flaky(self, images):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return predict(self, images)

    monkeypatch.setattr(type(method), "predict", flaky)
    with pytest.raises(KeyboardInterrupt):
        run(method, progress=False, bootstrap=20, cache_root=tmp_path, out_dir=tmp_path / "records")
    assert not (tmp_path / "records").exists()
    monkeypatch.undo()
    resumed, _ = run(METHOD, progress=False, bootstrap=20, cache_root=tmp_path)
    assert resumed["scores"]["from_cache"] == 8  # the two batches of four scored before the interrupt
    assert _comparable(resumed) == _comparable(plain)


def _rank(rank: int, world: int, store: str, cache: str, out: str, home: str) -> None:
    os.environ["OODBENCH_HOME"] = home
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        record, path = run(METHOD, progress=False, bootstrap=20, cache_root=cache, out_dir=out)
        assert (path is None) == (rank != 0)
        with open(os.path.join(out, f"rank{rank}.json"), "w") as fh:
            json.dump(_comparable(record) | {"scores": record["scores"]}, fh)
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_give_the_one_process_record(plain, tmp_path):
    out = tmp_path / "records"
    out.mkdir()
    mp.spawn(_rank, args=(2, str(tmp_path / "store"), str(tmp_path / "cache"), str(out), os.environ["OODBENCH_HOME"]),
             nprocs=2, join=True)
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["scores"]["processes"] == 2 and ranks[0]["scores"]["from_cache"] == 0
    expected = json.loads(json.dumps(_comparable(plain)))
    for record in ranks:
        _close({k: v for k, v in record.items() if k != "scores"}, expected)
    assert len(list(out.glob("*-*.json"))) == 1  # only rank 0 wrote a record


def _close(a, b) -> None:
    """Nested equality; floats to 1e-12 relative (sums over images are added in another order across ranks)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _close(a[k], b[k])
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _close(x, y)
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-12, abs=1e-15)
    else:
        assert a == b


def test_cli_shards_and_merge(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OODBENCH_SCORE_CACHE", str(tmp_path / "cache"))
    common = ["--method", "entmax", "--quiet", "--no-components", "--out", str(tmp_path / "records")]
    for i in range(2):
        assert main(["run", *common, "--shard", f"{i}/2"]) == 0
        assert f"shard {i}/2: 30 images, 30 scored, 0 already cached" in capsys.readouterr().out
    assert not (tmp_path / "records").exists()
    assert main(["merge", *common]) == 0
    (path,) = (tmp_path / "records").glob("*.json")
    assert json.loads(path.read_text())["scores"]["from_cache"] == 60
    assert main(["run", *common, "--shard", "2/2"]) == 2
    assert "i must be in 0..N-1" in capsys.readouterr().err


def test_torchrun_cli(plain, tmp_path):
    """The real launcher: two CPU processes, gloo, one record equal to the plain run's."""
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "OODBENCH_SCORE_CACHE": str(tmp_path / "cache")}
    out = tmp_path / "records"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "oodbench.cli", "run", "--method", METHOD, "--bootstrap", "20", "--quiet", "--out", str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("record:") == 1  # rank 0 alone reports
    (path,) = out.glob("*.json")
    record = json.loads(path.read_text())
    assert record["scores"]["processes"] == 2 and record["scores"]["from_cache"] == 0
    _close(_comparable(record), json.loads(json.dumps(_comparable(plain))))


def test_an_edited_frame_is_scored_again(tmp_path):
    from oodbench.data import DATASETS
    from oodbench.evaluation.score_cache import ScoreCache

    sample = DATASETS.create("synthetic", split="val")[0]
    cache = ScoreCache("k", tmp_path)
    stored = cache.stored(sample.id, sample.image[..., 0] / 255.0)
    cache.put(sample.id, stored, sample.image)
    score, segments = cache.get(sample.id, sample.image)
    assert stored.dtype == "float16" and score.dtype == "float32" and (score == stored).all() and segments is None
    edited = sample.image.copy()
    edited[0, 0, 0] ^= 1
    assert cache.get(sample.id, edited) is None
    assert not list(tmp_path.rglob("*.part"))


def test_a_frames_map_and_segments_share_one_file(tmp_path):
    """The meta stage's segments are read back only at the threshold they were formed at."""
    from oodbench.evaluation.score_cache import ScoreCache
    from oodbench.segments.collector import ImageSegments

    rng = np.random.default_rng(0)
    image, score = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), rng.random((6, 8))
    segments = ImageSegments("f0", rng.random((3, 75)), np.array([1, 0, 1], np.int8), 2, np.array([[0, 1], [1, 1]]))
    cache = ScoreCache("k", tmp_path)
    cache.put("f0", cache.stored("f0", score), image, segments, 0.5)
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["f0.npz"]
    read, again = cache.get("f0", image, 0.5)
    np.testing.assert_array_equal(read, score.astype(np.float16))
    for field in ("features", "targets", "num_gt", "pairs"):
        np.testing.assert_array_equal(getattr(again, field), getattr(segments, field))
    assert cache.get("f0", image, 0.6) is None
    assert cache.get("f0", image)[1] is None
    cache.put("f0", cache.stored("f0", score), image)  # the same map without segments (X beside X_meta) keeps them
    np.testing.assert_array_equal(cache.get("f0", image, 0.5)[1].features, segments.features)


@pytest.mark.parametrize("held", [60, 25, 0])
def test_oracle_pass_replays_held_frames_and_reads_only_the_rest(plain, tmp_path, monkeypatch, held):
    """Frames whose label and map fit the replay budget are not decoded again for the oracle pass; the others
    are read again with their cached maps. The record is the plain run's either way."""
    from oodbench.data.base import Dataset
    from oodbench.evaluation.replay import Replay

    reads = []
    getitem = Dataset.__getitem__
    monkeypatch.setattr(Dataset, "__getitem__", lambda self, i: reads.append(i) or getitem(self, i))
    monkeypatch.setattr(Replay, "budget", held * 128 * 256 * 3)  # uint8 label + float16 map per 128x256 frame
    record, _ = run(METHOD, progress=False, bootstrap=20, cache_root=tmp_path)
    assert reads == list(range(60)) + list(range(held, 60))
    assert _comparable(record) == _comparable(plain)


@pytest.fixture(scope="module")
def uncached(tmp_path_factory):
    record, _ = run(METHOD, progress=False, bootstrap=20, score_cache=False,
                    cache_root=tmp_path_factory.mktemp("unused"))
    return record


@pytest.mark.parametrize("held", [60, 25, 0])
def test_without_a_score_cache_only_frames_not_held_are_written(uncached, tmp_path, monkeypatch, held):
    """A run without a score cache writes scratch maps for the oracle pass only for the frames the replay cannot
    hold, reads only those again, and its record does not depend on how many it holds."""
    from oodbench.data.base import Dataset
    from oodbench.evaluation.replay import Replay
    from oodbench.evaluation.score_cache import ScoreCache

    written, reads = [], []
    put, getitem = ScoreCache.put, Dataset.__getitem__
    monkeypatch.setattr(ScoreCache, "put", lambda self, sample_id, *a, **k: written.append(sample_id)
                        or put(self, sample_id, *a, **k))
    monkeypatch.setattr(Dataset, "__getitem__", lambda self, i: reads.append(i) or getitem(self, i))
    monkeypatch.setattr(Replay, "budget", held * 128 * 256 * 5)  # uint8 label + float32 map per 128x256 frame
    record, _ = run(METHOD, progress=False, bootstrap=20, score_cache=False, cache_root=tmp_path)
    assert reads == list(range(60)) + list(range(held, 60)) and not list(tmp_path.rglob("*.npz"))
    assert len(written) == 60 - held
    assert record["scores"]["storage"] == uncached["scores"]["storage"] != "float16"
    assert _comparable(record) == _comparable(uncached)


def test_a_replayed_map_does_not_share_the_callers_buffer():
    """A method that reuses its output buffer cannot change the maps the second pass reads."""
    from oodbench.data.base import Sample
    from oodbench.evaluation.replay import Replay
    from oodbench.evaluation.score_pass import Scored

    replay, buffer = Replay(), np.zeros((4, 4), np.float32)
    replay(Scored(Sample("f0", None, np.zeros((4, 4), np.uint8)), buffer))
    buffer[:] = 7.0
    assert not replay.items[0][1].any()
