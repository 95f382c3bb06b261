"""The static leaderboard page: self-contained (loads nothing), written atomically, and drawn by a real headless
Chromium (skipped where Debian's /usr/bin/chromium is missing)."""
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from oodbench import files
from oodbench.leaderboard.build import build_leaderboard
from oodbench.leaderboard.record import write_record
from oodbench.leaderboard.store import load_records

from test_leaderboard import rec

CHROMIUM = Path("/usr/bin/chromium")
BLUE, ORANGE, HEADER, BACKGROUND = (31, 119, 180), (255, 127, 14), (44, 62, 80), (251, 251, 252)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Records of three methods on laf/test and one on fs/val, a panel folder, and the built page."""
    root = tmp_path_factory.mktemp("site")
    hostile = rec("alpha", 0.8, 0.97, 0.1, power=6.0, siou=0.5, segments=(9, 1, 2, 2))
    hostile["method"]["note"] = "</script><script>document.title='pwned'</script>"
    hostile["metrics"]["categories"] = {  # as Road Anomaly records hold them
        "animals": {"num_images": 31, "pixel": {"auroc": 0.91, "ap": 0.42, "fpr95": 0.35, "num_pos": 9, "num_neg": 90}},
        "cones": {"num_images": 8, "pixel": {"auroc": 0.7, "ap": None, "fpr95": 0.8, "num_pos": 1, "num_neg": 9}}}
    for r in (hostile, rec("beta", 0.5, 0.9, 0.4, power=2.0), rec("gamma", None, None, None),
              rec("alpha", 0.3, dataset="fs", split="val")):
        write_record(r, root / "records")
    panels = root / "panels"
    panels.mkdir()
    gradient = np.zeros((40, 60, 3), np.uint8)
    gradient[..., 0] = np.linspace(0, 255, 60, dtype=np.uint8)
    Image.fromarray(gradient).save(panels / "alpha__laf__f0.png")
    shutil.copy(panels / "alpha__laf__f0.png", panels / "zeta__laf__f0.png")  # no such method: not embedded
    (panels / "notes.txt").write_text("not a panel")
    build_leaderboard(root / "records", root / "out", ["html"], panels_dir=panels)
    ids = {(r.method, r.data["dataset"]["name"]): r.id for r in load_records(root / "records")}
    return root / "out" / "index.html", ids


def _data(page: str) -> dict:
    return json.loads(re.search(r'<script id="data" type="application/json">(.*?)</script>', page, re.S).group(1))


def test_page_loads_nothing_external(site):
    page = site[0].read_text()
    assert re.search(r"(https?|ftp|file):", page, re.I) is None  # no URL at all, hence no external resource
    assert re.search(r"<(link|iframe|object|embed)\b|<script\s+src|@import|url\(", page, re.I) is None
    attributes = re.findall(r"""\b(?:src|href|action|poster)\s*[=:]\s*["']([^"']*)""", page)
    assert all(value.startswith(("data:", "#")) for value in attributes), attributes
    assert "default-src 'none'; img-src data:" in page  # the browser itself refuses anything else
    assert page.count("</script>") == 2  # a record's text cannot end the data block early


def test_page_data_holds_tables_curves_and_panels(site):
    path, ids = site
    data = _data(path.read_text())
    assert [t["title"] for t in data["tables"]] == ["fs / val (benchmark v1)", "laf / test (benchmark v1)"]
    laf = data["tables"][1]
    assert [r["method"] for r in laf["rows"]] == ["alpha", "beta", "gamma"]
    assert [c["key"] for c in laf["columns"]][:6] == ["rank", "method", "auroc", "ap", "fpr95", "siou"]
    alpha = ids[("alpha", "laf")]
    assert data["records"][alpha]["curves"]["roc"]["fpr"][:2] == [0.0, 0.05]
    assert data["records"][alpha]["conventions"]["fpr95"].startswith("FPR at the first threshold")
    assert set(data["records"][alpha]["provenance"]) >= {"git_commit", "command", "utc_time", "libraries"}
    assert list(data["panels"]) == [alpha] and data["panels"][alpha][0]["name"] == "f0"
    assert data["panels"][alpha][0]["src"].startswith("data:image/png;base64,iVBORw0KGgo")
    assert data["tables"][1]["rows"][2]["ap"] is None  # undefined metrics travel as null


def test_interrupted_render_keeps_the_old_page(site, monkeypatch):
    path, _ = site
    before = path.read_bytes()

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_leaderboard(path.parent.parent / "records", path.parent, ["html", "md"])
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["index.html"]  # no temporaries, no README half-done


def _chromium(page: Path, fragment: str, profile: Path, *action: str) -> str:
    """Headless Chromium, offline (every host name resolves to nothing), on the page with a URL fragment."""
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--host-resolver-rules=MAP * ~NOTFOUND", "--window-size=1400,1000",
           *action, page.as_uri() + fragment]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _screenshot(page: Path, fragment: str, out: Path) -> np.ndarray:
    _chromium(page, fragment, out.parent / f"profile-{out.stem}", f"--screenshot={out}")
    assert out.is_file()
    return np.asarray(Image.open(out).convert("RGB")).astype(int)


