"""``serve --workers N``: N processes on one port and one store lose nothing, and are kept running.

The workers share the listening socket, so the race below cannot choose a worker: the kernel
spreads the connections. That every worker did serve is checked from the CPU time each used.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.replicas.conftest import figure
from tests.replicas.harness import RaceResult, new_service, race, replicas_on
from tests.serverproc import ServerProcess

CLIENTS, PER_CLIENT = 8, 40
WORKERS = ["--workers", "2"]


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (the workers of a server)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after its closing parenthesis.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


def cpu_ticks(pid: int) -> int:
    fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _pid(server: ServerProcess) -> int:
    assert server.proc is not None
    return server.proc.pid


def _summary(name: str, result: RaceResult) -> str:
    statuses = ", ".join(f"{count}x{status}" for status, count in sorted(result.statuses().items()))
    latencies = sorted(a.answered - a.sent for a in result.attempts)
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    return (f"{name}: {len(result.attempts)} regenerations in {result.seconds:.2f}s ({statuses}); "
            f"p99 latency {p99 * 1000:.0f} ms; checker: {'; '.join(result.problems) or 'no problem'}")


def _race_on_workers(tmp_path: Path, database_args: list[str], name: str) -> RaceResult:
    with replicas_on(tmp_path, database_args, count=1, extra=WORKERS) as replicas:
        server = replicas[0]
        assert server.log().count("tenant-access listening on") == 1
        workers = children(_pid(server))
        assert len(workers) == 2
        before = {pid: cpu_ticks(pid) for pid in workers}
        result = race(replicas, new_service(replicas), CLIENTS, PER_CLIENT)
        used = {pid: cpu_ticks(pid) - before[pid] for pid in workers}
    figure(_summary(name, result) + f"; CPU ticks by worker {sorted(used.values())}")
    assert all(ticks > 0 for ticks in used.values()), used
    return result


@pytest.mark.slow
def test_sqlite_workers_racing_on_one_key_lose_no_rotation(tmp_path: Path) -> None:
    result = _race_on_workers(tmp_path, ["--database-url", f"sqlite:///{tmp_path / 'shared.db'}"],
                              "race, 2 workers on one SQLite file")
    assert set(result.statuses()) <= {200, 503}
    assert all(a.retry_after for a in result.attempts if a.status == 503)
    assert result.problems == []


@pytest.mark.slow
def test_postgres_workers_racing_on_one_key_lose_no_rotation(pg_url: str, tmp_path: Path) -> None:
    result = _race_on_workers(tmp_path, ["--database-url", pg_url], "race, 2 workers on PostgreSQL")
    assert result.statuses() == {200: CLIENTS * PER_CLIENT}
    assert result.problems == []


def _wait_for(condition: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_killed_worker_is_restarted_while_the_others_serve(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, WORKERS).start()
    try:
        parent = _pid(server)
        first = children(parent)
        assert len(first) == 2
        os.kill(first[0], signal.SIGKILL)
        # The survivor answers while the dead one is replaced.
        answered = 0
        deadline = time.monotonic() + 20
        while True:
            assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
            answered += 1
            now = children(parent)
            if len(now) == 2 and first[0] not in now:
                break
            assert time.monotonic() < deadline, f"no worker replaced {first[0]}: {now}"
            time.sleep(0.02)
        assert first[1] in now
        assert "worker 0 exited" in server.log() or "exited with code" in server.log()
        # The new worker serves too (it took its place on the socket): answers keep coming.
        for _ in range(20):
            assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
        workers = children(parent)
        code = server.stop()
    finally:
        server.stop()
    assert code == 0
    assert all(not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
               for pid in workers)
    assert answered >= 1


def test_workers_stop_when_their_parent_is_killed(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, WORKERS).start()
    try:
        workers = children(_pid(server))
        assert len(workers) == 2
        server.kill()
        _wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers))
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{server.url}/healthz", timeout=2)
    finally:
        server.stop()


def test_provisioning_runs_once_and_the_demo_is_served_by_every_worker(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, [*WORKERS, "--demo"]).start()
    try:
        log = server.log()
        assert log.count("tenant-access listening on") == 1
        assert log.count("export TOKEN=") == 1
        assert log.count("applied migration 0001") == 1
        path = ("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/demo-rg/providers/"
                "Microsoft.ApiManagement/service/demo-apim")
        # New connections each, so both workers are asked; every one knows the demo service.
        for _ in range(20):
            response = httpx.get(f"{server.url}{path}/tenant/access?api-version=2024-05-01",
                                 headers=server.auth(), timeout=5)
            assert response.status_code == 200, response.text
    finally:
        code = server.stop()
    assert code == 0
