"""`oodbench paper`: every TOML of leaderboard/paper loads with a source and only the verified numbers; a file
without a source is rejected; ours next to theirs in the source's convention; "no record" otherwise."""
from __future__ import annotations

import argparse
import json

import pytest

from oodbench.commands.paper import register
from oodbench.errors import OodbenchError
from oodbench.leaderboard.paper import PAPER_DIR, load_file, load_paper, paper_rows
from oodbench.leaderboard.record import write_record

from record_factory import valid_record

# (method, dataset, split, metric) -> the published number (shared/reference/method.md)
VERIFIED = {
    ("entmax", "lostandfound", "test", "ap"): 76.45, ("entmax", "lostandfound", "test", "fpr95"): 9.58,
    ("entmax", "smiyc_roadanomaly21", "test", "ap"): 85.47, ("entmax", "smiyc_roadanomaly21", "test", "fpr95"): 15.00,
    ("entmax", "smiyc_roadanomaly21", "test", "siou"): 49.21, ("entmax", "smiyc_roadanomaly21", "test", "ppv"): 39.51,
    ("entmax", "smiyc_roadanomaly21", "test", "f1_mean"): 28.72,
    ("entmax", "smiyc_roadobstacle21", "test", "ap"): 85.07, ("entmax", "smiyc_roadobstacle21", "test", "fpr95"): 0.75,
    ("msp", "smiyc_roadanomaly21", "test", "ap"): 27.97, ("msp", "smiyc_roadanomaly21", "test", "fpr95"): 72.05,
    ("msp", "smiyc_roadanomaly21", "test", "siou"): 15.48, ("msp", "smiyc_roadanomaly21", "test", "ppv"): 15.29,
    ("msp", "smiyc_roadanomaly21", "test", "f1_mean"): 5.37,
    ("msp", "smiyc_roadobstacle21", "test", "ap"): 15.72, ("msp", "smiyc_roadobstacle21", "test", "fpr95"): 16.60,
    ("entmax", "cityscapes", "test", "miou"): 81.51,
}


def cli(*argv: str) -> int:
    p = argparse.ArgumentParser()
    register(p.add_subparsers(dest="command"))
    args = p.parse_args(["paper", *argv])
    return args.func(args)


def record(method="entmax", dataset="lostandfound", conventions=None, pixel=None) -> dict:
    metrics = {"pixel": pixel or {"auroc": 0.95, "ap": 0.7, "fpr95": 0.12}}
    if conventions is not None:
        metrics["conventions"] = conventions
    return {"method": {"name": method}, "dataset": {"name": dataset, "split": "test"}, "metrics": metrics,
            "provenance": {"utc_time": "2026-01-01T00:00:00+00:00"}}


def table_rows(text: str, metric: str) -> list[list[str]]:
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("| ")]
    return [r for r in rows if r[2] == metric]


def test_every_toml_loads_with_only_verified_numbers():
    entries = load_paper()
    assert sorted(p.name for p in PAPER_DIR.glob("*.toml")) == ["chan_iccv2021.toml", "meta_ood_issue3.toml",
                                                                 "smiyc_leaderboard.toml"]
    found = {(e.method, e.dataset, e.split, m): v for e in entries for m, v in e.metrics.items()}
    assert found == VERIFIED  # nothing else, nothing zero-filled
    for e in entries:
        assert e.source["url"].startswith("https://") and e.source["kind"] in ("paper", "leaderboard", "github-issue")
    laf = next(e for e in entries if e.dataset == "lostandfound")
    assert laf.convention == "hist100" and "meta-ood/issues/3" in laf.source["url"]
    assert {e.convention for e in entries if e.dataset.startswith("smiyc")} == {"smiyc768"}


