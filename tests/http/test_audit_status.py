"""An audit record says the status the client received, in both wire formats.

In Azure mode a regeneration answers 204 (and a tenant-access PATCH of an api-version before
2020-12-01 answers 204 too); the records once said 200 there, because the use case assumed the seed
format's answer.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import SERVICE_BODY, service_path
from tests.serverproc import ServerProcess

V = "api-version=2024-05-01"


@pytest.fixture(scope="module")
def azure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    server = ServerProcess(tmp_path_factory.mktemp("audit-status"), ["--api-style", "azure"]).start()
    try:
        with httpx.Client(base_url=server.url, headers=server.auth(), timeout=20) as http:
            yield http
    finally:
        server.stop()


def _statuses(http: httpx.Client, svc: str) -> dict[str, list[int]]:
    listing = http.get(f"{svc}/auditEvents?{V}")
    assert listing.status_code == 200, listing.text
    found: dict[str, list[int]] = {}
    for record in listing.json()["value"]:
        found.setdefault(record["operation"], []).append(record["status"])
    return found


def test_azure_mode_records_what_it_answered(azure: httpx.Client) -> None:
    svc = service_path("audit-status-svc")
    assert azure.put(f"{svc}?{V}", json=SERVICE_BODY).status_code == 201
    answered = {
        "access.regenerate_secondary_key": azure.post(f"{svc}/tenant/access/regenerateSecondaryKey?{V}"),
        "access.regenerate_primary_key": azure.post(f"{svc}/tenant/access/regeneratePrimaryKey?{V}"),
        "access.git_regenerate_secondary_key": azure.post(f"{svc}/tenant/access/git/regenerateSecondaryKey?{V}"),
        "access.list_secrets": azure.post(f"{svc}/tenant/access/listSecrets?{V}"),
    }
    old_patch = azure.patch(f"{svc}/tenant/access?api-version=2019-12-01", json={"properties": {"enabled": True}},
                            headers={"If-Match": "*"})
    new_patch = azure.patch(f"{svc}/tenant/access?{V}", json={"properties": {"enabled": False}},
                            headers={"If-Match": "*"})
    recorded = _statuses(azure, svc)
    for operation, response in answered.items():
        assert recorded[operation] == [response.status_code], operation
    assert answered["access.regenerate_secondary_key"].status_code == 204
    assert (old_patch.status_code, new_patch.status_code) == (204, 200)
    assert recorded["access.update"] == [204, 200]
    assert recorded["services.create_or_update"] == [201]
