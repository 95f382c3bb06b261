"""`oodbench download`: Road Anomaly's archive (a zip of the real release built in tmp_path) and ESPNetv2's published
checkpoint, served by a local HTTP server that can drop connections or ignore ranges; verification, resume, safe
extraction and the promise that an existing dataset folder is never touched by a failed run."""
import hashlib
import io
import os
import shutil
import stat
import zipfile

import numpy as np
import pytest
from realdata import ROAD_ANOMALY, espnetv2_weights, needs
from test_download import range_server  # noqa: F401  (the local Range-capable HTTP server fixture)

from oodbench.cli import main
from oodbench.data import download as data_download
from oodbench.data.roadanomaly import RoadAnomalyDataset
from oodbench.errors import DatasetError
from oodbench.models import network_cards
from oodbench.models.network_cards import NETWORKS_DIR

ESPNET_SHA256 = "a72d59699801c7ce8e8b89a53af9097eaaa60dc12180ecde86fd700ba1222fe8"
ESPNET_FILE = "espnetv2_s_2.0_city_1024x512.pth"
CARD_MD5 = "87a0908e5c72827824693913cf2e4fb0"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def zip_bytes(members: dict) -> bytes:
    """A zip from {name: bytes or a folder to add under that name}."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, content in members.items():
            if isinstance(content, bytes):
                zf.writestr(name, content)
                continue
            for path in sorted(content.rglob("*")):
                zf.write(path, f"{name}/{path.relative_to(content).as_posix()}")
    return buf.getvalue()


@pytest.fixture(scope="module")
def road_zip():
    """The real Road Anomaly jpg release zipped as the lab ships it (top folder RoadAnomaly_jpg/), in memory."""
    return zip_bytes({"RoadAnomaly_jpg": ROAD_ANOMALY})


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("OODBENCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def tree(root):
    """Every path under ``root`` with its size and mtime: what a failed run must leave as it was."""
    return sorted((str(p.relative_to(root)), p.lstat().st_size, p.lstat().st_mtime_ns) for p in root.rglob("*"))


def download(*args):
    return main(["download", *args, "--quiet"])


def listing(folder):
    return sorted(os.listdir(folder)) if folder.exists() else []


@needs(ROAD_ANOMALY)
def test_download_extract_and_reuse(range_server, road_zip, tmp_path, home, capsys):
    url = range_server.serve("RoadAnomaly_jpg.zip", road_zip)
    out = tmp_path / "data"
    assert download("roadanomaly", "--url", url, "--sha256", sha256(road_zip), "--out", str(out)) == 0
    printed = capsys.readouterr().out
    assert f"60 test frames in {out / 'RoadAnomaly_jpg'}" in printed and f"--data-root {out}" in printed
    ds, shared = RoadAnomalyDataset(out), RoadAnomalyDataset(ROAD_ANOMALY)
    assert len(ds) == 60 and ds[0].id == shared[0].id and np.array_equal(ds[0].label, shared[0].label)
    assert listing(out) == ["RoadAnomaly_jpg"]  # no temporary folder left beside it
    assert listing(home / "downloads") == ["RoadAnomaly_jpg.zip"]
    before = tree(out)
    assert download("roadanomaly", "--url", url, "--sha256", sha256(road_zip), "--out", str(out)) == 0
    assert "a complete copy is already in" in capsys.readouterr().out
    assert tree(out) == before and len(range_server.requests) == 1
    shutil.rmtree(out)  # the verified archive is kept: extracted again without a download
    assert download("roadanomaly", "--url", url, "--sha256", sha256(road_zip), "--out", str(out)) == 0
    assert "reusing the verified archive" in capsys.readouterr().err
    assert len(RoadAnomalyDataset(out)) == 60 and len(range_server.requests) == 1


@needs(ROAD_ANOMALY)
@pytest.mark.parametrize("ignore_range", [False, True])
def test_interrupted_download_resumes(range_server, road_zip, tmp_path, home, capsys, ignore_range):
    url = range_server.serve("RoadAnomaly_jpg.zip", road_zip)
    out, cache = tmp_path / "data", tmp_path / "cache"
    args = ("roadanomaly", "--url", url, "--sha256", sha256(road_zip), "--out", str(out), "--cache", str(cache))
    cut = len(road_zip) // 3
    range_server.drop_after["/RoadAnomaly_jpg.zip"] = cut
    assert download(*args) == 2
    err = capsys.readouterr().err
    assert f"{url}: download truncated ({cut} of {len(road_zip)} bytes)" in err and "Traceback" not in err
    assert "RoadAnomaly_jpg.zip.part" in err and "run the same command again to resume" in err
    assert listing(cache) == ["RoadAnomaly_jpg.zip.part"] and not out.exists()
    range_server.ignore_range = ignore_range
    assert download(*args) == 0
    assert range_server.ranges("RoadAnomaly_jpg.zip") == [None, f"bytes={cut}-"]
    assert sha256((cache / "RoadAnomaly_jpg.zip").read_bytes()) == sha256(road_zip)
    assert listing(cache) == ["RoadAnomaly_jpg.zip"] and len(RoadAnomalyDataset(out)) == 60


@needs(ROAD_ANOMALY)
def test_wrong_checksum_leaves_nothing_and_existing_folders_untouched(range_server, road_zip, tmp_path, home, capsys):
    url = range_server.serve("RoadAnomaly_jpg.zip", road_zip)
    out = tmp_path / "data"
    wrong = sha256(b"not the archive")
    assert download("roadanomaly", "--url", url, "--sha256", wrong, "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert f"sha256 mismatch: expected {wrong}, got {sha256(road_zip)}" in err and "Traceback" not in err
    assert not out.exists() and listing(home / "downloads") == []
    # A mirror still gets the card's published md5 (that of the lab's zip, not of this one).
    assert download("roadanomaly", "--url", url, "--out", str(out)) == 2
    assert f"md5 mismatch: expected {CARD_MD5}" in capsys.readouterr().err
    assert not out.exists() and listing(home / "downloads") == []
    # An incomplete copy in place is an error that says what to do, and is left exactly as it was.
    partial = out / "RoadAnomaly_jpg"
    shutil.copytree(ROAD_ANOMALY, partial)
    shutil.rmtree(next((partial / "frames").glob("*.labels")))
    (out / "notes.txt").write_text("mine")
    before = tree(out)
    assert download("roadanomaly", "--url", url, "--sha256", sha256(road_zip), "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert f"{partial} exists but is not a complete copy" in err and "remove or rename it" in err
    assert tree(out) == before and range_server.requests == [("/RoadAnomaly_jpg.zip", None)] * 2


@needs(ROAD_ANOMALY)
def test_md5_override_and_default_location(range_server, road_zip, home, capsys):
    url = range_server.serve("RoadAnomaly_jpg.zip", road_zip)
    assert download("roadanomaly", "--url", url, "--md5", hashlib.md5(road_zip).hexdigest()) == 0
    assert "no --data-root needed" in capsys.readouterr().out
    assert len(RoadAnomalyDataset()) == 60  # $OODBENCH_HOME/data/roadanomaly, the loader's default


def test_zip_slip_member_is_refused(range_server, tmp_path, capsys):
    evil = zip_bytes({"RoadAnomaly_jpg/frame_list.json": b"[]", "RoadAnomaly_jpg/../../evil": b"owned"})
    url = range_server.serve("evil.zip", evil)
    out = tmp_path / "data"
    assert download("roadanomaly", "--url", url, "--sha256", sha256(evil), "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert "member 'RoadAnomaly_jpg/../../evil' is a '..' path" in err and "refusing to extract" in err
    assert not (tmp_path / "evil").exists() and listing(out) == []


@pytest.mark.parametrize("name, problem", [
    ("/etc/evil", "an absolute path"), ("C:/evil", "an absolute path"), ("a/../../evil", "a '..' path"),
    ("RoadAnomaly_jpg/link", "a symbolic link")])
def test_unsafe_members(tmp_path, name, problem):
    info = zipfile.ZipInfo(name)
    if problem == "a symbolic link":
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("RoadAnomaly_jpg/ok.txt", b"fine")
        zf.writestr(info, b"/etc/passwd")
    with zipfile.ZipFile(buf) as zf, pytest.raises(DatasetError, match=f"member '{name}' is {problem}"):
        data_download.safe_members(zf, tmp_path / "a.zip")


def test_html_page_is_refused(range_server, tmp_path, home, capsys):
    url = range_server.serve("RoadAnomaly_jpg.zip", b"<html>please log in</html>", "text/html; charset=utf-8")
    assert download("roadanomaly", "--url", url, "--out", str(tmp_path / "d")) == 2
    err = capsys.readouterr().err
    assert f"{url}: the server sent an HTML page, not the archive" in err and "Traceback" not in err
    assert listing(home / "downloads") == [] and not (tmp_path / "d").exists()


def test_archive_without_the_expected_folder(range_server, tmp_path, capsys):
    other = zip_bytes({"something_else/readme.md": b"hi"})
    url = range_server.serve("other.zip", other)
    assert download("roadanomaly", "--url", url, "--sha256", sha256(other), "--out", str(tmp_path / "d")) == 2
    assert "holds something_else, not the folder RoadAnomaly_jpg/" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


@pytest.fixture
def network_card_dir(tmp_path, monkeypatch, range_server):
    """A copy of the shipped ESPNetv2 card whose URL points at the local server."""
    folder = tmp_path / "networks"
    folder.mkdir()
    text = (NETWORKS_DIR / "espnetv2_cityscapes.toml").read_text()
    published = next(line for line in text.splitlines() if line.startswith("checkpoint_url"))
    text = text.replace(published, f'checkpoint_url = "{range_server.base}/weights/{ESPNET_FILE}"')
    (folder / "espnetv2_cityscapes.toml").write_text(text)
    monkeypatch.setattr(network_cards, "NETWORKS_DIR", folder)
    return folder


@needs(espnetv2_weights(2.0))
def test_network_checkpoint_lands_where_run_finds_it(range_server, network_card_dir, home, capsys):
    range_server.serve(f"weights/{ESPNET_FILE}", espnetv2_weights(2.0).read_bytes())
    assert download("--network", "espnetv2_cityscapes") == 0
    path = home / "checkpoints" / ESPNET_FILE
    assert sha256(path.read_bytes()) == ESPNET_SHA256
    assert f"{path}\nsha256 {ESPNET_SHA256} (the published sha256)" in capsys.readouterr().out
    assert download("--network", "espnetv2_cityscapes") == 0  # cached: no second request
    assert len(range_server.requests) == 1


@needs(espnetv2_weights(2.0))
def test_tampered_checkpoint_is_refused(range_server, network_card_dir, home, capsys):
    tampered = bytearray(espnetv2_weights(2.0).read_bytes())
    tampered[len(tampered) // 2] ^= 0xFF
    range_server.serve(f"weights/{ESPNET_FILE}", bytes(tampered))
    assert download("--network", "espnetv2_cityscapes") == 2
    err = capsys.readouterr().err
    assert f"expected {ESPNET_SHA256}, got {sha256(bytes(tampered))}" in err and "Traceback" not in err
    assert listing(home / "checkpoints") == []


@pytest.mark.parametrize("args, message", [
    (("nope",), "unknown dataset 'nope': no card datasets/nope.toml; datasets oodbench can download: roadanomaly"),
    (("lostandfound",), "lostandfound: no public archive that oodbench can download"),
    (("fishyscapes_laf",), "Get it from https://fishyscapes.com, then pass its folder as --data-root"),
    (("smiyc_roadanomaly21",), "Get it from https://segmentmeifyoucan.com/datasets"),
    (("--network", "nope"), "unknown network 'nope'"),
    (("--network", "espnetv2_cityscapes", "--out", "x"), "--network takes no --out"),
    ((), "give a DATASET to download"),
])
def test_helpful_errors(args, message, capsys):
    assert download(*args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
