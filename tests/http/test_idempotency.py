"""Idempotency keys on the regenerate operations, over a real server, on every storage backend."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.conftest import API


def _audit(http: httpx.Client, service: str, operation: str) -> list[dict[str, object]]:
    records: list[dict[str, object]] = http.get(f"{service}/auditEvents?{API}&operation={operation}").json()["data"]
    return records


def test_a_retry_with_the_same_key_answers_the_first_outcome_and_rotates_nothing(
        http: httpx.Client, service: str) -> None:
    url = f"{service}/tenant/access/regenerateSecondaryKey?{API}"
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = http.post(url, headers=key)
    assert first.status_code == 200, first.text
    assert "idempotent-replayed" not in first.headers
    secrets = http.post(f"{service}/tenant/access/listSecrets?{API}").json()["data"]
    again = http.post(url, headers=key)
    assert again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["data"] == first.json()["data"]
    after = http.post(f"{service}/tenant/access/listSecrets?{API}").json()["data"]
    assert after["secondary_key"] == secrets["secondary_key"]
    assert after["etag"] == secrets["etag"]
    assert len(_audit(http, service, "access.regenerate_secondary_key")) == 1
    # Without a key, or with a new one, every request rotates.
    assert http.post(url).json()["data"]["id"] != first.json()["data"]["id"]
    assert http.post(url, headers={"Idempotency-Key": str(uuid.uuid4())}).headers.get("idempotent-replayed") is None
    assert len(_audit(http, service, "access.regenerate_secondary_key")) == 3


def test_concurrent_requests_with_one_key_rotate_once(http: httpx.Client, service: str) -> None:
    url = f"{http.base_url}{service}/tenant/gitAccess/regeneratePrimaryKey?{API}"
    headers = {**http.headers, "Idempotency-Key": "concurrent-" + uuid.uuid4().hex}

    def send(_: int) -> httpx.Response:
        return httpx.post(url, headers=headers, timeout=10)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, range(8)))
    assert {a.status_code for a in answers} == {200}
    assert len({a.json()["data"]["id"] for a in answers}) == 1
    assert sum(a.headers.get("idempotent-replayed") == "true" for a in answers) == 7
    assert len(_audit(http, service, "access.regenerate_primary_key")) == 1


def test_a_key_reused_for_another_request_is_refused(http: httpx.Client, service: str) -> None:
    key = {"Idempotency-Key": "reused-" + uuid.uuid4().hex}
    assert http.post(f"{service}/tenant/access/regeneratePrimaryKey?{API}", headers=key).status_code == 200
    before = http.get(f"{service}/tenant/access?{API}").json()["data"]
    for other in ("tenant/access/regenerateSecondaryKey", "tenant/gitAccess/regeneratePrimaryKey",
                  "tenant/access/git/regeneratePrimaryKey"):
        refused = http.post(f"{service}/{other}?{API}", headers=key)
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["code"] == "CONFLICT"
    assert http.get(f"{service}/tenant/access?{API}").json()["data"] == before


def test_keys_belong_to_their_principal(http: httpx.Client, service: str, seed_server: object) -> None:
    key = {"Idempotency-Key": "shared-" + uuid.uuid4().hex}
    url = f"{service}/tenant/access/regenerateSecondaryKey?{API}"
    mine = http.post(url, headers=key).json()["data"]["id"]
    token = seed_server.token(sub="someone-else")  # type: ignore[attr-defined]
    theirs = http.post(url, headers={**key, "Authorization": f"Bearer {token}"})
    assert theirs.status_code == 200
    assert "idempotent-replayed" not in theirs.headers
    assert theirs.json()["data"]["id"] != mine


def test_malformed_keys_are_refused(http: httpx.Client, service: str) -> None:
    url = f"{service}/tenant/access/regenerateSecondaryKey?{API}"
    for bad in ("x" * 129, "tab\there", "é".encode().decode("latin-1")):
        response = http.post(url, headers={"Idempotency-Key": bad.encode("latin-1")})  # type: ignore[dict-item]
        assert response.status_code == 400, (bad, response.text)
        assert response.json()["error"]["details"][0]["field"] == "header.Idempotency-Key"
    twice = http.post(url, headers=[("Idempotency-Key", "a"), ("Idempotency-Key", "b")])
    assert twice.status_code == 400
    assert len(_audit(http, service, "access.regenerate_secondary_key")) == 0
