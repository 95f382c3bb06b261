"""Records and the leaderboard: schema, content addresses, the store under concurrent writers, the best-per-method
rule, and the Markdown/CSV/LaTeX tables (hand-built records; one real record from a tiny run)."""
import argparse
import json
import multiprocessing
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from jsonschema import Draft202012Validator
from layout_files import write_red_scenes
from record_factory import valid_record

from oodbench.commands.leaderboard import FORMATS, register
from oodbench.errors import OodbenchError
from oodbench.leaderboard.build import OUTPUTS, build_leaderboard
from oodbench.leaderboard.record import read_record, record_name, seal, write_record
from oodbench.leaderboard.render import to_csv, to_latex, to_markdown
from oodbench.leaderboard.store import BadRecordsError, BadRecordsWarning, load_records
from oodbench.leaderboard.table import COLUMNS, leaderboard_frame
from oodbench.leaderboard.validate import RecordError, schema

ROOT = Path(__file__).resolve().parents[1]
def rec(method, ap, auroc=0.9, fpr95=0.3, *, dataset="laf", split="test", utc="2026-01-01T00:00:00+00:00",
        version=1, siou=None, segments=None, power=2.0):
    """A record with hand-picked metrics: curves shaped by ``power``, component/segment metrics when given."""
    x = np.linspace(0, 1, 21)
    m = {"pixel": {"auroc": auroc, "ap": ap, "fpr95": fpr95, "num_pos": 100, "num_neg": 900},
         "curves": {"roc": {"fpr": x.tolist(), "tpr": (x ** (1 / power)).tolist()},
                    "pr": {"recall": x.tolist(), "precision": (1 - 0.5 * x ** power).tolist()}}}
    if siou is not None:
        m["components"] = {"siou": siou, "ppv": 0.5, "f1_mean": 0.25, "threshold": 0.5,
                           "threshold_choice": {"threshold": 0.5, "source": "validation", "rule": "best_f1",
                                                "split": "val", "description": "fixed on split 'val' by rule best_f1"}}
    if segments is not None:
        m["segments"] = dict(zip(("fp_before", "fn_before", "fp_after", "fn_after"), segments))
    return valid_record(method, m, dataset=dataset, split=split, utc=utc, benchmark_version=version)


def test_schema_is_valid_shipped_and_declared():
    Draft202012Validator.check_schema(schema())
    assert schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema()["properties"]["schema_version"]["const"] == rec("m", 0.5)["schema_version"] == 1
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert any(d.startswith("jsonschema") for d in project["project"]["dependencies"])
    shipped = ("record.schema.json", "page.html", "page.css", "page.js")  # in the wheel: tests/test_wheel.py
    assert all((ROOT / "oodbench" / "leaderboard" / name).is_file() for name in shipped)


def test_round_trip(tmp_path):
    r = rec("entmax", 0.7, siou=0.4, segments=(10, 2, 3, 4))
    path = write_record(r, tmp_path)
    assert path.name == record_name(r) and path.name.startswith("laf-test-entmax-")
    assert read_record(path) == r
    assert write_record(r, tmp_path) == path  # identical content, identical name: nothing rewritten
    [loaded] = load_records(tmp_path)
    assert loaded.data == r and loaded.id == path.stem[-16:] and loaded.table_key == ("laf", "test", 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


@pytest.mark.parametrize("edit, field, message", [
    (lambda r: r["dataset"].pop("fingerprint"), "dataset", "'fingerprint' is a required property"),
    (lambda r: r["metrics"]["pixel"].update(ap="high"), "metrics.pixel.ap", "'high' is not of type"),
    (lambda r: r["metrics"]["pixel"].update(num_pos=-1), "metrics.pixel.num_pos", "less than the minimum"),
    (lambda r: r["metrics"]["curves"]["roc"]["tpr"].pop(), "metrics.curves.roc", "fpr has 21 points, tpr 20"),
    (lambda r: r.update(schema_version=2), "schema_version", "not a version this oodbench reads"),
])
def test_write_rejects_schema_violations(tmp_path, edit, field, message):
    r = rec("entmax", 0.7)
    edit(r)
    with pytest.raises(RecordError, match=f"field {field}: .*{message}") as info:
        write_record(r, tmp_path)
    assert str(tmp_path) in str(info.value) and "entmax" in str(info.value)
    assert not list(tmp_path.glob("*"))


def _edit_file(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new))


