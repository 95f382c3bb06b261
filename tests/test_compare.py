"""`oodbench compare`: the CI baseline written from records, identical records pass, a planted regression fails,
directions and tolerances per metric, missing and new entries, the Markdown table."""
from __future__ import annotations

import argparse
import copy
import json

import numpy as np
import pytest

from oodbench.commands.compare import register
from oodbench.errors import OodbenchError
from oodbench.leaderboard.compare import METRICS, compare, parse_tolerances, read_baseline, record_key
from oodbench.leaderboard.record import BENCHMARK_VERSION, seal, write_record
from oodbench.leaderboard.validate import RecordError
from oodbench.evaluation.runner import run

from layout_files import write_red_scenes
from red_method import Red
from record_factory import valid_record


def fake(method: str, **segments) -> dict:
    """A record with hand-picked values of the parts compare reads."""
    metrics = {"pixel": {"auroc": 0.9, "ap": 0.5, "fpr95": 0.2},
               "components": {"siou": 0.3, "ppv": 0.4, "f1_mean": 0.25, "threshold": 0.5,
                              "threshold_choice": {"threshold": 0.5, "source": "given", "description": "given"}}}
    if segments:
        metrics["segments"] = {"meta_auroc": 0.8, "meta_ap": None, **segments}
    return valid_record(method, metrics, seed=0, method_checkpoint_sha256="ab" * 32)


def put(record: dict, folder) -> str:
    """Write a (possibly edited) record sealed under its content address; return its file name."""
    return write_record(seal(record), folder).name


@pytest.fixture
def records(tmp_path):
    """A real record (red channel as score over a folder dataset) and a hand-made one with segment counts."""
    root = write_red_scenes(tmp_path / "scenes", 64, np.s_[20:25, 40:45])
    folder = tmp_path / "records"
    run(Red(), dataset="folder", data_root=root, out_dir=folder, progress=False, track="obstacle")
    put(fake("entmax_meta", fp_before=40, fn_before=10, fp_after=3, fn_after=12), folder)
    return folder


def cli(*argv: str) -> int:
    p = argparse.ArgumentParser()
    register(p.add_subparsers(dest="command"))
    args = p.parse_args(["compare", *argv])
    return args.func(args)


def plant(folder, dest, key: str, section: str, metric: str, delta: float):
    """Copy the records of ``folder`` to ``dest`` with one metric of record ``key`` changed by ``delta``."""
    dest.mkdir()
    for path in folder.glob("*.json"):
        rec = json.loads(path.read_text())
        if record_key(rec) == key:
            rec["metrics"][section][metric] += delta
        put(rec, dest)
    return dest


@pytest.fixture
def baseline(records, tmp_path):
    path = tmp_path / "ci" / "baseline.json"
    assert cli("--write-baseline", "--baseline", str(path), "--records", str(records)) == 0
    return path


def test_baseline_format(baseline):
    data = json.loads(baseline.read_text())
    assert data["format"] == "oodbench-ci-baseline/1"
    assert sorted(data["entries"]) == ["entmax_meta/synthetic/test", "red/folder/test"]
    red = data["entries"]["red/folder/test"]
    assert set(red["metrics"]) == {"auroc", "ap", "fpr95", "siou", "ppv", "f1_mean"}
    assert red["benchmark_version"] == BENCHMARK_VERSION and red["seed"] == 0
    meta = data["entries"]["entmax_meta/synthetic/test"]["metrics"]
    assert meta["fp_after"] == 3 and isinstance(meta["fp_after"], int) and "meta_ap" not in meta  # null: left out


def test_identical_records_pass(records, baseline, capsys, tmp_path):
    out = tmp_path / "comment.md"
    assert cli("--baseline", str(baseline), "--records", str(records), "--output", str(out)) == 0
    text = capsys.readouterr().out
    assert text.startswith("### oodbench regression check: ✅ no regression")
    header = next(line for line in text.splitlines() if line.startswith("| method"))
    assert [c.strip() for c in header.strip("|").split("|")] == ["method", "dataset", "metric", "baseline", "now",
                                                                  "delta", "verdict"]
    rows = [line for line in text.splitlines() if line.startswith("| red ") or line.startswith("| entmax_meta ")]
    assert len(rows) == 6 + 6 + 5 and all("✅" in r for r in rows)
    fp_after = next(line for line in rows if "| fp_after " in line)
    assert [c.strip() for c in fp_after.strip("|").split("|")] == ["entmax_meta", "synthetic/test", "fp_after", "3",
                                                                    "3", "+0", "✅"]
    assert out.read_text().strip() == text.strip()


