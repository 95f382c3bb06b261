"""`oodbench leaderboard --format jsonl|parquet`: every record as one flat row that pandas reads back to the
records' own values (checked against the JSON files read independently), with the leaderboard's view of each."""
import argparse
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from record_factory import valid_record

from oodbench.commands.leaderboard import FLAT_FORMATS, register
from oodbench.errors import OodbenchError
from oodbench.leaderboard.build import FLAT_OUTPUTS, build_leaderboard
from oodbench.leaderboard.flat import FIRST, column_order
from oodbench.leaderboard.record import write_record
from oodbench.leaderboard.store import load_records
from oodbench.leaderboard.table import leaderboard_frame

ROOT = Path(__file__).resolve().parents[1]
REAL = ("*_meta-*.json", "synthetic-test-entmax-*.json", "roadanomaly-test-msp-*.json")
EXACT = {"lines": True, "dtype": False, "precise_float": True}  # no type guessing, floats parsed exactly


def _pixel(ap, auroc=0.9, fpr95=0.3, pos=100):
    return {"pixel": {"auroc": auroc, "ap": ap, "fpr95": fpr95, "num_pos": pos, "num_neg": 900}}


@pytest.fixture()
def store(tmp_path):
    """Real records of this repository next to hand-built ones: reruns, a degenerate split, NaN, lists, nulls."""
    folder = tmp_path / "records"
    folder.mkdir()
    for pattern in REAL:
        for path in sorted((ROOT / "leaderboard" / "records").glob(pattern))[:2]:
            shutil.copy(path, folder)
    comps = {"siou": 0.4, "ppv": 0.5, "f1_mean": 0.25, "threshold": 0.1 + 0.2, "tp": [3, 2, 1], "fp": [0, 1, 2],
             "fn": [1, 2, 3], "threshold_choice": {"threshold": 0.3, "source": "oracle", "rule": None,
                                                   "description": "best pixel F1"}}
    records = [
        valid_record("alpha", {**_pixel(0.7), "components": comps}, dataset="laf", utc="2026-01-02T00:00:00+00:00"),
        valid_record("alpha", _pixel(0.6), dataset="laf", seed=3),
        valid_record("beta", {**_pixel(1 / 3), "segments": {"fp_before": 10, "fn_before": 2, "fp_after": 3,
                                                             "fn_after": 4, "meta_auroc": float("nan")}},
                     dataset="laf"),
        valid_record("gamma", _pixel(float("nan"), float("nan"), float("nan"), pos=0), dataset="laf"),
    ]
    for r in records:
        write_record(r, folder)
    return folder


def _read_independently(folder: Path) -> dict[str, dict]:
    """File name -> the record, parsed by json alone (NaN and Infinity as None)."""
    return {p.name: json.loads(p.read_text(), parse_constant=lambda _: None) for p in sorted(folder.glob("*.json"))}


def _leaves(value, key=""):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, f"{key}.{k}" if key else k)
    else:
        yield key, value


def _null(cell) -> bool:
    return cell is None or (not isinstance(cell, (list, str)) and pd.isna(cell))


def _same(cell, value) -> bool:
    if value is None:
        return _null(cell)
    if isinstance(value, (list, dict)) or (isinstance(cell, str) and cell != value):  # lists, mixed kinds: JSON
        return json.loads(cell) == value
    if isinstance(value, bool):
        return bool(cell) is value
    return cell == value


def _check_values(frame: pd.DataFrame, folder: Path) -> None:
    """Every field of every record file, in its row and column; every other cell of the row null."""
    records = _read_independently(folder)
    assert sorted(frame["leaderboard.record_file"]) == sorted(records) and len(frame) == len(records)
    for _, row in frame.iterrows():
        record = records[row["leaderboard.record_file"]]
        assert record["field_digests"] and "field_digests" not in "".join(frame.columns)
        fields = dict(_leaves({k: v for k, v in record.items() if k != "field_digests"}))
        for key, value in fields.items():
            if value == {}:
                continue
            assert _same(row[key], value), (row["leaderboard.record_file"], key, row[key], value)
        for key in set(frame.columns) - set(fields):
            assert key.startswith("leaderboard.") or _null(row[key]), (key, row[key])


def test_jsonl_reads_back_to_the_records_values(store, tmp_path):
    [path] = build_leaderboard(store, tmp_path / "out", ["jsonl"])
    assert path.name == "records.jsonl" and not list(path.parent.glob(".*"))
    _check_values(pd.read_json(path, lines=True, dtype=False, precise_float=True), store)
    lines = path.read_text().splitlines()
    assert len({tuple(json.loads(line)) for line in lines}) == 1  # the same columns, in the same order, every line


def test_default_read_json_gives_the_whole_leaderboard(store, tmp_path):
    [path] = build_leaderboard(store, tmp_path / "out", ["jsonl"])
    plain, exact = pd.read_json(path, lines=True), pd.read_json(path, **EXACT)
    assert list(plain.columns) == list(exact.columns) and len(plain) == len(exact)
    for column in ("metrics.pixel.ap", "metrics.pixel.auroc", "metrics.pixel.num_pos", "cost.wall_seconds"):
        np.testing.assert_allclose(plain[column].astype(float), exact[column].astype(float), rtol=1e-12)
    assert plain["metrics.pixel.ap"].isna().sum() == exact["metrics.pixel.ap"].isna().sum() >= 1
    assert list(plain["method.name"]) == list(exact["method.name"])