def test_read_names_file_and_field_of_every_bad_record(tmp_path):
    good = write_record(rec("good", 0.5), tmp_path)
    tampered = write_record(rec("tampered", 0.625), tmp_path)
    _edit_file(tampered, '"ap": 0.625', '"ap": 0.725')  # still schema-valid: only the content address catches it
    wrong_type = write_record(rec("wrongtype", 0.375), tmp_path)
    _edit_file(wrong_type, '"num_images": 10', '"num_images": "ten"')
    (tmp_path / "laf-test-broken-0123456789abcdef.json").write_text("{not json")
    with pytest.raises(RecordError, match="field metrics.pixel.ap: content hash") as info:
        read_record(tampered)
    assert str(tampered) in str(info.value)
    with pytest.raises(BadRecordsError) as info:
        load_records(tmp_path)
    text = str(info.value)
    assert text.startswith(f"3 bad record file(s) in {tmp_path}")
    assert f"{tampered}: field metrics.pixel.ap: content hash" in text and "edited after it was written" in text
    assert f"{wrong_type}: field dataset.num_images: 'ten' is not of type 'integer'" in text
    assert "laf-test-broken-0123456789abcdef.json: field (json): not valid JSON at line 1" in text
    assert str(good) not in text
    with pytest.warns(BadRecordsWarning) as caught:
        kept = load_records(tmp_path, skip_bad=True)
    assert sorted(Path(str(w.message).split(": ")[1]).name.split("-")[2] for w in caught) == ["broken", "tampered",
                                                                                                "wrongtype"]
    assert [r.path for r in kept] == [good]


def test_tampered_record_without_field_digests_is_still_caught(tmp_path):
    r = rec("old", 0.5)
    del r["field_digests"]  # records written before field digests existed
    path = tmp_path / record_name(r)
    path.write_text(json.dumps(r))
    assert read_record(path) == r
    _edit_file(path, '"ap": 0.5', '"ap": 0.75')
    with pytest.raises(RecordError, match=r"field \(unknown\): content hash .* no field_digests"):
        read_record(path)


def test_edited_file_is_never_overwritten(tmp_path):
    r = rec("entmax", 0.625)
    path = write_record(r, tmp_path)
    _edit_file(path, '"ap": 0.625', '"ap": 0.875')
    edited = path.read_bytes()
    with pytest.raises(RecordError, match="field metrics.pixel.ap.*\n.*not overwritten"):
        write_record(r, tmp_path)
    assert path.read_bytes() == edited and not list(tmp_path.glob(".record-*"))


def _writer(folder: str, records: list, barrier) -> None:
    barrier.wait()  # both processes start writing at the same moment
    for r in records:
        write_record(r, folder)


def test_concurrent_writers_lose_nothing(tmp_path):
    shared = [rec(f"shared{i}", 0.5, utc=f"2026-01-01T00:00:{i:02d}+00:00") for i in range(25)]
    own = [[rec(f"p{p}m{i}", 0.25 + p / 10) for i in range(25)] for p in range(2)]
    ctx = multiprocessing.get_context("spawn")  # no fork of a parent that may hold torch threads
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), shared + own[p] if p else own[p] + shared[::-1],
                                               barrier)) for p in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    expected = {record_name(r): r for r in shared + own[0] + own[1]}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(expected)  # 75 files, no temporaries left
    assert {r.path.name: r.data for r in load_records(tmp_path)} == expected


def _table_records():
    return [
        rec("alpha", 0.5, utc="2026-01-01T00:00:00+00:00"),
        rec("alpha", 0.7, 0.92, 0.2, utc="2026-01-02T00:00:00+00:00", siou=0.4, segments=(10, 2, 3, 4)),
        rec("alpha", 0.7, 0.92, 0.2, utc="2026-01-03T00:00:00+00:00", siou=0.4, segments=(10, 2, 3, 4)),  # rerun
        rec("beta", 0.6, 0.90, 0.25, utc="2026-01-05T00:00:00+00:00"),
        rec("beta", 0.6, 0.95, 0.25, utc="2026-01-04T00:00:00+00:00"),  # same AP, higher AUROC wins though older
        rec("gamma", 0.6, 0.95, 0.25, siou=0.1, utc="2026-01-01T00:00:00+00:00"),
        rec("gamma", 0.6, 0.95, 0.25, siou=0.2, utc="2026-01-02T00:00:00+00:00"),  # full tie: newest wins, and
        # beta's best ties gamma's on AP, AUROC and FPR95 but is newer, so beta ranks above gamma
        rec("delta", None, None, None),  # one class only: undefined metrics rank last
        rec("alpha", 0.1, dataset="fs", split="val"),
        rec("alpha", 0.9, version=2),  # another metric definition: its own table
    ]


