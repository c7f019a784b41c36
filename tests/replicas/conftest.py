"""Replicas racing on one database. The measured figures are printed at the end of the run."""

from __future__ import annotations

from typing import Any

import pytest

#: Figures the tests measured, printed in the terminal summary (and so in CI's log).
FIGURES: list[str] = []


def figure(line: str) -> None:
    FIGURES.append(line)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("replica figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture
def pg_url(pg_cluster: Any) -> Any:
    """A fresh database on the session's PostgreSQL, dropped afterwards."""
    url = pg_cluster.create_database("replicas")
    yield url
    pg_cluster.drop_database(url)
