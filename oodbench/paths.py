"""Where oodbench keeps generated data, trained models and caches."""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import platformdirs


def home() -> Path:
    """``$OODBENCH_HOME`` if set, else the user's cache directory."""
    env = os.environ.get("OODBENCH_HOME")
    root = Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("oodbench"))
    root.mkdir(parents=True, exist_ok=True)
    return root


CARD_FOLDERS = {"methods": "methods", "datasets": "datasets", "paper": "leaderboard/paper"}


def card_folder(kind: str) -> Path:
    """The bundled cards of ``kind`` (a key of ``CARD_FOLDERS``): package data ``oodbench.cards.<kind>`` of an
    installed wheel, or the repository's own folder in a source checkout (editable installs map no data folders)."""
    try:
        root = resources.files(f"oodbench.cards.{kind}")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[1] / CARD_FOLDERS[kind]
    if isinstance(root, Path):
        return root
    return next(iter(root.iterdir())).parent  # a namespace package's single folder
