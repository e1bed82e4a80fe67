"""Reliability suites: the portal fixtures, the figures summary, and the secrets scan ordered last."""

from __future__ import annotations

from typing import Any

import pytest

from tests.flows.conftest import pipeline  # noqa: F401  (re-exported fixtures)
from tests.portal.conftest import app  # noqa: F401
from tests.portal.conftest import app_factory  # noqa: F401
from tests.portal.conftest import auth  # noqa: F401
from tests.portal.conftest import client  # noqa: F401
from tests.portal.conftest import portal_sandbox  # noqa: F401
from tests.portal.test_authorization_matrix import world  # noqa: F401
from tests.reliability import figures


def pytest_configure(config: pytest.Config) -> None:
    """Declare the marker of the test that must see everything the session left behind."""
    config.addinivalue_line("markers", "run_last: runs after every other collected test")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move ``run_last`` tests to the end, so the secrets scan sees the whole suite's traces."""
    last = [item for item in items if item.get_closest_marker("run_last")]
    if last:
        items[:] = [item for item in items if item not in last] + last


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the measured figures (and write them to $RELIABILITY_REPORT when set)."""
    found = figures.snapshot()
    if not found:
        return
    terminalreporter.section("reliability figures" + (" (long form)" if figures.LONG else ""))
    for table, values in sorted(found.items()):
        terminalreporter.write_line(f"[{table}]")
        for key, value in sorted(values.items()):
            terminalreporter.write_line(f"  {key}: {value}")
    path = figures.write_report()
    if path is not None:
        terminalreporter.write_line(f"written to {path}")
