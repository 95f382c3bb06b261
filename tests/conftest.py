"""Shared test set-up: generated data and caches go to a per-session temp folder unless the user chose one."""
import os
import time

import pytest


@pytest.fixture(scope="session", autouse=True)
def oodbench_home(tmp_path_factory):
    """``$OODBENCH_HOME`` for the session (the user's own setting wins, e.g. to reuse a generated benchmark)."""
    if not os.environ.get("OODBENCH_HOME"):
        os.environ["OODBENCH_HOME"] = str(tmp_path_factory.mktemp("oodbench_home"))
    return os.environ["OODBENCH_HOME"]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Where CI installed the optional extras (``$OODBENCH_CI_EXTRAS``), a test skipped for want of one fails."""
    outcome = yield
    report = outcome.get_result()
    extras = os.environ.get("OODBENCH_CI_EXTRAS", "").split()
    if report.skipped and extras and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2])
        missing = [name for name in extras if name in reason and ("install" in reason or "unavailable" in reason)]
        if missing:
            report.outcome = "failed"
            report.longrepr = f"CI installed {', '.join(missing)}, yet this test skipped: {reason}"


SLOW_START_LIMIT = float(os.environ.get("OODBENCH_SLOW_START_LIMIT", "450"))  # seconds into the session


def pytest_collection_modifyitems(config, items):
    """Tests marked ``slow`` run last, so that the suite's fast part always runs whole."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is not None)  # stable: file order kept otherwise


def pytest_sessionstart(session):
    session.config._oodbench_start = time.monotonic()


def pytest_runtest_setup(item):
    """A ``slow`` test starts only while the session is under ``OODBENCH_SLOW_START_LIMIT`` seconds (450 by default,
    so that the suite stays within 10 minutes on 2 cores); ``-m slow`` or the variable set high runs them all."""
    if item.get_closest_marker("slow") is None or "slow" in (item.config.getoption("-m") or ""):
        return
    elapsed = time.monotonic() - item.config._oodbench_start
    if elapsed > SLOW_START_LIMIT:
        pytest.skip(f"slow test not started: the session has run {elapsed:.0f} s, past the {SLOW_START_LIMIT:.0f} s "
                    "after which slow tests wait; run them with `python -m pytest -m slow`")