def _near(img: np.ndarray, colour, tol: int = 12) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.nonzero((np.abs(img - np.array(colour)) <= tol).all(axis=-1))
    return ys, xs


needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="headless browser test needs Debian's Chromium "
                                                                   "at /usr/bin/chromium (apt-get install -y chromium)")


@needs_chromium
def test_chromium_sorts_selects_and_draws(site, tmp_path):
    """The page's script, run by the browser: the hash sorts by FPR95 ascending and ticks two rows."""
    path, ids = site
    dom = _chromium(path, f"#select=top&sort=fpr95:asc&open={ids[('alpha', 'laf')]}", tmp_path / "profile",
                    "--dump-dom")
    dom = dom.split('<script id="data"')[0]  # what the script drew, without the script's own text
    laf = dom.split("laf / test (benchmark v1)</h2>")[1]
    order = re.findall(r'<tr data-id="([0-9a-f]{16})"', laf)
    assert order == [ids[("alpha", "laf")], ids[("beta", "laf")], ids[("gamma", "laf")]]  # undefined last
    assert laf.count('aria-sort="ascending"') == 1 and "FPR95 %</th>" in laf
    assert dom.count("<polyline") == 4  # top rows of both tables, ROC and PR each
    assert dom.count('<span class="swatch"') == 2 and "<title>oodbench leaderboard</title>" in dom
    assert 'alt="f0"' in dom  # alpha's score-map panel in the gallery
    categories = dom.split("<h4>Per category</h4>")[1]  # the opened record's table, one row per category
    assert "<th>animals</th><td>31</td><td>91.00</td><td>42.00</td><td>35.00</td>" in categories
    assert "<th>cones</th><td>8</td><td>70.00</td><td>n/a</td>" in categories


@needs_chromium
def test_chromium_draws_table_and_curves(site, tmp_path):
    path, ids = site
    img = _screenshot(path, f"#select={ids[('alpha', 'laf')]},beta", tmp_path / "curves.png")
    assert img.shape == (1000, 1400, 3)
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 50  # not blank
    hy, hx = _near(img, HEADER, 3)  # the dark table headings
    assert hy.size > 2000 and hx.max() - hx.min() > 500
    below = hy.max() + 100  # the plots sit under the tables; legend swatches and row markers are narrow
    for colour in (BLUE, ORANGE):
        ys, xs = _near(img, colour)
        curve = ys > below
        assert curve.sum() > 300, f"no curve drawn in {colour}"
        assert np.ptp(xs[curve]) > 600 and np.ptp(ys[curve]) > 150  # spans both plots, ROC and PR
    assert (np.abs(img[:, 1000:] - BACKGROUND).max(axis=-1) <= 2).mean() > 0.8  # right side: background

    opened = _screenshot(path, f"#select=beta&open={ids[('alpha', 'laf')]}", tmp_path / "details.png")
    panel = opened[:, 1000:]
    assert (panel == 255).all(axis=-1).mean() > 0.6  # the white details panel covers the right side
    assert (panel.sum(axis=-1) < 200).sum() > 500  # with text in it
    assert _near(opened, BLUE)[0].size > 300  # beta's curve, now the first colour
