"""The served OpenAPI document describes what the server really answers."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema
import pytest
from referencing import Registry, Resource

from tests.conftest import API, SERVICE_BODY, provider


@pytest.fixture(scope="module")
def document(seed_server: Any) -> dict[str, Any]:
    response = httpx.get(f"{seed_server.url}/openapi.json")
    assert response.status_code == 200
    doc: dict[str, Any] = response.json()
    return doc


def _validate(document: dict[str, Any], template: str, method: str, response: httpx.Response) -> None:
    operation = document["paths"][template][method.lower()]
    spec = operation["responses"].get(str(response.status_code))
    assert spec is not None, f"{method} {template} answered {response.status_code}, which is not documented"
    content = spec.get("content")
    if content is None:
        assert response.content == b""
        return
    schema = content["application/json"]["schema"]
    registry: Registry[Any] = Registry().with_resource("urn:doc", Resource.opaque(document))
    # Local refs ("#/components/...") point into the whole document, registered as urn:doc.
    validator = jsonschema.Draft202012Validator(_rebase(schema), registry=registry)
    validator.validate(response.json())
    for header, declared in spec.get("headers", {}).items():
        if declared.get("required", True):  # an optional header (Idempotent-Replayed) may be absent
            assert header.lower() in response.headers, f"{header} missing from {method} {template}"


def _rebase(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: ("urn:doc" + v if k == "$ref" and v.startswith("#") else _rebase(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_rebase(v) for v in node]
    return node


def test_the_document_lists_exactly_the_served_routes(document: dict[str, Any], tmp_path: Any) -> None:
    from tenant_access.config import Settings
    from tenant_access.http.app import create_app

    app = create_app(Settings(data_dir=tmp_path))
    documented = {(path, method.upper()) for path, ops in document["paths"].items() for method in ops}
    assert documented == {(r.path, r.method) for r in app.routes}
    assert ("/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.ApiManagement"
            "/service/{serviceName}/tenant/{accessName}/regenerateSecondaryKey", "POST") in documented


def test_real_responses_match_the_document(http: httpx.Client, document: dict[str, Any]) -> None:
    calls = documented_calls()
    svc = calls[0][1]
    s_t = calls[0][2]
    statuses = set()
    for method, url, template, kwargs in calls:
        separator = "&" if "?" in url else "?"
        response = http.request(method, f"{url}{separator}{API}", **kwargs)
        statuses.add(response.status_code)
        _validate(document, template, method, response)
    assert statuses >= {200, 201, 400, 404, 409, 412, 415}
    for path in ("/healthz", "/readyz", "/openapi.json"):
        _validate(document, path, "GET", http.get(path))
    unauthenticated = httpx.get(f"{http.base_url}{svc}?{API}")
    _validate(document, s_t, "GET", unauthenticated)


DOCUMENTED = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.ApiManagement"


def documented_calls() -> list[tuple[str, str, str, dict[str, Any]]]:
    """(method, url, route template, request options): every route, with answers from 2xx to 415.
    Shared by the seed and the Azure document tests, so both documents face the same requests."""
    prefix = provider("openapi-rg")
    svc = f"{prefix}/service/doc-svc"
    tenant = DOCUMENTED
    s_t = tenant + "/service/{serviceName}"
    a_t = s_t + "/tenant/{accessName}"
    return [
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