@pytest.fixture
def store(tmp_path):
    folder = tmp_path / "records"
    for r in _table_records():
        write_record(r, folder)
    return folder


def test_best_record_per_method_ties_and_reruns(store):
    frame = leaderboard_frame(load_records(store))
    assert list(frame.columns) == COLUMNS
    keys = frame[["dataset", "split", "benchmark_version"]].drop_duplicates().apply(tuple, axis=1).tolist()
    assert keys == [("fs", "val", 1), ("laf", "test", 1), ("laf", "test", 2)]
    laf = frame[(frame.dataset == "laf") & (frame.benchmark_version == 1)].set_index("method")
    assert laf.index.tolist() == ["alpha", "beta", "gamma", "delta"] and laf["rank"].tolist() == [1, 2, 3, 4]
    assert laf.loc["alpha", ["ap", "records", "reruns", "ap_tie"]].tolist() == [0.7, 3, 1, False]
    assert laf.loc["alpha", "utc_time"] == "2026-01-03T00:00:00+00:00"  # the newest of the two reruns
    assert laf.loc["beta", "auroc"] == 0.95 and laf.loc["beta", "utc_time"] == "2026-01-04T00:00:00+00:00"
    assert laf.loc["gamma", "siou"] == 0.2 and laf.loc["gamma", "ap_tie"]
    assert np.isnan(laf.loc["delta", "ap"]) and pd.isna(laf.loc["delta", "threshold_source"])
    assert laf.loc["alpha", "threshold_source"] == "validation split val (best_f1)"
    assert frame[frame.benchmark_version == 2]["ap"].tolist() == [0.9]


def test_a_local_checkpoint_gets_its_own_row(tmp_path):
    """A run on a local --checkpoint never outranks (or replaces) the card model's row of the same method."""
    published, local = rec("entmax", 0.4), rec("entmax", 0.9)
    for r, override, sha in ((published, False, "a" * 64), (local, True, "b" * 64)):
        r["method"].update(checkpoint_sha256=sha, model_info={"local_override": override, "sha256": sha})
    for r in (published, local):
        write_record(seal(r), tmp_path)
    frame = leaderboard_frame(load_records(tmp_path))
    assert frame[["method", "ap", "rank"]].values.tolist() == [["entmax (local checkpoint bbbbbbbb)", 0.9, 1],
                                                               ["entmax", 0.4, 2]]


