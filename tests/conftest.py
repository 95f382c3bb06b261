"""Shared test set-up: generated data and caches go to a per-session temp folder unless the user chose one."""
import os

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
