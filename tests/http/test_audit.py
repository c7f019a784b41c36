"""Every rotation has exactly one audit record, written in the same transaction as the rotation."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.backends import DbServer
from tests.conftest import API, SERVICE_BODY, service_path


def _audit(http: httpx.Client, service: str, **params: str) -> list[dict[str, object]]:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    response = http.get(f"{service}/auditEvents?{API}&{query}")
    assert response.status_code == 200, response.text
    records: list[dict[str, object]] = response.json()["data"]
    return records


def test_a_rotation_is_recorded_with_its_versions(http: httpx.Client, service: str) -> None:
    rotation = http.post(f"{service}/tenant/access/regenerateSecondaryKey?{API}").json()["data"]
    records = _audit(http, service, operation="access.regenerate_secondary_key")
    assert len(records) == 1
    record = records[0]
    assert record["new_version_id"] == rotation["id"]
    assert record["old_version_id"] == rotation["previous_id"]
    assert record["outcome"] == "success"
    assert record["target"] == f"{service}/tenant/access"
    assert record["client"] == "127.0.0.1"
    assert record["request_id"]


def test_secret_reads_and_changes_are_recorded(http: httpx.Client, service: str) -> None:
    http.post(f"{service}/tenant/access/listSecrets?{API}")
    http.patch(f"{service}/tenant/access?{API}", json={"properties": {"enabled": True}}, headers={"If-Match": "*"})
    operations = [r["operation"] for r in _audit(http, service)]
    assert operations == ["services.create_or_update", "access.list_secrets", "access.update"]


def test_concurrent_rotations_have_exactly_one_record_each(http: httpx.Client, service: str) -> None:
    url = f"{http.base_url}{service}/tenant/access/regeneratePrimaryKey?{API}"
    with ThreadPoolExecutor(12) as pool:
        ids = list(pool.map(lambda _: httpx.post(url, timeout=20, headers=http.headers).json()["data"]["id"],
                            range(24)))
    records = _audit(http, service, operation="access.regenerate_primary_key")
    assert len(records) == 24
    assert sorted(r["new_version_id"] for r in records) == sorted(ids)  # type: ignore[type-var]


def test_time_filters_and_paging(http: httpx.Client, service: str) -> None:
    for _ in range(3):
        http.post(f"{service}/tenant/access/regenerateSecondaryKey?{API}")
    everything = _audit(http, service)
    assert len(everything) == 4
    middle = str(everything[2]["created_at"])
    assert [r["id"] for r in _audit(http, service, since=middle)] == [r["id"] for r in everything[2:]]
    assert [r["id"] for r in _audit(http, service, until=middle)] == [r["id"] for r in everything[:2]]
    assert [r["id"] for r in _audit(http, service, **{"$top": "1", "$skip": "1"})] == [everything[1]["id"]]
    bad = http.get(f"{service}/auditEvents?{API}&since=yesterday")
    assert bad.status_code == 400
    assert bad.json()["error"]["details"][0]["field"] == "query.since"


def test_a_failed_audit_write_leaves_the_key_unchanged(fresh_server: DbServer) -> None:
    path = service_path("audit-fault")
    with httpx.Client(base_url=fresh_server.url, headers=fresh_server.auth()) as http:
        assert http.put(f"{path}?{API}", json=SERVICE_BODY).status_code == 201
        before = http.post(f"{path}/tenant/access/listSecrets?{API}").json()["data"]
        # A real fault in the real database: the audit table refuses every insert.
        fresh_server.database.refuse_inserts("audit_events")
        refused = http.post(f"{path}/tenant/access/regenerateSecondaryKey?{API}")
        assert refused.status_code >= 500
        assert refused.json()["success"] is False
        # Secrets are not handed out without their audit record either.
        assert http.post(f"{path}/tenant/access/listSecrets?{API}").status_code >= 500
        fresh_server.database.allow_inserts("audit_events")
        after = http.post(f"{path}/tenant/access/listSecrets?{API}").json()["data"]
        assert after["secondary_key"] == before["secondary_key"]
        assert after["secondary_key_version_id"] == before["secondary_key_version_id"]
        assert after["etag"] == before["etag"]


def test_a_refusal_is_visible_at_once_as_a_summary_and_the_kind_filter_separates_it(
    http: httpx.Client, service: str,
) -> None:
    with httpx.Client(base_url=http.base_url) as anonymous:
        assert anonymous.get(f"{service}/tenant/access?{API}").status_code == 401
        records = _audit(http, service, kind="refusals")
        assert [(r["principal"], r["status"], r["outcome"], r["count"]) for r in records] == \
            [("unauthenticated", 401, "denied", 1)]
        # Later refusals of the same minute and address add to its count (flushed every few seconds):
        # no new record, so they cannot bury the rotations.
        assert anonymous.get(f"{service}/tenant/access?{API}").status_code == 401
        # A service that does not exist gets nothing filed under its name.
        assert anonymous.get(f"{service}-missing/tenant/access?{API}").status_code == 401
    assert len(_audit(http, service, kind="refusals")) == 1
    assert _audit(http, f"{service}-missing") == []
    assert [r["operation"] for r in _audit(http, service, kind="changes")] == ["services.create_or_update"]
    http.post(f"{service}/tenant/access/listSecrets?{API}")
    assert [r["operation"] for r in _audit(http, service, kind="reads")] == ["access.list_secrets"]
    bad = http.get(f"{service}/auditEvents?{API}&kind=everything")
    assert bad.status_code == 400
    assert bad.json()["error"]["details"][0]["field"] == "query.kind"
