"""Issue 17, records side: every hostile input to `oodbench leaderboard` and `oodbench compare` gets a clear answer.

Each case runs the real CLI (``oodbench.cli.main``) and checks the exit code (2 for bad input, 1 for a failed
check), that the message names the file or value and the fix, that no traceback escapes, and that nothing already
written changed: undefined (NaN/null) metrics, degenerate splits, names that are markup or formulas, the mode of
record files, a model checkpoint that differs from the baseline's, local paths in records, and output locations
that cannot be written.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from oodbench.cli import main
from oodbench.leaderboard.record import make_record, read_record, record_name, seal, write_record
from oodbench.leaderboard.store import load_records
from oodbench.leaderboard.table import leaderboard_frame

from record_factory import valid_record


def pixel(auroc=0.9, ap=0.5, fpr95=0.2, **counts) -> dict:
    return {"pixel": {"auroc": auroc, "ap": ap, "fpr95": fpr95, **counts}}


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes), to show that a failed run changed nothing."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def literal(record: dict, folder: Path, **constants: str) -> Path:
    """Write ``record`` as a file holding literal JSON constants (``auroc="NaN"``: ``"auroc": NaN``) where the
    record has null, under the content address of its strict form, as a writer that dumps float('nan') would."""
    record = seal(record)
    text = json.dumps(record, indent=1, sort_keys=True)
    for key, constant in constants.items():
        text, n = re.subn(rf'"{key}": null', f'"{key}": {constant}', text)
        assert n == 1, key
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / record_name(record)
    path.write_text(text)
    return path


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def _strict(constant: str):
    raise ValueError(f"{constant} in the page's data")


def page_data(path: Path) -> dict:
    """The JSON data block of the HTML page, read as strict JSON."""
    blob = re.search(r'<script id="data" type="application/json">(.*?)</script>', path.read_text(), re.S).group(1)
    return json.loads(blob, parse_constant=_strict)


def table_rows(markdown: str, heading: str) -> list[list[str]]:
    """The cells of the Markdown table under ``## heading`` (header row included, separator left out)."""
    section = markdown.split(f"## {heading}")[1].split("\n## ")[0]
    lines = [line for line in section.splitlines() if line.startswith("|") and not line.startswith("|--")]
    return [[c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]] for line in lines]


# 1. undefined metrics: NaN (or Infinity, or a number too large for a float) in a file, null in a record

@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_nan_metric_renders_na_and_ranks_last(tmp_path, capsys, constant):
    records = tmp_path / "records"
    write_record(valid_record("good", pixel(ap=0.3)), records)
    literal(valid_record("nanny", pixel(auroc=None, ap=None)), records, auroc=constant, ap=constant)
    for extra in ([], ["--skip-bad"]):
        code, out, err = run_cli(capsys, "leaderboard", "--records", records, "--out", tmp_path / "site", *extra)
        assert code == 0 and err == "" and out.count("wrote ") == 4
    rows = table_rows((tmp_path / "site" / "README.md").read_text(), "synthetic / test (benchmark v2)")
    assert [r[:5] for r in rows[1:]] == [["1", "good", "90.00", "30.00", "20.00"],
                                         ["2", "nanny", "n/a", "n/a", "20.00"]]
    back = list(csv.DictReader(io.StringIO((tmp_path / "site" / "leaderboard.csv").read_text())))
    assert [(r["method"], r["rank"], r["auroc"], r["ap"]) for r in back] == [("good", "1", "0.9", "0.3"),
                                                                           ("nanny", "2", "", "")]
    page = page_data(tmp_path / "site" / "index.html")  # strict JSON: no NaN/Infinity for the page's script
    (nanny,) = [r for r in page["tables"][0]["rows"] if r["method"] == "nanny"]
    assert nanny["auroc"] is None and nanny["ap"] is None and nanny["rank"] == 2


def test_nan_and_null_metrics_compare_as_undefined(tmp_path, capsys):
    good = tmp_path / "good"
    write_record(valid_record("m", pixel(auroc=0.9)), good)
    baseline = tmp_path / "ci" / "baseline.json"
    assert run_cli(capsys, "compare", "--write-baseline", "--baseline", baseline, "--records", good)[0] == 0
    before = baseline.read_bytes()
    now = tmp_path / "now"
    literal(valid_record("m", pixel(auroc=None, fpr95=None), utc="2026-02-01T00:00:00+00:00"), now, auroc="NaN")
    code, out, err = run_cli(capsys, "compare", "--baseline", baseline, "--records", now)
    assert code == 1 and "❌ regression" in out and "2 undefined" in out
    auroc = next(line for line in out.splitlines() if "| auroc " in line)
    assert "❌ undefined in the record (null or NaN), defined in the baseline" in auroc
    assert "| fpr95 " in out and "| ap " in out and "--write-baseline" in err
    assert baseline.read_bytes() == before
    # a NaN record can be the baseline: its undefined metrics are left out of it
    assert run_cli(capsys, "compare", "--write-baseline", "--baseline", tmp_path / "b2.json", "--records", now)[0] == 0
    assert json.loads((tmp_path / "b2.json").read_text())["entries"]["m/synthetic/test"]["metrics"] == {"ap": 0.5}


