"""Dataset archives by URL: the card's ``[download]`` table names the public archive (url, md5 or sha256, file name
and the folder it extracts to). The archive is fetched into ``$OODBENCH_HOME/downloads`` (verified, resumable: see
:mod:`oodbench.fetch`), checked member by member (no absolute paths, ``..`` or links: zip-slip), extracted into a
temporary folder beside the target, opened with the dataset's loader and only then renamed into place, so the target
holds a complete copy or nothing new. An existing copy is reused when complete and never overwritten otherwise."""
from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import stat
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from tqdm.auto import tqdm

from .. import paths
from ..errors import DatasetError
from ..fetch import fetch_url, normalize_digest
from .cards import list_cards, load_card
from .cityscapes import default_root

__all__ = ["DatasetDownload", "default_downloads_dir", "download_dataset", "download_spec", "safe_members"]


@dataclass(frozen=True)
class DatasetDownload:
    """Where a dataset landed: ``root`` is the ``--data-root`` to pass, ``folder`` the extracted top folder."""

    name: str
    root: Path
    folder: Path
    counts: dict[str, int]
    reused: bool
    archive: Path | None = None
    checked: str = ""  # e.g. "md5 87a0...": what the archive was verified against


def default_downloads_dir() -> Path:
    """Where dataset archives are kept: ``<oodbench home>/downloads``."""
    return paths.home() / "downloads"