def test_markdown_table(store):
    text = to_markdown(leaderboard_frame(load_records(store)), "10 records in x")
    assert "highest pixel AP" in text and "newest" in text
    section = text.split("## laf / test (benchmark v1)")[1].split("## ")[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    assert cells[0] == ["#", "method", "AUROC %", "AP %", "FPR95 %", "sIoU %", "PPV %", "mean F1 %",
                        "component threshold", "FP before", "FP after", "FN before", "FN after", "records"]
    assert cells[2] == ["1", "alpha [1]", "92.00", "70.00", "20.00", "40.00", "50.00", "25.00",
                        "validation split val (best_f1)", "10", "3", "2", "4", "3"]
    assert cells[3][:5] == ["2", "beta [2]", "95.00", "60.00", "25.00"]
    assert cells[4][:3] == ["3", "gamma [3]", "95.00"]
    assert cells[5] == ["4", "delta", *["n/a"] * 6, "n/a", *["n/a"] * 4, "1"]
    assert ("[1] alpha: best of 3 records by the rule above; 1 rerun(s) with identical metrics, the newest shown"
            in section)
    assert "[2] beta: best of 2 records by the rule above (record laf-test-beta-" in section
    assert "[3] gamma: best of 2 records" in section and "same AP, AUROC and FPR95" in section
    v2 = text.split("## laf / test (benchmark v2)")[1]
    assert "AUROC %" in v2
    assert "sIoU" not in v2  # no component metrics in that table: no empty columns


def test_csv_reads_back_equal(store, tmp_path):
    frame = leaderboard_frame(load_records(store))
    path = tmp_path / "leaderboard.csv"
    path.write_text(to_csv(frame))
    back = pd.read_csv(path)
    pd.testing.assert_frame_equal(back, frame)
    row = back[(back.method == "alpha") & (back.dataset == "laf") & (back.benchmark_version == 1)].iloc[0]
    assert (row.ap, row.auroc, row.fpr95, row.siou, row.fp_after, row.records) == (0.7, 0.92, 0.2, 0.4, 3, 3)


def test_latex_tables(store):
    text = to_latex(leaderboard_frame(load_records(store)))
    assert text.count("\\begin{tabular}") == 3 and text.count("\\end{table}") == 3
    assert "\\caption{laf / test (benchmark v1): 10 images; metrics in \\%.}" in text
    assert " 1 & alpha [1] & 92.00 & 70.00 & 20.00 & 40.00 & 50.00 & 25.00 & validation split val (best\\_f1) &" \
        in " ".join(text.split()).replace("  ", " ")
    assert "AP \\%" in text and "\\toprule" in text


def _parse(argv):
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command")
    register(sub)
    return p.parse_args(argv)


def test_cli_builds_every_format(store, tmp_path, capsys):
    out = tmp_path / "site"
    (out / "panels").mkdir(parents=True)  # `oodbench show`'s default folder is picked up
    (out / "panels" / "alpha__laf__f7.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    args = _parse(["leaderboard", "--records", str(store), "--out", str(out)])
    assert FORMATS == ",".join(OUTPUTS) and args.formats == FORMATS
    assert args.func(args) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([*OUTPUTS.values(), "panels"])
    assert '"name":"f7","src":"data:image/png;base64,iVBORw0KGgo="' in (out / "index.html").read_text()
    assert capsys.readouterr().out.count("wrote ") == 4
    only = _parse(["leaderboard", "--records", str(store), "--out", str(tmp_path / "md"), "--formats", "md"])
    assert only.func(only) == 0 and [p.name for p in (tmp_path / "md").iterdir()] == ["README.md"]
    with pytest.raises(OodbenchError, match="--formats 'md,pdf': choose from md, csv, tex, html"):
        bad = _parse(["leaderboard", "--records", str(store), "--out", str(out), "--formats", "md,pdf"])
        bad.func(bad)


def test_cli_bad_records_fail_or_are_skipped(store, tmp_path, capsys):
    victim = next(store.glob("laf-test-beta-*.json"))
    _edit_file(victim, '"fpr95": 0.25', '"fpr95": 0.35')
    args = _parse(["leaderboard", "--records", str(store), "--out", str(tmp_path / "site")])
    with pytest.raises(BadRecordsError, match=f"{victim.name}: field metrics.pixel.fpr95"):
        args.func(args)
    assert not (tmp_path / "site").exists()
    args = _parse(["leaderboard", "--records", str(store), "--out", str(tmp_path / "site"), "--skip-bad"])
    assert args.func(args) == 0
    assert "warning: skipping bad record" in capsys.readouterr().err
    with pytest.warns(BadRecordsWarning, match=victim.name):
        assert build_leaderboard(store, tmp_path / "again", ["csv"], skip_bad=True)
    with pytest.raises(OodbenchError, match="record folder .* does not exist"):
        build_leaderboard(tmp_path / "nope", tmp_path / "site")


def test_real_run_record_validates_and_renders(tmp_path):
    from oodbench.evaluation.runner import run  # imported here: spawned writers need not load torch

    from red_method import Red

    root = write_red_scenes(tmp_path / "mine", 48, np.s_[20:28, 30:38], ignore_rows=2)
    record, path = run(Red(), dataset="folder", data_root=root, out_dir=tmp_path / "records", progress=False,
                       threshold="oracle", track="obstacle", bootstrap=20)
    assert read_record(path) == record
    frame = leaderboard_frame(load_records(tmp_path / "records"))
    row = frame.iloc[0]
    assert row.method == "red" and row.threshold_source == "oracle (best_f1)" and 0 <= row.siou <= 1
    assert row.ap == record["metrics"]["pixel"]["ap"]
