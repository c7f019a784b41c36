"""Paging, which a local server only does past 1000 records: Azure's nextLink, the seed's $skip,
and the audit route's 404 tolerance, through a mock transport."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tenant_access.client import Client, NotFound, ServiceRef, UnexpectedResponse

SERVICE = ServiceRef("s", "g", "svc")
ACCESS_ID = "/subscriptions/s/resourceGroups/g/providers/Microsoft.ApiManagement/service/svc/tenant/{}"


def _client(handler: Any) -> Client:
    return Client(endpoint="http://mock", transport=httpx.MockTransport(handler))


def _azure(body: Any) -> httpx.Response:
    return httpx.Response(200, json=body, headers={"x-ms-request-id": "r"})


def _seed(data: Any) -> httpx.Response:
    return httpx.Response(200, json={"success": True, "data": data}, headers={"X-Request-Id": "r"})


def test_azure_next_links_are_followed_with_the_clients_api_version() -> None:
    seen: list[httpx.URL] = []

    def pages(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        if "$skip" not in request.url.params:
            return _azure({"value": [{"id": ACCESS_ID.format("access"), "name": "access"}], "count": 2,
                           "nextLink": "http://mock/next?api-version=2016-01-01&$skip=1"})
        return _azure({"value": [{"id": ACCESS_ID.format("gitAccess"), "name": "gitAccess"}], "count": 2,
                       "nextLink": ""})

    with _client(pages) as client:
        found = client.list_access(SERVICE)
    assert [c.name for c in found] == ["access", "gitAccess"]
    assert [u.params["api-version"] for u in seen] == ["2024-05-01", "2024-05-01"]
    assert seen[1].params["$skip"] == "1"


def test_a_next_link_to_another_origin_is_refused() -> None:
    def elsewhere(request: httpx.Request) -> httpx.Response:
        return _azure({"value": [], "nextLink": "https://evil.example/steal"})

    with _client(elsewhere) as client, pytest.raises(UnexpectedResponse, match="another origin"):
        client.list_services("s", "g")


def _event(number: int, style: str) -> dict[str, Any]:
    if style == "seed":
        return {"id": f"e{number}", "created_at": "2030-01-01T00:00:00Z", "operation": "access.list_secrets",
                "status": 200, "request_id": f"r{number}", "old_version_id": None}
    return {"id": f"e{number}", "at": "2030-01-01T00:00:00.0000000Z", "operation": "access.list_secrets",
            "status": 200, "requestId": f"r{number}", "oldVersionId": "v1"}


def test_seed_audit_pages_advance_skip_until_an_empty_page() -> None:
    seen: list[httpx.URL] = []

    def pages(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        skip = int(request.url.params.get("$skip", "0"))
        return _seed([_event(n, "seed") for n in range(skip, min(skip + 2, 5))])

    with _client(pages) as client:
        events = client.list_audit_events(SERVICE, operation="access.list_secrets")
        assert [e.id for e in events] == ["e0", "e1", "e2", "e3", "e4"]
        assert [u.params.get("$skip") for u in seen] == [None, "2", "4", "5"]
        assert all(u.params["operation"] == "access.list_secrets" for u in seen)
        assert events[0].request_id == "r0" and events[0].status == 200 and events[0].time is not None

        seen.clear()
        assert [e.id for e in client.list_audit_events(SERVICE, top=3)] == ["e0", "e1", "e2"]
        assert [(u.params.get("$skip"), u.params["$top"]) for u in seen] == [(None, "3"), ("2", "1")]


def test_a_server_that_ignores_skip_is_not_paged_forever() -> None:
    with _client(lambda request: _seed([_event(0, "seed")])) as client, \
            pytest.raises(UnexpectedResponse, match=r"\$skip"):
        client.list_audit_events(SERVICE)


def test_azure_audit_records_are_camel_case_and_paged_by_next_link() -> None:
    def pages(request: httpx.Request) -> httpx.Response:
        if "$skip" in request.url.params:
            return _azure({"value": [_event(1, "azure")]})
        return _azure({"value": [_event(0, "azure")], "nextLink": "http://mock/more?$skip=1"})

    with _client(pages) as client:
        events = client.list_audit_events(SERVICE)
    assert [(e.id, e.request_id, e.old_version_id) for e in events] == [("e0", "r0", "v1"), ("e1", "r1", "v1")]
    assert events[0].time is not None


def test_a_server_without_the_audit_route_gives_no_events_for_an_existing_service() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/auditEvents"):
            return httpx.Response(404, json={"success": False, "error": {"code": "NOT_FOUND", "message": "no route"}})
        if request.url.path.endswith("/service/svc"):
            return _seed({"id": "/x", "name": "svc", "subscription_id": "s", "resource_group": "g"})
        return httpx.Response(404, json={"success": False, "error": {"code": "NOT_FOUND", "message": "no service"}})

    with _client(handler) as client:
        assert client.list_audit_events(SERVICE) == []
        with pytest.raises(NotFound, match="no route"):
            client.list_audit_events(ServiceRef("s", "g", "other"))
