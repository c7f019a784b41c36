"""What a curl script written against Azure sees: status lines, headers and raw bodies.

The SDK tests prove the SDK is satisfied; these pin the details it does not look at (request-id
headers, error envelopes, paging links) and the ones scripts rely on.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.compat import spec
from tests.compat.conftest import SERVICE_BODY, service_path, unique
from tests.serverproc import ServerProcess

V = {"api-version": "2024-05-01"}
ERROR_SCHEMAS = {
    # The 2024-05-01 operations answer errors with common-types v5; 2022-08-01 with APIM's own shape.
    version: (folder / "apimtenant.json").resolve().as_uri() + "#/paths/"
    + "~1subscriptions~1%7BsubscriptionId%7D~1resourceGroups~1%7BresourceGroupName%7D~1providers"
    + "~1Microsoft.ApiManagement~1service~1%7BserviceName%7D~1tenant~1%7BaccessName%7D/get/responses/default/schema"
    for version, folder in spec.VERSION_DIRS.items()
}


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert "retry-after" not in response.headers  # azure-core would retry the request
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    assert spec.schema_problems(ERROR_SCHEMAS["2024-05-01"], body) == []
    # The older APIM error body has no top-level "target"; clients ignore keys they do not know.
    assert set(spec.schema_problems(ERROR_SCHEMAS["2022-08-01"], body)) <= {
        "error.target: not declared in the specification"
    }
    error: dict[str, Any] = body["error"]
    return error


# -- request tracking ------------------------------------------------------------------------------


def test_every_answer_carries_a_request_id_and_a_correlation_id(https: httpx.Client, service: tuple[str, str]) -> None:
    rg, name = service
    for response in (
        https.get(f"{service_path(rg, name)}/tenant/access", params=V),
        https.get(f"{service_path(rg, name)}/tenant/nope", params=V),
        https.get("/nowhere"),
        https.post(f"{service_path(rg, name)}/tenant/access/regenerateSecondaryKey", params=V),
    ):
        request_id = response.headers["x-ms-request-id"]
        assert str(uuid.UUID(request_id)) == request_id
        # With no correlation id from the caller, the server starts one: this request's id.
        assert response.headers["x-ms-correlation-request-id"] == request_id
        assert "x-ms-client-request-id" not in response.headers
        assert "x-request-id" not in response.headers  # the seed style's header, not Azure's


def test_client_and_correlation_ids_are_echoed(https: httpx.Client, service: tuple[str, str]) -> None:
    rg, name = service
    client_id, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    response = https.get(f"{service_path(rg, name)}/tenant", params=V, headers={
        "x-ms-client-request-id": client_id, "x-ms-correlation-request-id": correlation,
    })
    assert response.status_code == 200
    assert response.headers["x-ms-client-request-id"] == client_id
    assert response.headers["x-ms-correlation-request-id"] == correlation
    assert response.headers["x-ms-request-id"] not in (client_id, correlation)
    odd = https.get(f"{service_path(rg, name)}/tenant", params=V, headers={"x-ms-client-request-id": "x" * 500})
    assert "x-ms-client-request-id" not in odd.headers


# -- success answers -------------------------------------------------------------------------------


def test_service_put_answers_201_then_200_with_succeeded(https: httpx.Client) -> None:
    rg, name = unique("rg"), unique("svc")
    path = service_path(rg, name)
    first = https.put(path, params=V, json=SERVICE_BODY)
    assert first.status_code == 201
    body = first.json()
    assert body["id"] == path
    assert body["name"] == name
    assert body["type"] == "Microsoft.ApiManagement/service"
    assert body["properties"]["provisioningState"] == "Succeeded"
    assert first.headers["etag"] == f'"{body["etag"]}"'
    assert "retry-after" not in first.headers
    assert "location" not in first.headers
    assert "azure-asyncoperation" not in first.headers
    second = https.put(path, params=V, json=SERVICE_BODY)
    assert second.status_code == 200
    assert second.json()["etag"] == body["etag"]  # nothing changed, so neither did the tag


def test_delete_answers_200_then_204_without_a_body(https: httpx.Client, service: tuple[str, str]) -> None:
    path = service_path(*service)
    first = https.delete(path, params=V)
    assert (first.status_code, first.content) == (200, b"")
    second = https.delete(path, params=V)
    assert (second.status_code, second.content) == (204, b"")
    assert https.get(f"{path}/tenant/access", params=V).status_code == 404


def test_access_answers(https: httpx.Client, service: tuple[str, str]) -> None:
    access = f"{service_path(*service)}/tenant/access"
    got = https.get(access, params=V)
    assert got.status_code == 200
    assert got.json() == {
        "id": access, "type": "Microsoft.ApiManagement/service/tenant", "name": "access",
        "properties": {"principalId": "integration", "enabled": False},
    }
    etag = got.headers["etag"]
    assert etag.startswith('"')
    assert etag.endswith('"')

    head = https.head(access, params=V)
    assert (head.status_code, head.content, head.headers["etag"]) == (200, b"", etag)

    secrets = https.post(f"{access}/listSecrets", params=V)
    assert secrets.status_code == 200
    assert secrets.headers["etag"] == etag
    assert set(secrets.json()) == {"id", "principalId", "primaryKey", "secondaryKey", "enabled"}

    for op in ("regeneratePrimaryKey", "regenerateSecondaryKey", "git/regeneratePrimaryKey",
               "git/regenerateSecondaryKey"):
        regen = https.post(f"{access}/{op}", params=V)
        assert (regen.status_code, regen.content) == (204, b""), op
        assert "content-type" not in regen.headers

    patched = https.patch(access, params=V, headers={"If-Match": "*"}, json={"properties": {"enabled": True}})
    assert patched.status_code == 200
    assert patched.json()["properties"]["enabled"] is True
    assert patched.headers["etag"] != etag


def test_patch_answers_204_before_2020_12_01(https: httpx.Client, service: tuple[str, str]) -> None:
    """The specification's history: tenant PATCH had no response body until 2020-12-01."""
    access = f"{service_path(*service)}/tenant/access"
    old = https.patch(access, params={"api-version": "2019-12-01"}, headers={"If-Match": "*"},
                      json={"properties": {"enabled": True}})
    assert (old.status_code, old.content) == (204, b"")
    new = https.patch(access, params={"api-version": "2020-12-01"}, headers={"If-Match": "*"},
                      json={"properties": {"enabled": False}})
    assert new.status_code == 200
    assert new.json()["properties"]["enabled"] is False


