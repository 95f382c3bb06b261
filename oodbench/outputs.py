"""Checks of what a command will write, made before any work and without side effects: output folders and files that
exist as the wrong kind or cannot be written, and entry names a record cannot carry, are refused at once, naming the
option, the path and the fix, instead of failing with a traceback after the work."""
from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import OodbenchError

# the record schema's $defs/name (leaderboard/record.schema.json): the name is part of the record's file name
_NAME = re.compile(r"[^/\\\x00-\x1f\x7f]+")  # and no control characters (a newline would split table rows)


def check_entry_name(name: str, flag: str = "--name") -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name.strip() != name or name in (".", ".."):
        raise OodbenchError(f"{flag} {name!r}: a leaderboard entry name is part of the record's file name; leave out "
                            f"'/', '\\\\', control characters (newlines, tabs) and leading or trailing spaces")
    return name


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (the folder that a write would create folders in)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_dir(path: str | Path, option: str) -> Path:
    """``path`` is a folder, or can be created as one (no file in the way, the existing part writable)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OodbenchError(f"{option} {path}: is a file, not a folder; give a folder to write into (it is created "
                            f"when missing), e.g. {option} {path.parent / 'leaderboard'}")
    _check_creatable(path, path, option)
    return path


def check_output_file(path: str | Path, option: str, example: str = "out.md") -> Path:
    """``path`` can be written as a file (atomically, by renaming a temporary file over it): it is not a folder,
    and its folder exists or can be created, and is writable."""
    path = Path(path)
    if path.is_dir():
        raise OodbenchError(f"{option} {path}: is a folder; give a file path, e.g. {option} {path / example}")
    _check_creatable(path, path.parent, option)
    return path


def _check_creatable(path: Path, folder: Path, option: str) -> None:
    """``folder`` (``path`` itself, or the folder of the file ``path``) exists or can be made in a writable folder."""
    base = _nearest_existing(folder)
    if not base.is_dir():
        what = "the folder" if folder == path else "its folder"
        raise OodbenchError(f"{option} {path}: cannot create {what}, {base} is a file; give a path whose parents "
                            f"are folders")
    if not os.access(base, os.W_OK | os.X_OK):
        raise OodbenchError(f"{option} {path}: {base} is not writable; give a path you can write to")
