"""The database stops and starts again under load: replicas answer 503 meanwhile, recover on their own."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import API, SERVICE_BODY, service_path
from tests.pg import Cluster
from tests.replicas.conftest import figure
from tests.replicas.harness import (
    Attempt,
    RaceResult,
    audit_trail,
    check,
    list_secrets,
    new_service,
    regenerate,
    replicas_on,
)
from tests.serverproc import ServerProcess

OUTAGE = 3.0
AFTER = 4.0
RECOVERY_LIMIT = 5.0


@pytest.fixture
def own_cluster() -> Iterator[Cluster]:
    """A PostgreSQL of this test's own (whatever TEST_DATABASE_URL says): it is going to be stopped."""
    cluster = Cluster.private()
    yield cluster
    cluster.close()


@dataclass(frozen=True)
class Answer:
    kind: str
    replica: int
    status: int
    at: float
    retry_after: str | None
    code: str | None


@pytest.mark.slow
def test_database_stop_and_start_under_load(own_cluster: Cluster, tmp_path: Path) -> None:
    url = own_cluster.create_database("outage")
    with replicas_on(tmp_path, ["--database-url", url]) as replicas:
        path = new_service(replicas, "outage")
        headers = replicas.headers()
        initial = list_secrets(replicas[0], path, headers)["secondary_key_version_id"]
        stop = threading.Event()
        answers: list[Answer] = []
        rotations: list[Attempt] = []

        def load(index: int) -> None:
            kinds = ("rotate", "secrets", "get", "ready")
            with httpx.Client(headers=headers, timeout=30) as client:
                n = index
                while not stop.is_set():
                    replica, kind = n % len(replicas), kinds[(n // len(replicas)) % len(kinds)]
                    server = replicas[replica]
                    n += 1
                    if kind == "rotate":
                        attempt = regenerate(client, server, path, index, replica)
                        rotations.append(attempt)
                        answers.append(Answer(kind, replica, attempt.status, attempt.answered,
                                              attempt.retry_after, None))
                        continue
                    try:
                        if kind == "secrets":
                            response = client.post(f"{server.url}{path}/tenant/access/listSecrets?{API}")
                        elif kind == "get":
                            response = client.get(f"{server.url}{path}/tenant/access?{API}")
                        else:
                            response = client.get(f"{server.url}/readyz")
                    except httpx.TransportError:
                        answers.append(Answer(kind, replica, 0, time.monotonic(), None, None))
                        continue
                    body = response.json() if response.content else {}
                    code = body.get("error", {}).get("code") if isinstance(body, dict) else None
                    answers.append(Answer(kind, replica, response.status_code, time.monotonic(),
                                          response.headers.get("retry-after"), code))
                    time.sleep(0.002)

        threads = [threading.Thread(target=load, args=(i,), daemon=True) for i in range(6)]
        for thread in threads:
            thread.start()
        time.sleep(1.5)
        stopped_at = time.monotonic()
        own_cluster.stop("fast")
        time.sleep(OUTAGE)
        # The database accepts connections some time before start() returns (it waits for that):
        # "down" is the window before the restart began, "back" is once start() has returned.
        restarting_at = time.monotonic()
        own_cluster.start()
        back_at = time.monotonic()
        time.sleep(AFTER)
        stop.set()
        for thread in threads:
            thread.join(30)

        audit = audit_trail(replicas[0], path, headers)
        finals = [list_secrets(server, path, headers) for server in replicas]
        rows = own_cluster.connect(url)
        try:
            service_id = rows.execute("SELECT id FROM services WHERE name_key = %s",
                                      (path.rsplit("/", 1)[1].lower(),)).fetchone()[0]
            versions = rows.execute(
                "SELECT count(*), count(secret) FROM key_versions WHERE service_id = %s AND access_name = 'access' "
                "AND slot = 'secondary'", (service_id,)).fetchone()
            current = rows.execute(
                "SELECT v.secret IS NOT NULL FROM access_configs c "
                "JOIN key_versions v ON v.id = c.secondary_version_id "
                "WHERE c.service_id = %s AND c.name = 'access'", (service_id,)).fetchone()[0]
        finally:
            rows.close()

    statuses = Counter(a.status for a in answers)
    during = [a for a in answers if stopped_at + 0.5 < a.at < restarting_at]
    recovered = []
    for index in range(len(replicas)):
        ok = [a.at for a in answers if a.replica == index and a.kind == "rotate" and a.status == 200 and a.at > back_at]
        recovered.append((min(ok) if ok else float("inf")) - back_at)
    unavailable_rotations = sum(1 for a in rotations if a.status == 503)
    result = RaceResult(initial, rotations, audit, finals, 0.0)
    problems = check(result, ambiguous_allowed=unavailable_rotations)
    figure(f"database stopped {OUTAGE:.0f}s under load on 3 replicas: {sum(statuses.values())} answers "
           f"({', '.join(f'{n}x{s}' for s, n in sorted(statuses.items()))}); every replica rotating again "
           f"{max(recovered):.2f}s after the database was back; {len(audit)} rotations stored; "
           f"checker: {'; '.join(problems) or 'no problem'}")

    assert set(statuses) <= {200, 503}, statuses  # no 500, no dropped connection (0)
    assert all(a.retry_after for a in answers if a.status == 503)
    assert all(a.code == "SERVICE_UNAVAILABLE" for a in answers if a.status == 503 and a.kind != "rotate")
    assert {a.replica for a in during if a.kind == "ready" and a.status == 503} == {0, 1, 2}
    assert not [a for a in during if a.status == 200 and a.kind != "ready"]  # nothing served from nowhere
    assert max(recovered) < RECOVERY_LIMIT
    assert problems == []
    # Nothing half-written: one key version per stored rotation (plus the first), and only the current
    # one still holds key material.
    assert versions == (1 + len(audit), 1)
    assert current is True


@pytest.mark.slow
def test_database_down_answers_503_in_the_azure_format_and_readiness_fails(own_cluster: Cluster,
                                                                            tmp_path: Path) -> None:
    url = own_cluster.create_database("azure")
    server = ServerProcess(tmp_path, ["--database-url", url, "--api-style", "azure"]).start()
    path = service_path("down")
    try:
        with httpx.Client(base_url=server.url, headers=server.auth(), timeout=30) as http:
            assert http.put(f"{path}?api-version=2022-08-01", json=SERVICE_BODY).status_code in (200, 201)
            own_cluster.stop("immediate")
            answer = http.post(f"{path}/tenant/access/regenerateSecondaryKey?api-version=2022-08-01")
            ready = http.get("/readyz")
            own_cluster.start()
            back = time.monotonic()
            while http.get("/readyz").status_code != 200:
                assert time.monotonic() - back < RECOVERY_LIMIT, "readiness did not come back"
                time.sleep(0.05)
            after = http.post(f"{path}/tenant/access/regenerateSecondaryKey?api-version=2022-08-01")
    finally:
        server.stop()
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "ServiceUnavailable"
    assert int(answer.headers["retry-after"]) >= 1
    assert ready.status_code == 503
    assert ready.json()["error"]["code"] == "ServiceUnavailable"
    assert after.status_code in (200, 204), after.text
