"""At least once, in order, across replicas that are SIGKILLed, to a receiver that fails 30 % of
attempts at random and is down for a while: the issue's end-to-end check, on PostgreSQL and SQLite.

Three server processes share one database; client threads rotate the ``access`` secondary key of
a few services round-robin over them; one replica is SIGKILLed and restarted twice meanwhile; the
receiver (a process of its own, on loopback) fails 30 % of deliveries and is stopped for
``EVENTS_DOWN_SECONDS`` in the middle. Afterwards: every acknowledged rotation's event arrived;
per configuration the events first arrived in commit order (the chain of version ids); no event
names a version that was never stored; duplicates carry the same event id; the outbox holds
nothing undelivered, or only dead letters with reasons.

CI runs ``EVENTS_ROTATIONS`` (default 200) with a 3 s outage, to stay well inside the suite's time
budget on two cores; the issue's full run is ``EVENTS_ROTATIONS=10000 EVENTS_DOWN_SECONDS=20`` (its
result is in the issue-15 report).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.backends import PostgresDatabase, SqliteDatabase
from tests.conftest import API
from tests.replicas.conftest import figure
from tests.replicas.harness import Replicas, audit_trail, new_service, replicas_on

ROTATIONS = int(os.environ.get("EVENTS_ROTATIONS", "200"))
DOWN_SECONDS = float(os.environ.get("EVENTS_DOWN_SECONDS", "3"))
SERVICES = 4
CLIENTS = 6
KEY_REGENERATED = "Microsoft.ApiManagement.TenantAccess.KeyRegenerated"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ReceiverProcess:
    def __init__(self, log: Path) -> None:
        self.port = _free_port()
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.events.receiver", str(self.port), "0.3",
                                      str(self.log)], cwd=Path(__file__).parents[2])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("receiver did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def received(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]


def _rotate_all(replicas: Replicas, services: list[str], acked: list[tuple[str, str, str]],
                ambiguous: list[int], stop_at: int) -> None:
    counter = iter(range(stop_at))
    lock = threading.Lock()
    headers = replicas.headers()

    def run(index: int) -> None:
        with httpx.Client(headers=headers, timeout=30) as client:
            while True:
                with lock:
                    n = next(counter, None)
                if n is None:
                    return
                path = services[n % len(services)]
                server = replicas[(index + n) % len(replicas)]
                try:
                    answer = client.post(f"{server.url}{path}/tenant/access/regenerateSecondaryKey?{API}")
                except (httpx.TransportError, AttributeError):
                    with lock:
                        ambiguous.append(n)
                    continue
                with lock:
                    if answer.status_code == 200:
                        data = answer.json()["data"]
                        acked.append((path, data["previous_id"], data["id"]))
                    else:
                        ambiguous.append(n)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _chaos(replicas: Replicas, receiver: ReceiverProcess, done: threading.Event) -> None:
    """Two SIGKILLs of a replica (restarted at once), and the receiver's outage in between."""
    time.sleep(1.0)
    replicas[1].kill()
    replicas[1].start()
    if done.wait(1.0):
        return
    receiver.stop()
    time.sleep(DOWN_SECONDS)
    receiver.start()
    if done.wait(1.0):
        return
    replicas[2].kill()
    replicas[2].start()


