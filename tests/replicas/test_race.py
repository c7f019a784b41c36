"""Three replicas, eight clients, forty regenerations of the same key each: no rotation is lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenant_access.storage.postgres import UNSAFE_ACK, UNSAFE_ACK_VALUE, UNSAFE_NO_ROW_LOCK
from tests.replicas.conftest import figure
from tests.replicas.harness import RaceResult, new_service, race, replicas_on

CLIENTS, PER_CLIENT = 8, 40


def _summary(name: str, result: RaceResult) -> str:
    statuses = ", ".join(f"{count}x{status}" for status, count in sorted(result.statuses().items()))
    latencies = sorted(a.answered - a.sent for a in result.attempts)
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    return (f"{name}: {len(result.attempts)} regenerations in {result.seconds:.2f}s ({statuses}); "
            f"p99 latency {p99 * 1000:.0f} ms; {len(result.audit)} audit records; "
            f"checker: {'; '.join(result.problems) or 'no problem'}")


@pytest.mark.slow
def test_postgres_replicas_racing_on_one_key_lose_no_rotation(pg_url: str, tmp_path: Path) -> None:
    with replicas_on(tmp_path, ["--database-url", pg_url]) as replicas:
        result = race(replicas, new_service(replicas), CLIENTS, PER_CLIENT)
    figure(_summary("race, 3 PostgreSQL replicas", result))
    assert result.statuses() == {200: CLIENTS * PER_CLIENT}
    assert len({a.version_id for a in result.attempts}) == CLIENTS * PER_CLIENT
    assert len(result.audit) == CLIENTS * PER_CLIENT
    assert result.problems == []


@pytest.mark.slow
def test_the_checker_sees_lost_updates_when_row_locks_are_disabled(pg_url: str, tmp_path: Path) -> None:
    """The same race with the storage layer's row lock switched off (a test-only switch) must fail the
    checker: proof that the check above could see a lost update if there were one."""
    unsafe = {UNSAFE_NO_ROW_LOCK: "1", UNSAFE_ACK: UNSAFE_ACK_VALUE}
    with replicas_on(tmp_path, ["--database-url", pg_url], env=unsafe) as replicas:
        assert "UNSAFE" in replicas[0].log()
        result = race(replicas, new_service(replicas), CLIENTS, PER_CLIENT)
    figure(_summary("race without row locks (must fail the checker)", result))
    assert any(problem.startswith("lost updates") for problem in result.problems), result.problems


def test_the_unsafe_switch_is_refused_without_its_acknowledgement(pg_url: str, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=UNSAFE_ACK):
        replicas_on(tmp_path, ["--database-url", pg_url], count=1, env={UNSAFE_NO_ROW_LOCK: "1"}).__enter__()


@pytest.mark.slow
def test_sqlite_processes_racing_on_one_file_lose_no_rotation(tmp_path: Path) -> None:
    database = tmp_path / "shared.db"
    with replicas_on(tmp_path, ["--database-url", f"sqlite:///{database}"]) as replicas:
        result = race(replicas, new_service(replicas), CLIENTS, PER_CLIENT)
    figure(_summary("race, 3 SQLite processes on one file", result))
    # A busy file may answer 503 (with Retry-After) before anything is written; nothing else.
    assert set(result.statuses()) <= {200, 503}
    assert all(a.retry_after for a in result.attempts if a.status == 503)
    assert result.problems == []