def test_unreadable_number_is_a_clear_error(tmp_path, capsys):
    records = tmp_path / "records"
    write_record(valid_record("good", pixel()), records)
    path = records / record_name(valid_record("huge", pixel()))
    path.write_text(json.dumps(valid_record("huge", pixel())).replace('"num_images": 10', '"num_images": ' + "9" * 5000))
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "README.md").write_text("old")
    code, out, err = run_cli(capsys, "leaderboard", "--records", records, "--out", tmp_path / "site")
    assert code == 2 and path.name in err and "not a JSON document oodbench reads" in err and "--skip-bad" in err
    assert snapshot(tmp_path / "site") == {"README.md": b"old"}
    code, out, err = run_cli(capsys, "leaderboard", "--records", records, "--out", tmp_path / "site", "--skip-bad")
    assert code == 0 and "warning: skipping bad record" in err and path.name in err


# 2. degenerate splits: no in-distribution pixels (AP trivially 100 %), no OoD pixels, every pixel ignored

def test_degenerate_splits_are_shown_unranked_with_a_note(tmp_path, capsys):
    records = tmp_path / "records"
    for r in (valid_record("normal", pixel(auroc=0.8, ap=0.4, fpr95=0.5)),
              # unranked rows: newest first (then the content address), as the rule says
              valid_record("all_ood", pixel(auroc=None, ap=1.0, fpr95=None, num_pos=1000, num_neg=0),
                           utc="2026-01-05T00:00:00+00:00"),
              valid_record("no_ood", pixel(auroc=0.99, ap=0.99, fpr95=0.0, num_pos=0, num_neg=1000),
                           utc="2026-01-04T00:00:00+00:00"),
              valid_record("ignored", pixel(auroc=None, ap=None, fpr95=None, num_pos=0, num_neg=0),
                           utc="2026-01-03T00:00:00+00:00"),
              # a method with a degenerate and a proper record: the proper one is its row, and ranked
              valid_record("mixed", pixel(auroc=None, ap=1.0, fpr95=None, num_neg=0), utc="2026-03-01T00:00:00+00:00"),
              valid_record("mixed", pixel(auroc=0.7, ap=0.2, fpr95=0.6))):
        write_record(r, records)
    code, out, err = run_cli(capsys, "leaderboard", "--records", records, "--out", tmp_path / "site")
    assert code == 0
    text = (tmp_path / "site" / "README.md").read_text()
    rows = table_rows(text, "synthetic / test (benchmark v2)")
    assert [r[:5] for r in rows[1:]] == [
        ["1", "normal", "80.00", "40.00", "50.00"], ["2", "mixed [1]", "70.00", "20.00", "60.00"],
        ["-", "all_ood [2]", "n/a", "n/a", "n/a"], ["-", "no_ood [3]", "n/a", "n/a", "n/a"],
        ["-", "ignored [4]", "n/a", "n/a", "n/a"]]
    assert "5 methods (3 not ranked)." in text
    assert ("[2] all_ood: not ranked: the split has no in-distribution pixels (1000 OoD / 0 in-distribution), so "
            "AUROC and FPR95 are undefined and AP is trivially 100 %") in text
    assert "[3] no_ood: not ranked: the split has no OoD pixels (0 OoD / 1000 in-distribution), so AUROC, AP" in text
    assert "[4] ignored: not ranked: the split has no scored pixels (all ignored" in text
    assert "A record of a degenerate split is never ranked" in text  # the rule, in the RULES text
    back = list(csv.DictReader(io.StringIO((tmp_path / "site" / "leaderboard.csv").read_text())))
    assert [(r["method"], r["rank"], r["ap"], bool(r["unranked"])) for r in back] == [
        ("normal", "1", "0.4", False), ("mixed", "2", "0.2", False), ("all_ood", "", "", True),
        ("no_ood", "", "", True), ("ignored", "", "", True)]
    tex = (tmp_path / "site" / "leaderboard.tex").read_text()
    assert "- & all\\_ood [2] & n/a & n/a & n/a" in tex and "trivially 100 \\%" in tex
    page = page_data(tmp_path / "site" / "index.html")
    assert [(r["method"], r["rank"]) for r in page["tables"][0]["rows"]] == [
        ("normal", 1), ("mixed", 2), ("all_ood", None), ("no_ood", None), ("ignored", None)]


