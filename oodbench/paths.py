"""Where oodbench keeps generated data, trained models and caches."""
from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def home() -> Path:
    """``$OODBENCH_HOME`` if set, else the user's cache directory."""
    env = os.environ.get("OODBENCH_HOME")
    root = Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("oodbench"))
    root.mkdir(parents=True, exist_ok=True)
    return root