def test_planted_regression_fails(records, baseline, tmp_path, capsys):
    planted = plant(records, tmp_path / "planted", "red/folder/test", "pixel", "ap", -0.02)
    assert cli("--baseline", str(baseline), "--records", str(planted)) == 1
    captured = capsys.readouterr()
    assert "### oodbench regression check: ❌ regression" in captured.out
    assert "1 regression(s)" in captured.out and "--write-baseline" in captured.err
    row = next(line for line in captured.out.splitlines() if "| red " in line and "| ap " in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[0] == "red" and cells[1] == "folder/test" and cells[5] == "-2.00"
    assert cells[6] == "❌ worse by more than 0.005"
    assert float(cells[3]) - float(cells[4]) == pytest.approx(2.0, abs=0.011)


def test_provenance_notes(records, baseline, tmp_path, capsys):
    planted = plant(records, tmp_path / "planted", "entmax_meta/synthetic/test", "pixel", "ap", -0.1)
    (path,) = planted.glob("*entmax_meta*.json")
    meta = json.loads(path.read_text())
    path.unlink()
    meta["method"]["checkpoint_sha256"], meta["seed"] = "cd" * 32, 3
    path = planted / put(meta, planted)
    assert cli("--baseline", str(baseline), "--records", str(planted)) == 1
    notes = capsys.readouterr().out.split("Notes:")[1]
    assert "`entmax_meta/synthetic/test`: seed 0 -> 3 (another seed)" in notes
    assert "checkpoint_sha256 abababababab -> cdcdcdcdcdcd" in notes
    meta["metrics"]["pixel"]["ap"] = 0.5  # no regression, but another checkpoint: flagged, and fails unless allowed
    path.unlink()
    put(meta, planted)
    assert cli("--baseline", str(baseline), "--records", str(planted)) == 1
    assert "❌ checkpoint changed abababababab -> cdcdcdcdcdcd" in capsys.readouterr().out
    assert cli("--baseline", str(baseline), "--records", str(planted), "--allow-checkpoint-change") == 0
    assert "checkpoint_sha256" not in capsys.readouterr().out  # the note is for keys with a regression only


@pytest.mark.parametrize("section, metric, delta, extra, code", [
    ("pixel", "ap", -0.004, [], 0),                     # within the default 0.005
    ("pixel", "ap", -0.004, ["--tolerance", "ap=0.001"], 1),
    ("pixel", "ap", 0.02, [], 0),                       # better
    ("pixel", "fpr95", 0.01, [], 1),                    # lower is better
    ("pixel", "fpr95", -0.01, [], 0),
    ("segments", "fp_after", 1, [], 1),                 # counts: tolerance 0
    ("segments", "fp_after", 1, ["--tolerance", "fp_after=1"], 0),
    ("segments", "fn_before", -2, [], 0),
])
def test_directions_and_tolerances(records, baseline, tmp_path, section, metric, delta, extra, code, capsys):
    planted = plant(records, tmp_path / "planted", "entmax_meta/synthetic/test", section, metric, delta)
    assert cli("--baseline", str(baseline), "--records", str(planted), *extra) == code
    if code == 0 and (delta > 0) == METRICS[metric].higher_is_better:
        assert "✅ better" in capsys.readouterr().out


def test_missing_and_new(records, baseline, tmp_path, capsys):
    one = next(p for p in records.glob("*.json") if "entmax_meta" not in p.name)
    assert cli("--baseline", str(baseline), str(one)) == 1  # the entmax_meta entry has no record
    text = capsys.readouterr().out
    assert "| missing no record" in text and "❌ regression" in text
    assert cli("--baseline", str(baseline), str(one), "--allow-missing") == 0
    extra = tmp_path / "new" / put(fake("msp"), tmp_path / "new")
    assert cli("--baseline", str(baseline), "--records", str(records), str(extra)) == 0
    new_rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| msp ")]
    assert len(new_rows) == 6 and all("🆕 no baseline entry" in line for line in new_rows)


def test_write_baseline_updates_and_replaces(records, baseline, tmp_path):
    extra = tmp_path / "new" / put(fake("msp"), tmp_path / "new")
    assert cli("--write-baseline", "--baseline", str(baseline), str(extra)) == 0
    assert len(read_baseline(baseline)["entries"]) == 3
    assert cli("--write-baseline", "--replace", "--baseline", str(baseline), str(extra)) == 0
    assert list(read_baseline(baseline)["entries"]) == ["msp/synthetic/test"]
    assert not list(baseline.parent.glob(".baseline-*"))


def test_compare_function_rows():
    base = {"format": "oodbench-ci-baseline/1", "entries": {"m/d/s": {"metrics": {"ap": 0.5, "fp_after": 3}}}}
    rec = fake("m")
    rec["dataset"] = {"name": "d", "split": "s"}
    rows = {r.metric: r for r in compare(base, {"m/d/s": rec})}
    assert rows["ap"].verdict == "ok" and rows["ap"].delta == 0
    assert rows["fp_after"].verdict == "missing" and rows["fp_after"].note == "not in the record"
    assert rows["auroc"].verdict == "new"


def test_tolerance_parsing():
    assert parse_tolerances(["ap=0.01", "fp_after=2", " fpr95=0"]) == {"ap": 0.01, "fp_after": 2.0, "fpr95": 0.0}
    for bad in ("ap", "ap=x", "ap=-1", "ap=nan", "nope=1"):
        with pytest.raises(OodbenchError, match="--tolerance"):
            parse_tolerances([bad])


def test_errors(tmp_path, records):
    with pytest.raises(OodbenchError, match="no baseline"):
        cli("--baseline", str(tmp_path / "none.json"), "--records", str(records))
    (tmp_path / "bad.json").write_text(json.dumps({"entries": {}}))
    with pytest.raises(OodbenchError, match="not an oodbench baseline"):
        cli("--baseline", str(tmp_path / "bad.json"), "--records", str(records))
    with pytest.raises(OodbenchError, match="give records"):
        cli("--baseline", str(tmp_path / "bad.json"))
    with pytest.raises(OodbenchError, match="no such record"):
        cli("--baseline", str(tmp_path / "bad.json"), str(tmp_path / "nothing.json"))


def test_newest_record_per_key_wins(tmp_path):
    from oodbench.leaderboard.compare import load_records

    old, new = fake("m"), copy.deepcopy(fake("m"))
    new["provenance"]["utc_time"] = "2026-02-01T00:00:00+00:00"
    new["metrics"]["pixel"]["ap"] = 0.7
    paths = [tmp_path / put(r, tmp_path) for r in (new, old)]
    (tmp_path / "index.json").write_text("[]")  # not a record: skipped
    assert load_records([tmp_path])["m/synthetic/test"]["metrics"]["pixel"]["ap"] == 0.7
    for order in (paths, paths[::-1]):  # whichever file comes first
        assert load_records(order)["m/synthetic/test"]["metrics"]["pixel"]["ap"] == 0.7


def test_a_local_checkpoint_run_is_compared_apart(tmp_path):
    """A run on a local --checkpoint never stands in for the card model's record of the same method."""
    from oodbench.leaderboard.compare import load_records

    card, local = fake("m"), fake("m")
    local["provenance"]["utc_time"] = "2026-02-01T00:00:00+00:00"
    local["method"].update(model_info={"local_override": True}, checkpoint_sha256="cd" * 32)
    for r in (card, local):
        put(r, tmp_path)
    assert sorted(load_records([tmp_path])) == ["m (local checkpoint cdcdcdcd)/synthetic/test", "m/synthetic/test"]


def test_edited_records_are_refused(records):
    """A record edited after it was written no longer matches its content address: compare names it."""
    (path,) = records.glob("*entmax_meta*.json")
    path.write_text(path.read_text().replace('"fp_after": 3', '"fp_after": 1'))
    with pytest.raises(RecordError, match=path.name):
        cli("--records", str(records), "--baseline", str(records / "none.json"))
