"""Resource Manager's basics in Azure mode: cloud metadata, subscriptions, tenants, resource
groups and the subscription-wide service list, each in ARM's shape and each filtered by scope.
The seed format does not serve them."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.serverproc import ServerProcess

A = "aaaaaaaa-0000-4000-8000-000000000001"
B = "bbbbbbbb-0000-4000-8000-000000000002"
UNKNOWN = "cccccccc-0000-4000-8000-000000000003"
V = "api-version=2024-05-01"
ARM = "api-version=2022-12-01"
BODY = {"location": "westeurope", "sku": {"name": "Developer", "capacity": 1},
        "properties": {"publisherEmail": "ops@example.com", "publisherName": "Ops"}}


def svc(sub: str, rg: str, name: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ApiManagement/service/{name}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("arm"), ["--api-style", "azure"]).start()
    try:
        with httpx.Client(base_url=proc.url, headers=proc.auth()) as http:
            for path in (svc(A, "rg1", "one"), svc(A, "rg2", "two"), svc(B, "rg1", "three")):
                assert http.put(f"{path}?{V}", json=BODY).status_code == 201
        yield proc
    finally:
        proc.stop()


def get(server: ServerProcess, path: str, scope: str | None = "/") -> httpx.Response:
    headers = server.auth("reader", scope) if scope is not None else {}
    return httpx.get(server.url + path, headers=headers)


def test_cloud_metadata_names_this_server(server: ServerProcess) -> None:
    current = get(server, "/metadata/endpoints?api-version=2022-09-01", scope=None)
    assert current.status_code == 200, current.text
    cloud = current.json()
    assert cloud["resourceManager"] == server.url + "/"
    assert cloud["authentication"]["loginEndpoint"] == server.url
    assert cloud["authentication"]["audiences"][0] == "https://management.core.windows.net/"
    assert {"name", "portal", "suffixes", "graphAudience"} <= set(cloud)
    # What the CLI asks when given the endpoint with its trailing slash.
    assert get(server, "//metadata/endpoints?api-version=2022-09-01", scope=None).json() == cloud
    older = get(server, "/metadata/endpoints?api-version=2015-01-01", scope=None).json()
    assert set(older) == {"galleryEndpoint", "graphEndpoint", "portalEndpoint", "authentication"}
    assert older["authentication"]["loginEndpoint"] == server.url
    bad = get(server, "/metadata/endpoints?api-version=latest", scope=None)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "InvalidApiVersionParameter"


def test_subscriptions_are_those_holding_services_and_filtered_by_scope(server: ServerProcess) -> None:
    everything = get(server, f"/subscriptions?{ARM}").json()
    assert [s["subscriptionId"] for s in everything["value"]] == [A, B]
    assert everything["count"] == {"type": "Total", "value": 2}
    first = everything["value"][0]
    assert first["id"] == f"/subscriptions/{A}" and first["state"] == "Enabled"
    assert first["tenantId"] == get(server, f"/tenants?{ARM}").json()["value"][0]["tenantId"]
    assert first["displayName"]
    narrow = get(server, f"/subscriptions?{ARM}", scope=f"/subscriptions/{A}/resourceGroups/rg2").json()
    assert [s["subscriptionId"] for s in narrow["value"]] == [A]
    assert get(server, f"/subscriptions/{A}?{ARM}", scope=f"/subscriptions/{A}").json()["subscriptionId"] == A
    refused = get(server, f"/subscriptions/{B}?{ARM}", scope=f"/subscriptions/{A}")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "AuthorizationFailed"
    missing = get(server, f"/subscriptions/{UNKNOWN}?{ARM}")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "SubscriptionNotFound"
    unversioned = get(server, "/subscriptions")
    assert unversioned.status_code == 400 and unversioned.json()["error"]["code"] == "MissingApiVersionParameter"
    anonymous = get(server, f"/subscriptions?{ARM}", scope=None)
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "AuthenticationFailed"


def test_the_subscription_wide_service_list_shows_what_the_scope_reaches(server: ServerProcess) -> None:
    path = f"/subscriptions/{A}/providers/Microsoft.ApiManagement/service?{V}"
    assert [s["name"] for s in get(server, path).json()["value"]] == ["one", "two"]
    assert [s["name"] for s in get(server, path, scope=f"/subscriptions/{A}/resourceGroups/rg2").json()["value"]] \
        == ["two"]
    paged = get(server, path + "&$top=1").json()
    assert [s["name"] for s in paged["value"]] == ["one"] and "$skip=1" in paged["nextLink"]
    assert get(server, path, scope=f"/subscriptions/{B}").status_code == 403


def test_a_resource_group_exists_while_it_holds_a_service(server: ServerProcess) -> None:
    group = get(server, f"/subscriptions/{A}/resourcegroups/rg1?api-version=2024-11-01")
    assert group.status_code == 200
    assert group.json() == {"id": f"/subscriptions/{A}/resourceGroups/rg1", "name": "rg1",
                            "type": "Microsoft.Resources/resourceGroups", "location": "westeurope",
                            "properties": {"provisioningState": "Succeeded"}}
    empty = get(server, f"/subscriptions/{A}/resourceGroups/nothing-here?api-version=2024-11-01")
    assert empty.status_code == 404 and empty.json()["error"]["code"] == "ResourceGroupNotFound"


def test_unknown_resource_manager_paths_answer_arm_404(server: ServerProcess) -> None:
    for path in (f"/subscriptions/{A}/providers/Microsoft.Web/sites?{V}", f"/providers?{ARM}",
                 f"/metadata/other?{ARM}"):
        answer = get(server, path)
        assert answer.status_code == 404, path
        assert answer.json()["error"]["code"] == "NotFound"


def test_the_seed_format_does_not_serve_them(tmp_path_factory: pytest.TempPathFactory) -> None:
    seed = ServerProcess(tmp_path_factory.mktemp("arm-seed")).start()
    try:
        for path in ("/metadata/endpoints?api-version=2022-09-01", f"/subscriptions?{ARM}", f"/tenants?{ARM}",
                     f"/subscriptions/{A}?{ARM}", f"/subscriptions/{A}/providers/Microsoft.ApiManagement/service?{V}"):
            answer = httpx.get(seed.url + path, headers=seed.auth())
            assert answer.status_code == 404, path
            assert answer.json()["error"]["code"] == "NOT_FOUND"
    finally:
        seed.stop()
