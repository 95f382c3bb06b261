"""Shared test set-up: generated data and caches go to a per-session temp folder unless the user chose one."""
import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def oodbench_home(tmp_path_factory):
    """``$OODBENCH_HOME`` for the session (the user's own setting wins, e.g. to reuse a generated benchmark)."""
    if not os.environ.get("OODBENCH_HOME"):
        os.environ["OODBENCH_HOME"] = str(tmp_path_factory.mktemp("oodbench_home"))
    return os.environ["OODBENCH_HOME"]
