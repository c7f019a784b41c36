"""Unknown routes and wrong methods answer in the seed envelope, never a framework default."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import API


@pytest.mark.parametrize(
    "path",
    ["/", "/nope", "/subscriptions", "/subscriptions/x/resourceGroups/y/providers/Microsoft.Web/sites/z",
     "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg1/providers/Microsoft.ApiManagement"
     "/service/svc/tenant/access/regenerateTertiaryKey",
     "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg1/providers/Microsoft.ApiManagement"
     "/service/svc/tenant/access/",
     "/%ff%fe"],
)
def test_unknown_routes(http: httpx.Client, path: str) -> None:
    response = http.get(f"{path}?{API}")
    assert response.status_code == 404
    body = response.json()
    assert body["success"] is False
    assert body["error"]["code"] == "NOT_FOUND"
    assert body["error"]["request_id"] == response.headers["x-request-id"]


@pytest.mark.parametrize(
    ("method", "suffix", "allow"),
    [
        ("DELETE", "/tenant/access", "GET, HEAD, PATCH, PUT"),
        ("GET", "/tenant/access/regenerateSecondaryKey", "POST"),
        ("PUT", "/tenant/access/listSecrets", "POST"),
        ("POST", "", "DELETE, GET, PUT"),
        ("OPTIONS", "/tenant", "GET"),
    ],
)
def test_wrong_methods(http: httpx.Client, service: str, method: str, suffix: str, allow: str) -> None:
    response = http.request(method, f"{service}{suffix}?{API}")
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    assert response.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


def test_missing_service_and_configuration(http: httpx.Client) -> None:
    path = ("/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg1/providers"
            "/Microsoft.ApiManagement/service/does-not-exist")
    for method, suffix in (("GET", ""), ("GET", "/tenant"), ("GET", "/tenant/access"),
                           ("POST", "/tenant/access/regenerateSecondaryKey"), ("POST", "/tenant/access/listSecrets"),
                           ("PATCH", "/tenant/access")):
        kwargs = {"json": {"properties": {"enabled": True}}, "headers": {"If-Match": "*"}} if method == "PATCH" else {}
        response = http.request(method, f"{path}{suffix}?{API}", **kwargs)  # type: ignore[arg-type]
        assert response.status_code == 404, (method, suffix)
        assert response.json()["error"]["code"] == "NOT_FOUND"