# 3. names that are markup, formulas or line breaks, in every output format

HOSTILE = ["<img src=x onerror=alert(1)>", "=1+1", "two\nlines|cell", "-2+3", "@SUM(A1)",
           "[x](javascript:alert(1)) & `y`"]


def test_names_are_escaped_in_every_format(tmp_path, capsys):
    records = tmp_path / "records"
    for i, name in enumerate(HOSTILE):
        write_record(valid_record(name, pixel(ap=0.9 - i / 10)), records)
    assert run_cli(capsys, "leaderboard", "--records", records, "--out", tmp_path / "site")[0] == 0
    md = (tmp_path / "site" / "README.md").read_text()
    assert not re.search(r"(?<!\\)[<>]", md.split("## ")[1].replace("<br>", "")) and "x](javascript" not in md and "two\nlines" not in md
    rows = table_rows(md, "synthetic / test (benchmark v2)")
    assert len(rows) == 1 + len(HOSTILE) and all(len(r) == len(rows[0]) for r in rows)  # one line per row
    assert [r[1] for r in rows[1:]] == ["\\<img src=x onerror=alert(1)\\>", "=1+1", "two<br>lines\\|cell", "-2+3",
                                        "@SUM(A1)", "\\[x\\](javascript:alert(1)) \\& \\`y\\`"]
    back = list(csv.DictReader(io.StringIO((tmp_path / "site" / "leaderboard.csv").read_text())))
    assert [r["method"] for r in back] == ["<img src=x onerror=alert(1)>", "'=1+1", "two\nlines|cell", "'-2+3",
                                           "'@SUM(A1)", "[x](javascript:alert(1)) & `y`"]
    assert all(not r["record_file"].startswith(("=", "+", "-", "@")) for r in back)
    tex = (tmp_path / "site" / "leaderboard.tex").read_text()
    body = tex.split("\\midrule\n")[1].split("\\bottomrule")[0]
    assert body.count("\n") == len(HOSTILE) and all(line.endswith("\\\\") for line in body.splitlines())
    assert "\\textless{}img src=x onerror=alert(1)\\textgreater{}" in body
    assert "two lines\\textbar{}cell" in body and "{[}x{]}(javascript:alert(1)) \\& `y`" in body
    assert not re.search(r"[<>|]", body)
    page = (tmp_path / "site" / "index.html").read_text()  # the page was already safe: JSON with '<' escaped
    assert "<img src=x" not in page and "\\u003cimg src=x onerror=alert(1)>" in page


def test_compare_comment_escapes_names(tmp_path, capsys):
    records = tmp_path / "records"
    write_record(valid_record("<b onclick=x>bold|x", pixel()), records)
    baseline = tmp_path / "baseline.json"
    assert run_cli(capsys, "compare", "--write-baseline", "--baseline", baseline, "--records", records)[0] == 0
    code, out, err = run_cli(capsys, "compare", "--baseline", baseline, "--records", records)
    assert code == 0 and not re.search(r"(?<!\\)<", out)
    assert sum(line.startswith("| \\<b onclick=x\\>bold\\|x ") for line in out.splitlines()) == 3


# 4. record files follow the umask

def _labels_and_scores(tmp_path: Path) -> tuple[Path, Path]:
    labels, scores = tmp_path / "labels", tmp_path / "scores"
    labels.mkdir()
    scores.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        lab = rng.choice(np.array([0, 1, 255], np.uint8), size=(12, 16), p=[0.6, 0.3, 0.1])
        Image.fromarray(lab).save(labels / f"f{i}.png")
        np.save(scores / f"f{i}.npy", (rng.normal(size=lab.shape) + (lab == 1)).astype(np.float32))
    return labels, scores


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)], ids=["umask022", "umask027"])
def test_records_get_the_umask_mode(tmp_path, capsys, umask, mode):
    labels, scores = _labels_and_scores(tmp_path)
    old = os.umask(umask)
    try:
        code, out, err = run_cli(capsys, "evaluate", "--scores", scores, "--labels", labels, "--name", "m",
                                 "--no-components", "--quiet", "--out", tmp_path / "records")
        direct = write_record(valid_record("direct", pixel()), tmp_path / "records")
    finally:
        os.umask(old)
    assert code == 0
    paths = sorted((tmp_path / "records").glob("*.json"))
    assert len(paths) == 2 and direct in paths
    assert [stat.S_IMODE(p.stat().st_mode) for p in paths] == [mode, mode]
    assert not list((tmp_path / "records").glob(".*"))  # no temporaries left


