"""Crash safety: SIGKILL at a random moment during a stream of rotations from several clients.

Each round starts the server process, lets three clients rotate keys (every request with an
``Idempotency-Key``), kills the server with SIGKILL after a seeded random delay, and restarts it.
After every restart:

- the database passes ``PRAGMA integrity_check`` and the consistency checks of invariants.py
  (current versions exist, superseded keys are erased, every rotation has exactly one audit record
  that names the version it replaced);
- every rotation that was acknowledged before the crash is there;
- every request that was in flight is retried with its idempotency key and answered: with the
  stored outcome if it had been committed (``Idempotent-Replayed: true``), by rotating now if not;
- an acknowledged request retried with its key answers the same version and rotates nothing.

At the end the number of rotations in the database equals the number of distinct idempotency keys:
every logical request took effect exactly once, whatever the crashes did to its answers.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import API, SERVICE_BODY, service_path
from tests.reliability import invariants
from tests.serverproc import ServerProcess

SEED = 20261127
ROUNDS = 30
CLIENTS = 3
OPERATIONS = ("regeneratePrimaryKey", "regenerateSecondaryKey", "git/regeneratePrimaryKey",
              "git/regenerateSecondaryKey")


@dataclass
class Ledger:
    """What the clients know: answered keys (with the version each answer named), and keys whose
    request got no answer."""

    acknowledged: dict[str, str] = field(default_factory=dict)
    sent: dict[str, str] = field(default_factory=dict)  # key -> the URL it was sent to
    unanswered: set[str] = field(default_factory=set)
    replays: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answered(self, key: str, response: httpx.Response) -> None:
        assert response.status_code == 200, response.text
        version = response.json()["data"]["id"]
        with self.lock:
            assert self.acknowledged.setdefault(key, version) == version, f"{key} answered two versions"
            if response.headers.get("idempotent-replayed") == "true":
                self.replays += 1


def _client(server: ServerProcess, urls: list[str], ledger: Ledger, name: str, seed: int,
            stop: threading.Event) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=server.url, headers=server.auth(), timeout=httpx.Timeout(10, connect=2)) as http:
        for n in range(10_000):
            if stop.is_set():
                return
            key, url = f"{name}-{n}", f"{rng.choice(urls)}/{rng.choice(OPERATIONS)}?{API}"
            with ledger.lock:
                ledger.sent[key] = url
            try:
                response = http.post(url, headers={"Idempotency-Key": key})
            except httpx.TransportError:
                with ledger.lock:
                    ledger.unanswered.add(key)
                return
            ledger.answered(key, response)


@pytest.mark.slow
def test_sigkill_during_rotations_loses_nothing_and_rotates_exactly_once(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    server = ServerProcess(tmp_path).start()
    database = tmp_path / "tenant-access.db"
    ledger = Ledger()
    services = [service_path(f"crash-{i}") for i in range(2)]
    with httpx.Client(base_url=server.url, headers=server.auth(), timeout=10) as http:
        for svc in services:
            assert http.put(f"{svc}?{API}", json=SERVICE_BODY).status_code == 201
    urls = [f"{svc}/tenant/{name}" for svc in services for name in ("access", "gitAccess")]
    started = time.monotonic()
    try:
        for round_ in range(ROUNDS):
            stop = threading.Event()
            clients = [threading.Thread(target=_client, args=(server, urls, ledger, f"r{round_}c{c}",
                                                              rng.randrange(2**32), stop))
                       for c in range(CLIENTS)]
            for thread in clients:
                thread.start()
            time.sleep(rng.uniform(0.02, 0.5))
            server.kill()
            stop.set()
            for thread in clients:
                thread.join(15)
                assert not thread.is_alive()
            server.start()

            assert invariants.problems(database) == [], f"round {round_}"
            assert set(ledger.acknowledged.values()) <= invariants.regenerated(database), f"round {round_}"
            with httpx.Client(base_url=server.url, headers=server.auth(), timeout=10) as http:
                for key in sorted(ledger.unanswered):
                    ledger.answered(key, http.post(ledger.sent[key], headers={"Idempotency-Key": key}))
                ledger.unanswered.clear()
                # An answered request, retried: the same version, and nothing rotates.
                key = rng.choice(sorted(ledger.acknowledged))
                before = invariants.regenerated(database)
                again = http.post(ledger.sent[key], headers={"Idempotency-Key": key})
                assert again.status_code == 200, again.text
                assert again.json()["data"]["id"] == ledger.acknowledged[key]
                assert again.headers["idempotent-replayed"] == "true"
                assert invariants.regenerated(database) == before
    finally:
        server.stop()
    assert invariants.problems(database) == []
    rotated = invariants.regenerated(database)
    assert rotated == set(ledger.acknowledged.values())
    assert len(rotated) == len(ledger.acknowledged)  # exactly once per idempotency key
    assert len(ledger.acknowledged) > ROUNDS * CLIENTS
    assert ledger.replays > 0, "no crash fell between a commit and its answer: the replay path went untested"
    print(f"\ncrash loop: {ROUNDS} rounds in {time.monotonic() - started:.1f}s, {len(rotated)} rotations, "
          f"{ledger.replays} answered by replay")