def download_spec(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(card, its ``[download]`` table); a clear error for an unknown dataset or one without a public archive."""
    if name not in list_cards():
        havers = [n for n in list_cards() if "download" in load_card(n)]
        raise DatasetError(f"unknown dataset {name!r}: no card datasets/{name}.toml; datasets oodbench can download: "
                           f"{', '.join(havers) or 'none'} (`oodbench list datasets` lists all)")
    card = load_card(name)
    spec = card.get("download")
    if spec is None:
        raise DatasetError(
            f"{name}: no public archive that oodbench can download (datasets/{name}.toml has no [download] table: the "
            f"data needs a registration, comes in several archives or is not a file). Get it from "
            f"{card.get('url', 'the dataset authors')}, then pass its folder as --data-root")
    missing = [key for key in ("url", "archive", "extracts_to") if not spec.get(key)]
    if missing:
        raise DatasetError(f"datasets/{name}.toml: the [download] table lacks {', '.join(missing)}")
    if not spec["archive"].lower().endswith(".zip"):
        raise DatasetError(f"datasets/{name}.toml: archive {spec['archive']!r}: only .zip archives are supported")
    return card, spec


def safe_members(zf: zipfile.ZipFile, archive: Path) -> list[zipfile.ZipInfo]:
    """The archive's members, refusing any that could land outside the extraction folder (zip-slip)."""
    for info in zf.infolist():
        name = info.filename.replace("\\", "/")
        if ".." in PurePosixPath(name).parts:
            problem = "a '..' path"
        elif name.startswith("/") or name[1:2] == ":":
            problem = "an absolute path"
        elif stat.S_ISLNK(info.external_attr >> 16):
            problem = "a symbolic link"
        else:
            continue
        raise DatasetError(f"{archive}: member {info.filename!r} is {problem}, which could write outside the "
                           f"dataset folder; refusing to extract this archive. Delete it and download the published "
                           f"archive again")
    return zf.infolist()


def _loader(card: dict[str, Any]):
    module, _, attr = card["loader"].partition(":")
    return getattr(importlib.import_module(module), attr)


def _open_dataset(card: dict[str, Any], root: Path) -> dict[str, int]:
    """Open every split of the card with the dataset's loader (its checks: listed files, counts); frames per split."""
    loader = _loader(card)
    return {split: len(loader(root, split=split)) for split in card.get("splits", {"test": {}})}


def _expected(spec: dict[str, Any], sha256: str | None, md5: str | None) -> dict[str, str]:
    """The checksums to verify: the user's (overriding the card's) or the card's."""
    given = {"sha256": sha256, "md5": md5} if sha256 or md5 else {"sha256": spec.get("sha256"), "md5": spec.get("md5")}
    return {algo: normalize_digest(value, algo, DatasetError) for algo, value in given.items() if value}


def _matches(path: Path, expected: dict[str, str]) -> bool:
    hashes = {algo: hashlib.new(algo) for algo in expected}
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            for h in hashes.values():
                h.update(chunk)
    return all(hashes[algo].hexdigest() == value for algo, value in expected.items())


def _extract(archive: Path, root: Path, top: str, card: dict[str, Any], progress: bool) -> dict[str, int]:
    """Extract into a temporary folder inside ``root``, check the copy with the loader, rename ``top`` into place."""
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{top}.", suffix=".extracting"))
    try:
        try:
            with zipfile.ZipFile(archive) as zf:
                members = safe_members(zf, archive)
                for info in tqdm(members, desc=f"extracting {archive.name}", unit="file", disable=not progress,
                                 leave=False):
                    zf.extract(info, tmp)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
            raise DatasetError(f"{archive}: not a readable zip archive ({exc}); delete it and download it again") \
                from exc
        except OSError as exc:
            raise DatasetError(f"{root}: cannot extract {archive} here ({exc}); free some space or pass --out to "
                               f"another folder") from exc
        if not (tmp / top).is_dir():
            held = ", ".join(sorted(p.name for p in tmp.iterdir())) or "nothing"
            raise DatasetError(f"{archive}: holds {held}, not the folder {top}/ the dataset card names; is this the "
                               f"published archive?")
        try:
            counts = _open_dataset(card, tmp)
        except DatasetError as exc:
            raise DatasetError(f"{archive}: the extracted copy is incomplete ({exc}); nothing was put in {root}. "
                               f"Delete the archive and download it again") from exc
        try:
            os.rename(tmp / top, root / top)
        except OSError as exc:
            raise DatasetError(f"{root / top}: cannot move the extracted copy into place ({exc}); if another "
                               f"download just put it there, run again to reuse it") from exc
        return counts
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def download_dataset(name: str, *, out: str | Path | None = None, url: str | None = None, sha256: str | None = None,
                     md5: str | None = None, cache: str | Path | None = None, progress: bool = True,
                     timeout: float = 60.0, log: Callable[[str], object] | None = None) -> DatasetDownload:
    """Download, verify and extract dataset ``name`` into ``out`` (default ``<home>/data/<name>``, where its loader
    looks). ``url`` is a mirror: the card's checksum still applies unless ``sha256`` or ``md5`` replaces it."""
    log = log or (lambda message: print(message, file=sys.stderr))
    card, spec = download_spec(name)
    expected = _expected(spec, sha256, md5)
    root = default_root(name, out)  # without --out: <home>/data/<name>, where the loader looks by default
    folder = root / spec["extracts_to"]
    if folder.exists() or folder.is_symlink():
        try:
            return DatasetDownload(name, root, folder, _open_dataset(card, root), reused=True)
        except DatasetError as exc:
            raise DatasetError(f"{folder} exists but is not a complete copy of {name} ({exc}). oodbench does not "
                               f"overwrite it: remove or rename it and run again, or pass --out to another folder") \
                from exc
    url = url or spec["url"]
    archive = Path(cache).expanduser() if cache is not None else default_downloads_dir()
    archive = archive / spec["archive"]
    checked = "verified: " + ", ".join(f"{algo} {value}" for algo, value in expected.items())
    if archive.is_file() and expected and _matches(archive, expected):
        log(f"{name}: reusing the verified archive {archive}")
    else:
        if archive.is_file():
            log(f"{name}: the archive {archive} " + ("does not match its checksum" if expected else "cannot be verified")
                + "; downloading it again")
        actual = fetch_url(url, archive, sha256=expected.get("sha256"), md5=expected.get("md5"), what="archive",
                           error=DatasetError, progress=progress, timeout=timeout,
                           manual=f"download {url} by hand, extract it into {root} and pass --data-root {root}")
        if not expected:
            log(f"{name}: {url} has no published checksum, so the archive is unverified (its sha256 is {actual}); "
                f"pass --sha256 to check it")
            checked = f"unverified, sha256 {actual}"
    created = not root.exists()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"{root}: cannot create the dataset folder ({exc}); pass --out to a writable folder") \
            from exc
    try:
        counts = _extract(archive, root, spec["extracts_to"], card, progress)
    except BaseException:
        if created and not any(root.iterdir()):
            root.rmdir()
        raise
    return DatasetDownload(name, root, folder, counts, reused=False, archive=archive, checked=checked)
