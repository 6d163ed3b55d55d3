"""A real-run test (marked ``real_run``, or asking for the ``real_run`` fixture) may skip only
where this machine lacks what it needs: skipped on a capable machine, it fails the session."""

import pytest

from tests.real_run import real_run_missing, require_real_run

_skipped_real_runs: list[str] = []


@pytest.fixture
def real_run() -> None:
    require_real_run()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "real_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.real_run)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and "real_run" in report.keywords:
        _skipped_real_runs.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _skipped_real_runs and real_run_missing() is None:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter) -> None:
    if _skipped_real_runs and real_run_missing() is None:
        terminalreporter.section("real-run tests skipped on a capable machine", red=True)
        for nodeid in _skipped_real_runs:
            terminalreporter.line(f"FAILED (skipped although this machine can run it): {nodeid}")