def test_refused_credentials_answer_in_arm_shape(https: httpx.Client, service: tuple[str, str]) -> None:
    """Which tokens are valid is the security layer's business; here only the shape of the refusal."""
    access = f"{service_path(*service)}/tenant/access"
    assert https.get(access, params=V).request.headers["authorization"].startswith("Bearer ")
    refused = https.get(access, params=V, headers={"Authorization": "Bearer not-a-token"})
    _error(refused, 401, "AuthenticationFailed")
    assert refused.headers["www-authenticate"].startswith("Bearer ")


# -- errors ----------------------------------------------------------------------------------------


def test_missing_and_invalid_api_versions(https: httpx.Client, service: tuple[str, str]) -> None:
    access = f"{service_path(*service)}/tenant/access"
    missing = _error(https.get(access), 400, "MissingApiVersionParameter")
    assert missing["message"] == "The api-version query parameter (?api-version=) is required for all requests."
    _error(https.get(access, params={"api-version": "yesterday"}), 400, "InvalidApiVersionParameter")
    # listSecrets appeared in 2019-12-01: older versions do not have it.
    _error(https.post(f"{access}/listSecrets", params={"api-version": "2019-01-01"}), 400,
           "InvalidApiVersionParameter")


def test_validation_errors_name_every_field_in_arm_shape(https: httpx.Client) -> None:
    path = "/subscriptions/not-a-guid/resourceGroups/rg/providers/Microsoft.ApiManagement/service/-bad-/tenant/nope"
    error = _error(https.get(path, params=V), 400, "ValidationError")
    assert error["target"] == "path.subscriptionId"
    assert {d["target"] for d in error["details"]} == {"path.subscriptionId", "path.serviceName", "path.accessName"}
    for detail in error["details"]:
        assert set(detail) == {"code", "target", "message"}
        assert detail["code"] == "ValidationError"


def test_body_errors(https: httpx.Client, service: tuple[str, str]) -> None:
    access = f"{service_path(*service)}/tenant/access"
    error = _error(https.patch(access, params=V, headers={"If-Match": "*"}, json={"properties": {"enabled": "yes"}}),
                   400, "ValidationError")
    assert error["details"][0]["target"] == "body.properties.enabled"
    error = _error(https.patch(access, params=V, json={"properties": {"enabled": True}}), 400, "ValidationError")
    assert error["details"][0]["target"] == "header.If-Match"
    _error(https.patch(access, params=V, headers={"If-Match": '"stale"'}, json={"properties": {"enabled": True}}),
           412, "PreconditionFailed")


