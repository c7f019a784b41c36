"""Every validation rule answers 400 ``VALIDATION_ERROR`` naming the field, and changes nothing."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import API, SERVICE_BODY, SUBSCRIPTION


def _bad(response: httpx.Response, *fields: str) -> dict[str, object]:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["success"] is False
    assert body["error"]["code"] == "VALIDATION_ERROR"
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    named = [d["field"] for d in body["error"].get("details", [])]
    for field in fields:
        assert field in named, (field, named)
    error: dict[str, object] = body["error"]
    return error


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("", "required"),
        ("api-version=", "required"),
        ("api-version=latest", "YYYY-MM-DD"),
        ("api-version=2024-5-1", "YYYY-MM-DD"),
        ("api-version=2024-02-30", "2024-02-30 is not a calendar date"),
        ("api-version=2020-01-15", "not a known"),
        ("api-version=2024-05-01-gamma", "YYYY-MM-DD"),
        ("api-version=2024-05-01&api-version=2022-08-01", "more than once"),
    ],
)
def test_bad_api_versions(http: httpx.Client, service: str, query: str, reason: str) -> None:
    error = _bad(http.post(f"{service}/tenant/access/regenerateSecondaryKey?{query}"))
    assert any(reason in d["message"] or reason in str(error["message"]) for d in error["details"])  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("operation_path", "method", "version"),
    [
        ("/tenant/access", "GET", "2016-07-07"),  # tenant operations start at 2016-10-10
        ("/tenant/access/listSecrets", "POST", "2019-01-01"),  # listSecrets starts at 2019-12-01
        ("/tenant", "GET", "2019-12-01"),  # listing starts at 2020-12-01
    ],
)
def test_versions_older_than_the_operation(
    http: httpx.Client, service: str, operation_path: str, method: str, version: str
) -> None:
    error = _bad(http.request(method, f"{service}{operation_path}?api-version={version}"), "query.api-version")
    assert "exists from api-version" in error["details"][0]["message"]  # type: ignore[index]


@pytest.mark.parametrize("version", ["2016-10-10", "2019-12-01", "2021-04-01-preview", "2022-08-01", "2024-05-01"])
def test_every_known_version_of_the_operation_is_served(http: httpx.Client, service: str, version: str) -> None:
    response = http.post(f"{service}/tenant/access/regenerateSecondaryKey?api-version={version}")
    assert response.status_code == 200
    assert "x-served-api-version" not in response.headers


def test_a_newer_version_is_served_with_the_newest_behaviour(http: httpx.Client, service: str) -> None:
    response = http.post(f"{service}/tenant/access/regenerateSecondaryKey?api-version=2031-01-01")
    assert response.status_code == 200
    assert response.headers["x-served-api-version"] == "2026-09-01-preview"


ROOT = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg1/providers/Microsoft.ApiManagement/service"


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/subscriptions/not-a-guid/resourceGroups/rg1/providers/Microsoft.ApiManagement/service/svc1"
         "/tenant/access/regenerateSecondaryKey", "path.subscriptionId"),
        (f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{'r' * 91}/providers/Microsoft.ApiManagement/service/svc1"
         "/tenant/access/regenerateSecondaryKey", "path.resourceGroupName"),
        (f"/subscriptions/{SUBSCRIPTION}/resourceGroups/bad%20rg!/providers/Microsoft.ApiManagement/service/svc1"
         "/tenant/access/regenerateSecondaryKey", "path.resourceGroupName"),
        (f"{ROOT}/1svc/tenant/access/regenerateSecondaryKey", "path.serviceName"),
        (f"{ROOT}/svc-/tenant/access/regenerateSecondaryKey", "path.serviceName"),
        (f"{ROOT}/{'s' * 51}/tenant/access/regenerateSecondaryKey", "path.serviceName"),
        (f"{ROOT}/sv_c/tenant/access/regenerateSecondaryKey", "path.serviceName"),
        (f"{ROOT}/svc1/tenant/configuration/regenerateSecondaryKey", "path.accessName"),
        (f"{ROOT}/svc1/tenant/access%2F..%2Fx/regenerateSecondaryKey", "path.accessName"),
    ],
)
def test_path_parameter_rules(http: httpx.Client, path: str, field: str) -> None:
    _bad(http.post(f"{path}?{API}"), field)


def test_every_bad_field_is_named_at_once(http: httpx.Client) -> None:
    path = "/subscriptions/nope/resourceGroups/bad%20rg/providers/Microsoft.ApiManagement/service/-x/tenant/foo"
    error = _bad(http.get(path), "query.api-version", "path.subscriptionId", "path.resourceGroupName",
                 "path.serviceName", "path.accessName")
    assert len(error["details"]) == 5  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, ["body.location", "body.sku", "body.properties"]),
        ({**SERVICE_BODY, "location": 7}, ["body.location"]),
        ({**SERVICE_BODY, "sku": {"name": "Gold", "capacity": 1}}, ["body.sku.name"]),
        ({**SERVICE_BODY, "sku": {"name": "Developer", "capacity": "1"}}, ["body.sku.capacity"]),
        ({**SERVICE_BODY, "sku": {"name": "Developer", "capacity": True}}, ["body.sku.capacity"]),
        ({**SERVICE_BODY, "sku": {"name": "Developer", "capacity": -1}}, ["body.sku.capacity"]),
        ({**SERVICE_BODY, "properties": {"publisherEmail": "a@b.c"}}, ["body.properties.publisherName"]),
        ({**SERVICE_BODY, "properties": {"publisherEmail": "x" * 101, "publisherName": "n"}},
         ["body.properties.publisherEmail"]),
        ({**SERVICE_BODY, "tags": {"a": 1}}, ["body.tags.a"]),
        ([1, 2], ["body"]),
    ],
)
def test_service_body_rules(http: httpx.Client, body: object, fields: list[str]) -> None:
    path = f"{ROOT}/body-rules"
    _bad(http.put(f"{path}?{API}", json=body), *fields)
    assert http.get(f"{path}?{API}").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"properties": {"enabled": "yes"}}, "body.properties.enabled"),
        ({"properties": {"primaryKey": "short"}}, "body.properties.primaryKey"),
        ({"properties": {"secondaryKey": 12345}}, "body.properties.secondaryKey"),
        ({"properties": {"secondaryKey": "has spaces in it " * 3}}, "body.properties.secondaryKey"),
        ({"properties": {"principalId": "a&b"}}, "body.properties.principalId"),
        ({"properties": {"principalId": ""}}, "body.properties.principalId"),
        ({"properties": "enabled"}, "body.properties"),
    ],
)
def test_access_body_rules(http: httpx.Client, service: str, body: object, field: str) -> None:
    path = f"{service}/tenant/access"
    before = http.post(f"{path}/listSecrets?{API}").json()["data"]
    _bad(http.put(f"{path}?{API}", json=body, headers={"If-Match": "*"}), field)
    assert http.post(f"{path}/listSecrets?{API}").json()["data"] == before


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b'{"properties": {"enabled": true}',
        b'{"properties": {"enabled": NaN}}',
        b'{"properties": {"enabled": true}, "properties": {"enabled": false}}',
        b"[" * 100 + b"]" * 100,
        b"\xff\xfe{}",
        b'{"n": ' + b"9" * 5000 + b"}",
    ],
)
def test_malformed_json(http: httpx.Client, service: str, raw: bytes) -> None:
    response = http.patch(
        f"{service}/tenant/access?{API}", content=raw,
        headers={"If-Match": "*", "content-type": "application/json"},
    )
    _bad(response, "body")


def test_missing_body_where_one_is_required(http: httpx.Client, service: str) -> None:
    _bad(http.put(f"{service}/tenant/access?{API}", headers={"If-Match": "*"}), "body")


def test_malformed_body_on_a_bodiless_operation(http: httpx.Client, service: str) -> None:
    response = http.post(
        f"{service}/tenant/access/regenerateSecondaryKey?{API}", content=b"{oops",
        headers={"content-type": "application/json"},
    )
    _bad(response, "body")


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_if_match_is_required(http: httpx.Client, service: str, method: str) -> None:
    response = http.request(method, f"{service}/tenant/access?{API}", json={"properties": {"enabled": True}})
    _bad(response, "header.If-Match")


def test_wrong_content_type(http: httpx.Client, service: str) -> None:
    response = http.patch(
        f"{service}/tenant/access?{API}", content=json.dumps({"properties": {"enabled": True}}),
        headers={"If-Match": "*", "content-type": "text/plain"},
    )
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"


def test_oversized_body(http: httpx.Client, service: str) -> None:
    response = http.put(
        f"{service}?{API}", content=b'{"pad": "' + b"x" * (70 * 1024) + b'"}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