# 5. a record of another model checkpoint than the baseline's

def test_checkpoint_change_fails_unless_allowed(tmp_path, capsys):
    old, new = tmp_path / "old", tmp_path / "new"
    write_record(valid_record("m", pixel(ap=0.5), method_checkpoint_sha256="ab" * 32), old)
    write_record(valid_record("m", pixel(ap=0.6), method_checkpoint_sha256="cd" * 32), new)
    baseline = tmp_path / "baseline.json"
    assert run_cli(capsys, "compare", "--write-baseline", "--baseline", baseline, "--records", old)[0] == 0
    before = baseline.read_bytes()
    code, out, err = run_cli(capsys, "compare", "--baseline", baseline, "--records", new)
    assert code == 1 and "❌ regression" in out and "1 checkpoint change(s)" in out
    row = next(line for line in out.splitlines() if "| checkpoint " in line)
    assert "❌ checkpoint changed abababababab -> cdcdcdcdcdcd" in row and "--allow-checkpoint-change" in row
    assert "✅ better (other checkpoint)" in next(line for line in out.splitlines() if "| ap " in line)
    assert "another model checkpoint" in err and "--allow-checkpoint-change" in err
    code, out, err = run_cli(capsys, "compare", "--baseline", baseline, "--records", new, "--allow-checkpoint-change")
    assert code == 0 and "✅ no regression" in out and "checkpoint changed (allowed by --allow-checkpoint-change)" in out
    assert baseline.read_bytes() == before
    # the same checkpoint, and a model-free method (no checkpoint on either side), pass as before
    assert run_cli(capsys, "compare", "--baseline", baseline, "--records", old)[0] == 0


# 6. local paths stay out of records unless asked for

def test_records_keep_no_local_data_root(tmp_path, capsys):
    labels, scores = _labels_and_scores(tmp_path)
    code, out, err = run_cli(capsys, "evaluate", "--scores", scores, "--labels", labels, "--name", "m",
                             "--no-components", "--quiet", "--out", tmp_path / "records")
    assert code == 0
    (path,) = (tmp_path / "records").glob("*.json")
    record = read_record(path)
    assert "data_root" not in record["dataset"] and str(labels) not in json.dumps(record["dataset"])
    assert {"name", "split", "fingerprint", "num_images"} <= set(record["dataset"])
    # the writer's own switch: kept only when asked for, by make_record and write_record alike
    ds = {"name": "d", "split": "s", "num_images": 1, "fingerprint": "f" * 64, "data_root": "/home/alice/data"}
    args = dict(method={"name": "x"}, dataset=ds, metrics=pixel(num_pos=1, num_neg=1), cost={})
    assert "data_root" not in make_record(**args)["dataset"]
    kept = make_record(**args, keep_paths=True)
    assert kept["dataset"]["data_root"] == "/home/alice/data" and ds["data_root"] == "/home/alice/data"
    assert "data_root" not in read_record(write_record(kept, tmp_path / "a"))["dataset"]
    assert read_record(write_record(kept, tmp_path / "b", keep_paths=True)) == kept
    # path-valued dataset options (a local folder, a home-relative one) keep only their last component
    opts = {**ds, "options": {"path": "/home/alice/hf/roadanomaly_hf", "laf_root": "~/laf", "mapping": "smiyc",
                              "hub": "org/name", "expected": 60}}
    redacted = make_record(**{**args, "dataset": opts})["dataset"]["options"]
    assert redacted == {"path": "roadanomaly_hf", "laf_root": "laf", "mapping": "smiyc", "hub": "org/name",
                        "expected": 60}
    assert make_record(**{**args, "dataset": opts}, keep_paths=True)["dataset"]["options"] == opts["options"]
    # readers need no data_root, and still read records written with one
    write_record(kept, tmp_path / "records", keep_paths=True)
    code, out, err = run_cli(capsys, "leaderboard", "--records", tmp_path / "records", "--out", tmp_path / "site")
    assert code == 0 and len(leaderboard_frame(load_records(tmp_path / "records"))) == 2
    assert run_cli(capsys, "compare", "--write-baseline", "--baseline", tmp_path / "b.json",
                   "--records", tmp_path / "records")[0] == 0