def test_parquet_reads_back_to_the_records_values(store, tmp_path):
    pytest.importorskip("pyarrow")
    [path] = build_leaderboard(store, tmp_path / "out", ["parquet"])
    frame = pd.read_parquet(path)
    _check_values(frame, store)
    assert str(frame["metrics.pixel.num_pos"].dtype) == "Int64" and str(frame["leaderboard.rank"].dtype) == "Int64"
    assert str(frame["metrics.pixel.ap"].dtype) == "float64" and frame["leaderboard.shown"].dtype == "boolean"
    jsonl = pd.read_json(build_leaderboard(store, tmp_path / "again", ["jsonl"])[0], **EXACT)
    assert list(frame.columns) == list(jsonl.columns)


def test_leaderboard_columns_say_which_record_is_ranked(store, tmp_path):
    frame = pd.read_json(build_leaderboard(store, tmp_path / "out", ["jsonl"])[0], **EXACT)
    table = leaderboard_frame(load_records(store))
    shown = frame[frame["leaderboard.shown"]].set_index("leaderboard.record_id")
    assert sorted(shown.index) == sorted(table["record_id"]) and len(frame) > len(shown)
    for _, row in table.iterrows():
        rank = shown.loc[row["record_id"], "leaderboard.rank"]
        assert (_null(rank) and pd.isna(row["rank"])) or rank == row["rank"]
        assert shown.loc[row["record_id"], "leaderboard.entry"] == row["method"]
    hidden = frame[~frame["leaderboard.shown"]]
    assert hidden["leaderboard.rank"].map(_null).all()
    assert set(hidden.loc[hidden["method.name"] == "alpha", "seed"]) == {3}  # the worse alpha record is kept too
    gamma = frame[frame["method.name"] == "gamma"].iloc[0]
    assert gamma["leaderboard.unranked"].startswith("not ranked: the split has no OoD pixels")
    assert _null(gamma["metrics.pixel.ap"]) and _null(gamma["leaderboard.rank"]) and gamma["leaderboard.shown"]


def test_columns_identity_first_and_stable(store, tmp_path):
    frame = pd.read_json(build_leaderboard(store, tmp_path / "out", ["jsonl"])[0], **EXACT)
    columns = list(frame.columns)
    assert columns[:len(FIRST)] == list(FIRST)
    assert columns.index("metrics.pixel.ap") < columns.index("metrics.components.siou") < columns.index("method.card")
    assert columns.index("method.card") < columns.index("dataset.fingerprint") < columns.index("provenance.command")
    assert column_order(set(reversed(columns))) == columns
    assert frame.loc[frame["method.name"] == "alpha", "metrics.components.tp"].dropna().map(json.loads).tolist() \
        == [[3, 2, 1]]


def test_mixed_kinds_become_json_text(tmp_path):
    folder = tmp_path / "records"
    for expected in (60, "all"):
        r = valid_record(f"m{expected}", _pixel(0.5))
        r["dataset"]["options"] = {"expected": expected}
        write_record(r, folder)
    frame = pd.read_json(build_leaderboard(folder, tmp_path / "out", ["jsonl"])[0], **EXACT)
    assert sorted(frame["dataset.options.expected"]) == ['"all"', "60"]
    _check_values(frame, folder)


def _parse(argv):
    p = argparse.ArgumentParser()
    register(p.add_subparsers(dest="command"))
    return p.parse_args(argv)


def test_cli_format_option(store, tmp_path, capsys):
    assert FLAT_FORMATS == ",".join(FLAT_OUTPUTS)
    out = tmp_path / "site"
    args = _parse(["leaderboard", "--records", str(store), "--out", str(out), "--format", "jsonl"])
    assert args.func(args) == 0 and [p.name for p in out.iterdir()] == ["records.jsonl"]
    args = _parse(["leaderboard", "--records", str(store), "--out", str(out), "--formats", "md,jsonl,parquet"])
    assert args.func(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "records.jsonl", "records.parquet"]
    assert capsys.readouterr().out.count("wrote ") == 4
    with pytest.raises(OodbenchError, match="choose from md, csv, tex, html, jsonl, parquet"):
        bad = _parse(["leaderboard", "--records", str(store), "--out", str(out), "--format", "xlsx"])
        bad.func(bad)


def test_missing_pyarrow_names_the_fix_and_writes_nothing(store, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(OodbenchError, match=r"--formats parquet needs pyarrow.*pip install pyarrow"):
        build_leaderboard(store, tmp_path / "out", ["jsonl", "parquet"])
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    assert build_leaderboard(store, tmp_path / "out", ["jsonl"])[0].is_file()  # JSON Lines needs nothing extra


def test_nan_stays_null_not_a_number(store, tmp_path):
    def strict(token):
        raise AssertionError(f"{token} in the JSON Lines")

    for line in build_leaderboard(store, tmp_path / "out", ["jsonl"])[0].read_text().splitlines():
        json.loads(line, parse_constant=strict)
    beta = pd.read_json(tmp_path / "out" / "records.jsonl", **EXACT).query("`method.name` == 'beta'").iloc[0]
    assert _null(beta["metrics.segments.meta_auroc"]) and beta["metrics.pixel.ap"] == 1 / 3
    assert not math.isnan(beta["metrics.segments.fp_before"])
