"""Key lifecycle across replicas: scheduled rotations happen exactly once per due time with every
replica's scheduler racing (3 SQLite processes on one file, 3 PostgreSQL replicas), also when the
replica doing them is SIGKILLed mid-pass; key usage adds up across two replicas under 8 concurrent
SAS clients, within the documented flush loss."""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tenant_access.security.sas import make_sas
from tests.conftest import API
from tests.replicas.conftest import figure
from tests.replicas.harness import Replicas, list_secrets, new_service, replicas_on

SERVICES = 6
ROUNDS = 3
PERIOD_DAYS = 30
POLICY = {"lifetimeActions": [{"trigger": {"timeAfterCreate": f"P{PERIOD_DAYS}D"}, "action": {"type": "Rotate"}}],
          "gracePeriod": "PT1M"}
EXTRA = ["--emulator-controls"]


def _set_clocks(replicas: Replicas, servers: list[int], when: dt.datetime) -> None:
    """Every listed replica moves its clock at the same moment, each running its scheduler at once."""
    barrier = threading.Barrier(len(servers))

    def move(index: int) -> None:
        barrier.wait()
        answer = httpx.put(f"{replicas[index].url}/_emulator/clock", json={"now": when.isoformat()},
                           headers=replicas.headers(), timeout=60)
        assert answer.status_code == 200, answer.text

    with ThreadPoolExecutor(len(servers)) as pool:
        list(pool.map(move, servers))


def _policy_rotations(replicas: Replicas, path: str, index: int = 0) -> list[dict[str, object]]:
    answer = httpx.get(f"{replicas[index].url}{path}/auditEvents?{API}&kind=changes", headers=replicas.headers(),
                       timeout=30)
    assert answer.status_code == 200, answer.text
    return [r for r in answer.json()["data"] if r["principal"] == "policy"
            and str(r["operation"]).startswith("access.regenerate")]


def _with_policies(replicas: Replicas, count: int) -> list[str]:
    paths = [new_service(replicas, "sched") for _ in range(count)]
    for path in paths:
        answer = httpx.put(f"{replicas[0].url}{path}/tenant/access/rotationPolicy?{API}", json=POLICY,
                           headers=replicas.headers(), timeout=30)
        assert answer.status_code == 200, answer.text
    return paths


def _exactly_once(replicas: Replicas, name: str) -> None:
    paths = _with_policies(replicas, SERVICES)
    start = dt.datetime.now(dt.UTC)
    for round_ in range(1, ROUNDS + 1):
        _set_clocks(replicas, list(range(len(replicas))), start + dt.timedelta(days=(PERIOD_DAYS + 1) * round_))
        time.sleep(1.5)  # the periodic passes race too
    for path in paths:
        rotations = _policy_rotations(replicas, path)
        assert len(rotations) == ROUNDS, (path, [(r["created_at"], r["detail"]) for r in rotations])
        replaced = Counter(r["old_version_id"] for r in rotations)
        assert max(replaced.values()) == 1, replaced  # no version replaced twice: no lost or doubled rotation
    figure(f"{name}: {SERVICES} policies x {ROUNDS} due times, 3 schedulers racing: "
           f"{SERVICES * ROUNDS} rotations, one audit record each")


@pytest.mark.slow
def test_sqlite_processes_rotate_each_due_time_once(tmp_path: Path) -> None:
    with replicas_on(tmp_path, ["--database-url", f"sqlite:///{tmp_path / 'shared.db'}"], extra=EXTRA) as replicas:
        _exactly_once(replicas, "scheduler, 3 SQLite processes")