def test_missing_service_and_unknown_routes(https: httpx.Client) -> None:
    missing = service_path(unique("rg"), unique("missing"))
    error = _error(https.get(f"{missing}/tenant/access", params=V), 404, "ResourceNotFound")
    assert "Microsoft.ApiManagement/service/" in error["message"]
    _error(https.get(missing, params=V), 404, "ResourceNotFound")
    # (/subscriptions itself is served in Azure mode since the Azure CLI needs it: tests/http/test_arm.py.)
    _error(https.get("/subscriptions/6b1d3c2a-0e5f-4a7b-9c8d-1e2f3a4b5c6d/providers/Microsoft.Web/sites", params=V),
           404, "NotFound")
    _error(https.get("/providers", params=V), 404, "NotFound")
    not_allowed = https.put(f"{missing}/tenant/access/listSecrets", params=V)
    _error(not_allowed, 405, "MethodNotAllowed")
    assert not_allowed.headers["allow"] == "POST"


# -- paging ----------------------------------------------------------------------------------------


def _follow(https: httpx.Client, url: str, params: dict[str, str] | None = None) -> list[dict[str, Any]]:
    pages = []
    while url:
        response = https.get(url, params=params)
        assert response.status_code == 200, response.text
        pages.append(response.json())
        url, params = pages[-1].get("nextLink", ""), None
    return pages


def test_tenant_list_pages_with_top_and_skip(
    https: httpx.Client, service: tuple[str, str], azure_server: ServerProcess
) -> None:
    tenant = f"{service_path(*service)}/tenant"
    whole = https.get(tenant, params=V).json()
    assert whole["count"] == 2
    assert whole["nextLink"] == ""
    assert [a["name"] for a in whole["value"]] == ["access", "gitAccess"]

    pages = _follow(https, tenant, {**V, "$top": "1", "$filter": "name eq 'access'"})
    assert [[a["name"] for a in p["value"]] for p in pages] == [["access"], ["gitAccess"]]
    assert [p["count"] for p in pages] == [2, 2]
    first_link = pages[0]["nextLink"]
    assert first_link.startswith(f"{azure_server.url}{tenant}?")
    assert "$skip=1" in first_link
    assert "api-version=2024-05-01" in first_link
    assert pages[-1]["nextLink"] == ""

    beyond = https.get(tenant, params={**V, "$skip": "5"}).json()
    assert (beyond["value"], beyond["count"], beyond["nextLink"]) == ([], 2, "")


def test_service_list_pages(https: httpx.Client) -> None:
    rg = unique("rg")
    names = sorted(unique("svc") for _ in range(3))
    for name in names:
        assert https.put(service_path(rg, name), params=V, json=SERVICE_BODY).status_code == 201
    listing = service_path(rg, "x").rsplit("/", 1)[0]
    whole = https.get(listing, params=V).json()
    assert set(whole) == {"value"}  # ApiManagementServiceListResult has no count, and no link on the last page
    pages = _follow(https, listing, {**V, "$top": "2"})
    assert [len(p["value"]) for p in pages] == [2, 1]
    assert sorted(s["name"] for p in pages for s in p["value"]) == names
    assert "nextLink" not in pages[-1]


@pytest.mark.parametrize(("query", "target"), [
    ({"$top": "0"}, "query.$top"), ({"$top": "-1"}, "query.$top"), ({"$top": "two"}, "query.$top"),
    ({"$top": "1.5"}, "query.$top"), ({"$skip": "-1"}, "query.$skip"), ({"$top": "0", "$skip": "x"}, "query.$top"),
])
def test_bad_paging_parameters(
    https: httpx.Client, service: tuple[str, str], query: dict[str, str], target: str
) -> None:
    error = _error(https.get(f"{service_path(*service)}/tenant", params={**V, **query}), 400, "ValidationError")
    assert error["target"] == target
    assert {d["target"] for d in error["details"]} == {f"query.{k}" for k in query}


def test_the_seed_style_honours_paging_too(seed_server: ServerProcess) -> None:
    rg, name = unique("rg"), unique("svc")
    with httpx.Client(base_url=seed_server.url, timeout=10, headers=seed_server.auth()) as http:
        assert http.put(service_path(rg, name), params=V, json=SERVICE_BODY).status_code == 201
        tenant = f"{service_path(rg, name)}/tenant"
        page = http.get(tenant, params={**V, "$top": "1", "$skip": "1"})
        assert page.status_code == 200
        assert [a["name"] for a in page.json()["data"]] == ["gitAccess"]
        bad = http.get(tenant, params={**V, "$top": "0"})
        assert bad.status_code == 400
        assert bad.json()["error"]["code"] == "VALIDATION_ERROR"
        assert bad.json()["error"]["details"][0]["field"] == "query.$top"