def test_toml_without_source_is_rejected(tmp_path):
    body = ('[[entry]]\npaper_method = "X"\nmethod = "entmax"\ndataset = "lostandfound"\nsplit = "test"\n'
            'convention = "canonical"\n[entry.metrics]\nap = 50.0\n')
    (tmp_path / "nosource.toml").write_text(body)
    with pytest.raises(OodbenchError, match=r"nosource.toml: needs a \[source\]"):
        load_paper(tmp_path)
    (tmp_path / "nosource.toml").write_text('[source]\nkind = "paper"\n' + body)  # neither url nor citation
    with pytest.raises(OodbenchError, match="needs a \\[source\\]"):
        load_file(tmp_path / "nosource.toml")
    ok = '[source]\nkind = "paper"\ncitation = "Someone 2024, Table 2"\n'
    (tmp_path / "nosource.toml").write_text(ok + body)
    assert load_file(tmp_path / "nosource.toml")[0].metrics == {"ap": 50.0}
    for bad, match in ((body.replace("ap = 50.0", "ap = \"n/a\""), "not a finite number"),
                       (body.replace("ap = 50.0", "apx = 1.0"), "unknown metric 'apx'"),
                       (body.replace('convention = "canonical"', 'convention = "nope"'), "unknown convention 'nope'"),
                       (body.replace('convention = "canonical"\n', ""), "depends on the evaluation convention")):
        (tmp_path / "bad.toml").write_text(ok + bad)
        with pytest.raises(OodbenchError, match=match):
            load_file(tmp_path / "bad.toml")


def test_deltas_in_the_matching_convention(tmp_path, capsys):
    hist = {"convention": "hist100", "auroc": 0.97, "ap": 0.75, "fpr95": 0.1}
    laf = record(conventions={"hist100": hist})
    write_record(valid_record("entmax", laf["metrics"], dataset="lostandfound"), tmp_path)
    assert cli("--records", str(tmp_path)) == 0
    text = capsys.readouterr().out
    (ap,) = table_rows(text, "ap")[:1]
    assert ap[:8] == ["Entropy maximization (released checkpoint) (entmax)", "lostandfound/test", "ap", "hist100",
                      "76.45", "75.00", "-1.45", ""]
    fpr = next(r for r in table_rows(text, "fpr95") if r[1] == "lostandfound/test")
    assert fpr[4:7] == ["9.58", "10.00", "+0.42"]
    assert "https://github.com/robin-chan/meta-ood/issues/3" in text
    no_record = next(r for r in table_rows(text, "ap") if r[1] == "smiyc_roadanomaly21/test")
    assert no_record[5:8] == ["", "", "no record"]


def test_convention_not_computed(tmp_path):
    entries = [e for e in load_paper() if e.dataset == "lostandfound"]
    rows = paper_rows(entries, {"entmax/lostandfound/test": record(conventions={"smiyc768": {"ap": 0.5}})})
    assert [r["note"] for r in rows] == ["convention not computed: rerun with --convention hist100"] * 2
    assert all(r["ours"] is None and r["delta"] is None for r in rows)
    rows = paper_rows(entries, {"entmax/lostandfound/test": record()})  # a record without conventions at all
    assert rows[0]["note"] == "convention not computed: rerun with --convention hist100"


def test_canonical_and_component_metrics(tmp_path):
    (tmp_path / "p.toml").write_text(
        '[source]\nkind = "paper"\ncitation = "test"\n[[entry]]\npaper_method = "P"\nmethod = "m"\n'
        'dataset = "d"\nsplit = "test"\nconvention = "canonical"\nunit = "fraction"\n'
        '[entry.metrics]\nap = 0.6\nsiou = 0.3\nfp_after = 5\n')
    rec = record("m", "d", pixel={"ap": 0.65})
    rec["metrics"]["components"] = {"siou": 0.25, "threshold_choice": {"source": "oracle"}}
    rec["metrics"]["segments"] = {"fp_after": 7}
    rows = {r["metric"]: r for r in paper_rows(load_file(tmp_path / "p.toml"), {"m/d/test": rec})}
    assert rows["ap"]["ours"] == 0.65 and rows["ap"]["delta"] == pytest.approx(0.05)
    assert rows["siou"]["delta"] == pytest.approx(-0.05)
    assert rows["siou"]["note"] == "components at our oracle threshold"
    assert rows["fp_after"]["ours"] == 7 and rows["fp_after"]["delta"] == 2


def test_json_output_and_missing_records_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no leaderboard/records here: every row is "no record"
    assert cli("--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == len(VERIFIED) and {r["note"] for r in rows} == {"no record"}
    with pytest.raises(OodbenchError, match="no such record file or folder"):
        cli("--records", str(tmp_path / "none"))