@pytest.mark.slow
def test_postgres_replicas_rotate_each_due_time_once(pg_url: str, tmp_path: Path) -> None:
    with replicas_on(tmp_path, ["--database-url", pg_url], extra=EXTRA) as replicas:
        _exactly_once(replicas, "scheduler, 3 PostgreSQL replicas")


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_sigkill_during_a_scheduled_pass_leaves_each_rotation_done_once(backend: str, tmp_path: Path,
                                                                         request: pytest.FixtureRequest) -> None:
    url = (f"sqlite:///{tmp_path / 'shared.db'}" if backend == "sqlite"
           else request.getfixturevalue("pg_url"))
    with replicas_on(tmp_path, ["--database-url", url], count=2, extra=EXTRA) as replicas:
        paths = _with_policies(replicas, 30)
        due = dt.datetime.now(dt.UTC) + dt.timedelta(days=PERIOD_DAYS + 1)
        def move() -> None:
            with contextlib.suppress(httpx.HTTPError):  # the replica dies before it answers
                httpx.put(f"{replicas[0].url}/_emulator/clock", json={"now": due.isoformat()},
                          headers=replicas.headers(), timeout=60)

        mover = threading.Thread(target=move)
        mover.start()
        time.sleep(0.05)
        replicas[0].kill()  # mid-pass: some rotations committed, maybe one in flight, the rest not begun
        mover.join()
        before = sum(len(_policy_rotations(replicas, p, 1)) for p in paths)
        replicas[0].start()
        _set_clocks(replicas, [1], due)  # the survivor catches up on what is still due
        time.sleep(1.5)
        counts = [len(_policy_rotations(replicas, p)) for p in paths]
    assert counts == [1] * len(paths), counts
    figure(f"SIGKILL mid-pass ({backend}): {before} of {len(paths)} due rotations done before the kill; "
           "after the catch-up each done exactly once")


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_usage_adds_up_across_two_replicas_under_eight_sas_clients(backend: str, tmp_path: Path,
                                                                   request: pytest.FixtureRequest) -> None:
    url = (f"sqlite:///{tmp_path / 'shared.db'}" if backend == "sqlite"
           else request.getfixturevalue("pg_url"))
    with replicas_on(tmp_path, ["--database-url", url], count=2) as replicas:
        path = new_service(replicas, "usage")
        keys = list_secrets(replicas[0], path, replicas.headers())
        per_client = 150
        counts = Counter[str]()
        lock = threading.Lock()
        last_sent = {"t": dt.datetime.now(dt.UTC)}

        def client(index: int) -> None:
            slot = "primary" if index % 2 else "secondary"
            sas = make_sas("integration", keys[f"{slot}_key"], dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
            with httpx.Client(headers={"Authorization": sas}, timeout=30) as http:
                for n in range(per_client):
                    server = replicas[(index + n) % 2]
                    assert http.get(f"{server.url}{path}/tenant/access?{API}").status_code == 200
                    with lock:
                        counts[slot] += 1
                        last_sent["t"] = dt.datetime.now(dt.UTC)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(client, range(8)))
        from tenant_access.usage import FLUSH_SECONDS

        time.sleep(FLUSH_SECONDS * 2.5)  # every replica has flushed since the last request
        answer = httpx.get(f"{replicas[1].url}{path}/tenant/access/keyUsage?{API}", headers=replicas.headers())
        assert answer.status_code == 200, answer.text
        shown = {k["slot"]: k for k in answer.json()["data"]["keys"]}
    for slot in ("primary", "secondary"):
        assert shown[slot]["use_count"] == counts[slot] == 4 * per_client, (slot, shown[slot], counts)
        last = dt.datetime.fromisoformat(shown[slot]["last_used_at"].replace("Z", "+00:00"))
        # Minute resolution: the last use shown is the minute of the last request (or, across a
        # minute's end, the one before), never older.
        assert last_sent["t"] - last < dt.timedelta(minutes=1, seconds=FLUSH_SECONDS), (last, last_sent)
    figure(f"usage, 2 {backend} replicas, 8 SAS clients: {sum(counts.values())} uses sent, "
           f"{sum(k['use_count'] for k in shown.values())} counted after the flush interval")