@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
def test_every_committed_rotation_arrives_in_order_across_killed_replicas(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if backend == "postgres":
        url = request.getfixturevalue("pg_url")
        database: Any = PostgresDatabase(request.getfixturevalue("pg_cluster"), url)
    else:
        url = f"sqlite:///{tmp_path / 'shared.db'}"
        database = SqliteDatabase(tmp_path / "shared.db")
    receiver = ReceiverProcess(tmp_path / "received.jsonl")
    receiver.start()
    extra = ["--allow-private-event-destinations", "--event-attempt-timeout", "2", "--event-retry-delay", "0.1"]
    began = time.monotonic()
    try:
        with replicas_on(tmp_path / "replicas", ["--database-url", url], extra=extra) as replicas:
            services = [new_service(replicas, "events") for _ in range(SERVICES)]
            with httpx.Client(headers=replicas.headers(), timeout=30) as http:
                for path in services:
                    made = http.put(f"{replicas[0].url}{path}/eventSubscriptions/hook?{API}", json={
                        "destination": f"http://127.0.0.1:{receiver.port}/hook", "eventTypes": [KEY_REGENERATED]})
                    # The receiver fails 30 % of POSTs, never the handshake.
                    assert made.status_code == 201, made.text
            acked: list[tuple[str, str, str]] = []
            ambiguous: list[int] = []
            done = threading.Event()
            chaos = threading.Thread(target=_chaos, args=(replicas, receiver, done))
            chaos.start()
            _rotate_all(replicas, services, acked, ambiguous, ROTATIONS)
            done.set()
            chaos.join()
            rotated = time.monotonic() - began
            if receiver.proc is None:
                receiver.start()
            deadline = time.monotonic() + 120 + ROTATIONS / 10
            while time.monotonic() < deadline:
                left = database.execute("SELECT COUNT(*) FROM event_deliveries WHERE state = 'pending'")[0][0] + \
                    database.execute("SELECT COUNT(*) FROM event_outbox WHERE fanned_out = 0")[0][0]
                if left == 0:
                    break
                time.sleep(0.5)
            drained = time.monotonic() - began
            chains = {path: audit_trail(replicas[0], path, replicas.headers()) for path in services}
            dead = database.execute("SELECT event_id, last_error FROM event_deliveries WHERE state = 'dead'")
            pending = database.execute("SELECT COUNT(*) FROM event_deliveries WHERE state = 'pending'")[0][0]
    finally:
        receiver.stop()

    assert pending == 0, f"{pending} deliveries still pending after the drain"
    assert all(reason for _, reason in dead), "a dead letter without a reason"
    dead_ids = {event_id for event_id, _ in dead}
    received = receiver.received()
    first: dict[str, dict[str, Any]] = {}
    order: dict[str, list[str]] = {}
    for item in received:
        event = json.loads(item["body"])
        assert item["id"] == event["id"]  # webhook-id is the event id
        if event["id"] in first:
            assert first[event["id"]] == event, "a duplicate with the same id but another body"
            continue
        first[event["id"]] = event
        order.setdefault(event["source"].lower(), []).append(event["data"]["newVersionId"])
    duplicates = len(received) - len(first)

    stored: dict[str, list[str]] = {}
    for path, records in chains.items():
        # The audit trail is the commit order: a chain of versions, each replacing the one before.
        successor = {r["old_version_id"]: r["new_version_id"] for r in records}
        replaced = set(successor.values())
        start = next(old for old in successor if old not in replaced)
        chain = []
        while start in successor:
            start = successor[start]
            chain.append(start)
        assert len(chain) == len(records), f"{path}: the audit trail is not one chain"
        stored[path.lower() + "/tenant/access"] = chain

    delivered_by_event = {e["data"]["newVersionId"]: e["id"] for e in first.values()}
    for path, _previous, version in acked:
        assert version in delivered_by_event or _dead_for(database, version, dead_ids), \
            f"acknowledged rotation {version} of {path} was never delivered nor dead-lettered"
    every_stored = {v for chain in stored.values() for v in chain}
    assert set(delivered_by_event) <= every_stored, "an event for a rotation that was never stored"
    assert len(every_stored) - len(acked) <= len(ambiguous)
    for source, versions in order.items():
        chain = stored[source]
        positions = [chain.index(v) for v in versions]
        assert positions == sorted(positions), f"{source}: events arrived out of commit order"
    figure(f"events [{backend}]: {len(acked)} acknowledged rotations ({len(ambiguous)} unacknowledged), "
           f"{len(first)} events delivered, {duplicates} duplicates, {len(dead)} dead letters; rotations took "
           f"{rotated:.1f} s, all delivered after {drained:.1f} s (receiver failing 30 %, down {DOWN_SECONDS:g} s, "
           "2 replica SIGKILLs)")


def _dead_for(database: Any, version: str, dead_ids: set[str]) -> bool:
    if not dead_ids:
        return False
    rows = database.execute("SELECT body FROM event_outbox WHERE id IN (" + ",".join("?" * len(dead_ids)) + ")",
                            list(dead_ids))
    return any(json.loads(r[0])["data"]["newVersionId"] == version for r in rows)
