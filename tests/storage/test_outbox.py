"""The transactional outbox on both stores: an acknowledged change has its event, in commit order
per configuration; a change that rolled back has none.

The server runs with its emulator controls on, where every change writes its events; elsewhere a
change writes them only when wanted (a subscription on its service, or a running tail), which
``tests/events/test_cli.py`` checks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.backends import Backend, DbServer
from tests.conftest import API, SERVICE_BODY, service_path


def _events(server: DbServer) -> list[tuple[str, str, int, dict[str, object]]]:
    rows = server.database.execute("SELECT type, order_key, position, body FROM event_outbox ORDER BY id")
    return [(r[0].rsplit(".", 1)[1], r[1], int(r[2]), json.loads(r[3])) for r in rows]


@pytest.fixture
def fresh_server(db_backend: Backend, tmp_path: Path) -> Iterator[DbServer]:
    server = db_backend.server(tmp_path / "data", ["--emulator-controls"])
    server.start()
    yield server
    server.stop()
    server.database.drop()


def test_every_acknowledged_change_has_its_event_in_commit_order(fresh_server: DbServer) -> None:
    svc = service_path("outbox1")
    with httpx.Client(base_url=fresh_server.url, headers=fresh_server.auth(), timeout=30) as http:
        assert http.put(f"{svc}?{API}", json=SERVICE_BODY).status_code == 201
        versions = []
        for _ in range(5):
            answer = http.post(f"{svc}/tenant/access/regenerateSecondaryKey?{API}")
            assert answer.status_code == 200, answer.text
            versions.append(answer.json()["data"]["id"])
        assert http.patch(f"{svc}/tenant/access?{API}", headers={"If-Match": "*"},
                          json={"properties": {"enabled": True}}).status_code == 200
        keys = http.post(f"{svc}/tenant/access/listSecrets?{API}").json()["data"]
        assert http.delete(f"{svc}?{API}").status_code == 200
    found = _events(fresh_server)
    assert [t for t, *_ in found] == ["ServiceCreated", *["KeyRegenerated"] * 5, "AccessEnabled", "ServiceDeleted"]
    rotations = [f for f in found if f[0] == "KeyRegenerated"]
    assert [f[3]["data"]["newVersionId"] for f in rotations] == versions  # type: ignore[index]
    assert [f[3]["data"]["oldVersionId"] for f in rotations[1:]] == versions[:-1]  # type: ignore[index]
    assert [f[2] for f in found if f[1].endswith("/tenant/access")] == [1, 2, 3, 4, 5, 6]
    dumped = json.dumps([f[3] for f in found])
    assert keys["primary_key"] not in dumped  # no key material in any event
    assert keys["secondary_key"] not in dumped


def test_a_rotation_that_rolled_back_has_no_event(fresh_server: DbServer) -> None:
    svc = service_path("outbox2")
    with httpx.Client(base_url=fresh_server.url, headers=fresh_server.auth(), timeout=30) as http:
        assert http.put(f"{svc}?{API}", json=SERVICE_BODY).status_code == 201
        before = http.get(f"{svc}/tenant/access?{API}").json()["data"]
        fresh_server.database.refuse_inserts("audit_events")
        try:
            refused = http.post(f"{svc}/tenant/access/regenerateSecondaryKey?{API}")
        finally:
            fresh_server.database.allow_inserts("audit_events")
        assert refused.status_code >= 500
        assert http.get(f"{svc}/tenant/access?{API}").json()["data"] == before
        fresh_server.database.refuse_inserts("event_outbox")
        try:
            refused = http.post(f"{svc}/tenant/access/regenerateSecondaryKey?{API}")
        finally:
            fresh_server.database.allow_inserts("event_outbox")
        assert refused.status_code >= 500
        assert http.get(f"{svc}/tenant/access?{API}").json()["data"] == before  # no event, no rotation
        assert http.post(f"{svc}/tenant/access/regenerateSecondaryKey?{API}").status_code == 200
    assert [t for t, *_ in _events(fresh_server)] == ["ServiceCreated", "KeyRegenerated"]
