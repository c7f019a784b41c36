"""The seed operation, exactly as ``../shared/seed/`` documents it, over a real server process."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.conftest import API, SERVICE_BODY, service_path
from tests.serverproc import ServerProcess


def _secrets(http: httpx.Client, service: str, access: str = "access") -> dict[str, str]:
    response = http.post(f"{service}/tenant/{access}/listSecrets?{API}")
    assert response.status_code == 200, response.text
    data: dict[str, str] = response.json()["data"]
    return data


def test_seed_call_answers_the_documented_envelope(http: httpx.Client, service: str) -> None:
    response = http.post(
        f"{service}/tenant/access/regenerateSecondaryKey?{API}",
        headers={"accept": "application/json", "content-type": "application/json"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["success"] is True
    assert set(body) == {"success", "data"}
    data = body["data"]
    assert isinstance(data["id"], str) and data["id"]
    created = dt.datetime.fromisoformat(data["created_at"])
    assert data["created_at"].endswith("Z")
    assert abs((dt.datetime.now(dt.UTC) - created).total_seconds()) < 10
    assert data["key"] == "secondary"
    assert data["access_name"] == "access"
    assert "secondary_key" not in data and "primary_key" not in data
    assert response.headers["x-request-id"]


def test_seed_call_ids_are_unique_across_calls(http: httpx.Client, service: str) -> None:
    ids = set()
    for _ in range(5):
        response = http.post(f"{service}/tenant/access/regenerateSecondaryKey?{API}")
        ids.add(response.json()["data"]["id"])
    assert len(ids) == 5


def test_seed_call_changes_the_secondary_key_and_not_the_primary(http: httpx.Client, service: str) -> None:
    before = _secrets(http, service)
    rotation = http.post(f"{service}/tenant/access/regenerateSecondaryKey?{API}").json()["data"]
    after = _secrets(http, service)
    assert after["secondary_key"] != before["secondary_key"]
    assert after["primary_key"] == before["primary_key"]
    assert after["secondary_key_version_id"] == rotation["id"]
    assert rotation["previous_id"] == before["secondary_key_version_id"]
    assert after["primary_key_version_id"] == before["primary_key_version_id"]


def test_keys_are_64_random_bytes_base64(http: httpx.Client, service: str) -> None:
    import base64

    keys = _secrets(http, service)
    for name in ("primary_key", "secondary_key"):
        assert len(base64.b64decode(keys[name], validate=True)) == 64
    assert keys["primary_key"] != keys["secondary_key"]
    git = _secrets(http, service, "gitAccess")
    assert {git["primary_key"], git["secondary_key"]}.isdisjoint({keys["primary_key"], keys["secondary_key"]})


def test_rotated_keys_survive_a_restart(fresh_server: ServerProcess) -> None:
    path = service_path("persisted")
    with httpx.Client(base_url=fresh_server.url, headers=fresh_server.auth()) as http:
        assert http.put(f"{path}?{API}", json=SERVICE_BODY).status_code == 201
        http.post(f"{path}/tenant/access/regenerateSecondaryKey?{API}")
        http.post(f"{path}/tenant/gitAccess/regeneratePrimaryKey?{API}")
        before = {a: _secrets(http, path, a) for a in ("access", "gitAccess")}
    fresh_server.restart()
    with httpx.Client(base_url=fresh_server.url, headers=fresh_server.auth()) as http:
        after = {a: _secrets(http, path, a) for a in ("access", "gitAccess")}
    assert after == before


def test_concurrent_regenerations_each_get_their_own_version(http: httpx.Client, service: str) -> None:
    """16 at once: 16 distinct versions, forming one unbroken chain, the last of which is stored."""
    initial = _secrets(http, service)["secondary_key_version_id"]
    url = f"{http.base_url}{service}/tenant/access/regenerateSecondaryKey?{API}"

    def rotate(_: int) -> dict[str, str]:
        response = httpx.post(url, timeout=20, headers=http.headers)
        assert response.status_code == 200, response.text
        data: dict[str, str] = response.json()["data"]
        return data

    with ThreadPoolExecutor(16) as pool:
        rotations = list(pool.map(rotate, range(16)))
    ids = [r["id"] for r in rotations]
    assert len(set(ids)) == 16
    # Every rotation replaced exactly the version before it: no two saw the same predecessor.
    previous = {r["previous_id"]: r["id"] for r in rotations}
    assert len(previous) == 16
    chain, cursor = [], initial
    while cursor in previous:
        cursor = previous[cursor]
        chain.append(cursor)
    assert sorted(chain) == sorted(ids)
    assert _secrets(http, service)["secondary_key_version_id"] == chain[-1]