# 7. bad baselines and output locations: a clear error before any work, nothing written

@pytest.mark.parametrize("content, problem", [
    ("[]", "the top level is a JSON list, not an object"),
    ('{"format": "oodbench-ci-baseline/1", "entries": {"m/synthetic/test": 3}}',
     "entry 'm/synthetic/test' is a JSON int, not an object"),
    ('{"format": "oodbench-ci-baseline/1", "entries": {"m/synthetic/test": {"metrics": {"ap": "high"}}}}',
     "entry 'm/synthetic/test': metric ap is 'high', not a number or null"),
    ("{nope", "not valid JSON at line 1 column 2"),
])
def test_bad_baseline_is_a_clear_error(tmp_path, capsys, content, problem):
    write_record(valid_record("m", pixel()), tmp_path / "records")
    baseline = tmp_path / "baseline.json"
    baseline.write_text(content)
    code, out, err = run_cli(capsys, "compare", "--baseline", baseline, "--records", tmp_path / "records",
                             "--output", tmp_path / "comment.md")
    assert code == 2 and out == ""
    assert err.startswith(f"oodbench: error: {baseline}: not an oodbench baseline: ") and problem in err
    assert f"--write-baseline --replace --baseline {baseline}" in err  # the fix
    assert baseline.read_text() == content and not (tmp_path / "comment.md").exists()
    # and the fix works
    assert run_cli(capsys, "compare", "--write-baseline", "--replace", "--baseline", baseline,
                   "--records", tmp_path / "records")[0] == 0


def test_compare_output_that_is_a_folder(tmp_path, capsys):
    write_record(valid_record("m", pixel()), tmp_path / "records")
    baseline = tmp_path / "baseline.json"
    assert run_cli(capsys, "compare", "--write-baseline", "--baseline", baseline, "--records", tmp_path / "records")[0] == 0
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.md").write_text("mine")
    code, out, err = run_cli(capsys, "compare", "--baseline", baseline, "--records", tmp_path / "records",
                             "--output", tmp_path / "out")
    assert code == 2 and out == ""  # checked before any work: no table printed
    assert f"--output {tmp_path / 'out'}: is a folder; give a file path, e.g. --output {tmp_path / 'out' / 'comment.md'}" in err
    assert snapshot(tmp_path / "out") == {"keep.md": b"mine"}
    # --write-baseline into a folder, or below a file
    for target in (tmp_path / "out", tmp_path / "out" / "keep.md" / "baseline.json"):
        code, out, err = run_cli(capsys, "compare", "--write-baseline", "--baseline", target,
                                 "--records", tmp_path / "records")
        assert code == 2 and f"--baseline {target}" in err and out == ""
    assert snapshot(tmp_path / "out") == {"keep.md": b"mine"}


def test_leaderboard_out_that_is_a_file(tmp_path, capsys):
    write_record(valid_record("m", pixel()), tmp_path / "records")
    (tmp_path / "board").write_text("a file")
    code, out, err = run_cli(capsys, "leaderboard", "--records", tmp_path / "records", "--out", tmp_path / "board")
    assert code == 2 and out == ""
    assert f"--out {tmp_path / 'board'}: is a file, not a folder; give a folder" in err
    assert (tmp_path / "board").read_text() == "a file"
    code, out, err = run_cli(capsys, "leaderboard", "--records", tmp_path / "records",
                             "--out", tmp_path / "board" / "site")
    assert code == 2 and f"{tmp_path / 'board'} is a file" in err


def test_leaderboard_output_file_that_is_a_folder(tmp_path, capsys):
    """One output of several is a folder: refused before anything is written, the other old outputs kept."""
    write_record(valid_record("m", pixel()), tmp_path / "records")
    site = tmp_path / "site"
    (site / "leaderboard.csv").mkdir(parents=True)
    (site / "README.md").write_text("old readme")
    code, out, err = run_cli(capsys, "leaderboard", "--records", tmp_path / "records", "--out", site)
    assert code == 2 and out == "" and f"{site / 'leaderboard.csv'}: is a folder" in err
    assert snapshot(site) == {"README.md": b"old readme"}


def test_leaderboard_records_that_is_a_file(tmp_path, capsys):
    path = write_record(valid_record("m", pixel()), tmp_path / "records")
    code, out, err = run_cli(capsys, "leaderboard", "--records", path, "--out", tmp_path / "site")
    assert code == 2 and f"record folder {path} is a file, not a folder" in err and not (tmp_path / "site").exists()
