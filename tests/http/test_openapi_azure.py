"""The Azure-format OpenAPI document (served in ``--api-style azure``) describes what the server
really answers: the same calls as test_openapi.py, validated against the Azure document."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import API, SERVICE_BODY, provider
from tests.http.test_openapi import _validate
from tests.serverproc import ServerProcess


@pytest.fixture(scope="module")
def azure_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("azure-openapi"), ["--api-style", "azure"]).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def document(azure_server: ServerProcess) -> dict[str, Any]:
    response = httpx.get(f"{azure_server.url}/openapi.json")
    assert response.status_code == 200
    doc: dict[str, Any] = response.json()
    assert "Azure" in doc["info"]["title"]
    return doc


def test_real_azure_responses_match_the_document(azure_server: ServerProcess, document: dict[str, Any]) -> None:
    prefix = provider("openapi-rg")
    svc = f"{prefix}/service/doc-svc"
    tenant = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.ApiManagement"
    s_t = tenant + "/service/{serviceName}"
    a_t = s_t + "/tenant/{accessName}"
    calls: list[tuple[str, str, str, dict[str, Any]]] = [
        ("PUT", svc, s_t, {"json": SERVICE_BODY}),
        ("PUT", svc, s_t, {"json": SERVICE_BODY}),
        ("PUT", svc, s_t, {"json": {**SERVICE_BODY, "location": "Mars"}}),
        ("PUT", svc, s_t, {"json": {}}),
        ("GET", svc, s_t, {}),
        ("GET", f"{prefix}/service", tenant + "/service", {}),
        ("GET", f"{prefix}/service?$top=1&", tenant + "/service", {}),
        ("GET", f"{svc}/tenant", s_t + "/tenant", {}),
        ("GET", f"{svc}/tenant/access", a_t, {}),
        ("GET", f"{svc}/tenant/nope", a_t, {}),
        ("HEAD", f"{svc}/tenant/access", a_t, {}),
        ("PUT", f"{svc}/tenant/access", a_t, {"json": {"properties": {"enabled": True}}, "headers": {"If-Match": "*"}}),
        ("PUT", f"{svc}/tenant/access", a_t, {"json": {"properties": {}}, "headers": {"If-Match": '"old"'}}),
        ("PATCH", f"{svc}/tenant/gitAccess", a_t,
         {"json": {"properties": {"enabled": False}}, "headers": {"If-Match": "*"}}),
        ("PATCH", f"{svc}/tenant/gitAccess", a_t,
         {"content": b"x", "headers": {"If-Match": "*", "content-type": "text/plain"}}),
        ("POST", f"{svc}/tenant/access/listSecrets", a_t + "/listSecrets", {}),
        ("POST", f"{svc}/tenant/access/regeneratePrimaryKey", a_t + "/regeneratePrimaryKey", {}),
        ("POST", f"{svc}/tenant/access/regenerateSecondaryKey", a_t + "/regenerateSecondaryKey",
         {"headers": {"Idempotency-Key": "doc-1"}}),
        ("POST", f"{svc}/tenant/access/regenerateSecondaryKey", a_t + "/regenerateSecondaryKey",
         {"headers": {"Idempotency-Key": "doc-1"}}),
        ("POST", f"{svc}/tenant/access/regeneratePrimaryKey", a_t + "/regeneratePrimaryKey",
         {"headers": {"Idempotency-Key": "doc-1"}}),
        ("POST", f"{svc}/tenant/access/git/regeneratePrimaryKey", a_t + "/git/regeneratePrimaryKey", {}),
        ("POST", f"{svc}/tenant/gitAccess/git/regenerateSecondaryKey", a_t + "/git/regenerateSecondaryKey", {}),
        ("GET", f"{svc}/auditEvents", s_t + "/auditEvents", {}),
        ("DELETE", svc, s_t, {}),
        ("DELETE", svc, s_t, {}),
        ("POST", f"{svc}/tenant/access/regenerateSecondaryKey", a_t + "/regenerateSecondaryKey", {}),
    ]
    statuses = set()
    with httpx.Client(base_url=azure_server.url, headers=azure_server.auth(), timeout=10) as http:
        for method, url, template, kwargs in calls:
            separator = "&" if "?" in url else "?"
            response = http.request(method, f"{url}{separator}{API}", **kwargs)
            statuses.add(response.status_code)
            _validate(document, template, method, response)
        for path in ("/healthz", "/readyz", "/openapi.json"):
            _validate(document, path, "GET", http.get(path))
        unauthenticated = httpx.get(f"{azure_server.url}{svc}?{API}")
        _validate(document, s_t, "GET", unauthenticated)
    assert statuses >= {200, 201, 204, 400, 404, 409, 412, 415}
