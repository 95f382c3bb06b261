"""The built wheel, installed into a fresh venv outside the source tree (no editable install), is a working
oodbench: cards, published numbers, the console script, ``python -m oodbench`` and a run on the embedded benchmark."""
from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import oodbench
from oodbench.data.cards import list_cards
from oodbench.leaderboard.paper import load_paper
from oodbench.methods.cards import list_method_cards
from oodbench.models.network_cards import list_network_cards

REPO = Path(__file__).resolve().parents[1]
SKIP_COPY = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".benchmarks")


def source_copy(dest: Path) -> Path:
    """The project's files (tracked and untracked-but-not-ignored where git knows them), so the build writes
    nothing into the repository."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True)
    if listed.returncode != 0:
        return Path(shutil.copytree(REPO, dest, ignore=SKIP_COPY))
    for rel in listed.stdout.splitlines():
        if (REPO / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dest / rel)
    return dest


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 300) -> str:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{cmd} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
    return out.stdout


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory):
    """(venv python, venv bin folder, env, work folder): the venv sees the current interpreter's site-packages for
    the dependencies through a plain path entry, so their ``.pth`` files (an editable oodbench's among them)
    never run and nothing of the source tree is importable."""
    root = tmp_path_factory.mktemp("wheel")
    src = source_copy(root / "src")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(root / "dist"),
         str(src)], cwd=root, env={**os.environ, "PIP_NO_INDEX": "1"})
    (wheel,) = (root / "dist").glob("oodbench-*.whl")
    run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], cwd=root, env=dict(os.environ))
    bindir = root / "venv" / "bin"
    py = bindir / "python"
    venv_site = Path(run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=root,
                         env=dict(os.environ)).strip())
    deps = [p for p in [*site.getsitepackages(), site.getusersitepackages()] if Path(p).is_dir()]
    (venv_site / "_oodbench_test_deps.pth").write_text("\n".join(deps) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "--force-reinstall",
         "-q", str(wheel)], cwd=root, env=env)
    work = root / "work"
    work.mkdir()
    return py, bindir, env, work, wheel


def test_wheel_holds_every_card_and_no_test(wheel_env):
    *_, wheel = wheel_env
    names = set(zipfile.ZipFile(wheel).namelist())
    for card in list_cards():
        assert f"oodbench/cards/datasets/{card}.toml" in names
    for card in list_method_cards():
        assert f"oodbench/cards/methods/{card}.toml" in names
    for card in list_network_cards():
        assert f"oodbench/cards/methods/networks/{card}.toml" in names
    for toml in sorted({e.file for e in load_paper()}):
        assert f"oodbench/cards/paper/{Path(toml).name}" in names
    for asset in ("record.schema.json", "page.html", "page.css", "page.js"):
        assert f"oodbench/leaderboard/{asset}" in names
    assert "oodbench/__main__.py" in names
    assert not any(n.startswith(("tests/", "leaderboard/records")) for n in names)
    metadata = zipfile.ZipFile(wheel).read(f"oodbench-{oodbench.__version__}.dist-info/METADATA").decode()
    assert "License-Expression: MIT" in metadata and "Requires-Python: >=3.11" in metadata
    assert not any(line.startswith("Requires-Dist: torch") and "<" in line for line in metadata.splitlines())


def test_installed_wheel_works_outside_the_source_tree(wheel_env):
    py, bindir, env, work, _ = wheel_env
    where = run([str(py), "-c", "import oodbench, oodbench.paths as p; print(oodbench.__file__); "
                                "print(p.card_folder('datasets'))"], cwd=work, env=env).splitlines()
    venv = str(py.parent.parent)
    assert where[0].startswith(venv) and where[1].startswith(venv), where
    assert run([str(bindir / "oodbench"), "--version"], cwd=work, env=env).strip() == f"oodbench {oodbench.__version__}"
    assert "usage: oodbench" in run([str(py), "-m", "oodbench", "--help"], cwd=work, env=env)
    listing = run([str(bindir / "oodbench"), "list", "datasets"], cwd=work, env=env)
    assert "(no card)" not in listing
    for card in list_cards():
        assert card in listing
    networks = run([str(bindir / "oodbench"), "list", "networks"], cwd=work, env=env)
    assert all(card in networks for card in list_network_cards())
    paper = run([str(bindir / "oodbench"), "paper"], cwd=work, env=env)
    assert "Chan" in paper or "chan_iccv2021" in paper
    run([str(bindir / "oodbench"), "run", "--method", "entropy", "--out", str(work / "records")], cwd=work, env=env,
        timeout=600)
    (record,) = (work / "records").glob("*.json")
    data = json.loads(record.read_text())
    assert data["method"]["name"] == "entropy" and 0.5 < data["metrics"]["pixel"]["auroc"] <= 1
    assert not (work / "leaderboard").exists() or not any((work / "leaderboard").rglob("*.json"))
