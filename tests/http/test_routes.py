"""Every route of the table, with its real effect observed through the API."""

from __future__ import annotations

import uuid

import httpx

from tests.conftest import API, SERVICE_BODY, provider, service_path


def _etag(http: httpx.Client, path: str) -> str:
    response = http.head(f"{path}?{API}")
    assert response.status_code == 200
    return response.headers["etag"]


def test_service_lifecycle(http: httpx.Client) -> None:
    rg = "rg-" + uuid.uuid4().hex[:8]
    path = service_path("Lifecycle-Svc", rg)
    created = http.put(f"{path}?{API}", json={**SERVICE_BODY, "tags": {"team": "ops"}})
    assert created.status_code == 201
    data = created.json()["data"]
    assert data["name"] == "Lifecycle-Svc"
    assert data["id"] == path
    assert data["provisioning_state"] == "Succeeded"
    assert data["tags"] == {"team": "ops"}
    assert data["sku_name"] == "Developer" and data["sku_capacity"] == 1

    # Names are case-insensitive, as in Azure; the spelling given at creation is kept.
    got = http.get(f"{service_path('lifecycle-svc', rg.upper())}?{API}")
    assert got.status_code == 200
    assert got.json()["data"]["name"] == "Lifecycle-Svc"

    updated = http.put(f"{path}?{API}", json={**SERVICE_BODY, "sku": {"name": "Premium", "capacity": 2}})
    assert updated.status_code == 200
    assert updated.json()["data"]["sku_name"] == "Premium"
    assert updated.json()["data"]["created_at"] == data["created_at"]

    listed = http.get(f"{provider(rg)}/service?{API}")
    assert listed.status_code == 200
    assert [s["name"] for s in listed.json()["data"]] == ["Lifecycle-Svc"]

    deleted = http.delete(f"{path}?{API}")
    assert deleted.status_code == 200
    assert deleted.json()["data"]["provisioning_state"] == "Deleted"
    assert http.get(f"{path}?{API}").status_code == 404
    assert http.post(f"{path}/tenant/access/listSecrets?{API}").status_code == 404
    assert http.delete(f"{path}?{API}").status_code == 404
    assert http.get(f"{provider(rg)}/service?{API}").json()["data"] == []


def test_moving_a_service_to_another_location_is_a_conflict(http: httpx.Client, service: str) -> None:
    response = http.put(f"{service}?{API}", json={**SERVICE_BODY, "location": "East US"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "CONFLICT"
    # "westeurope" is the same location as "West Europe".
    assert http.put(f"{service}?{API}", json={**SERVICE_BODY, "location": "westeurope"}).status_code == 200


def test_a_new_service_has_both_configurations(http: httpx.Client, service: str) -> None:
    response = http.get(f"{service}/tenant?{API}")
    assert response.status_code == 200
    configs = {c["name"]: c for c in response.json()["data"]}
    assert set(configs) == {"access", "gitAccess"}
    assert configs["access"]["principal_id"] == "integration"
    assert configs["gitAccess"]["principal_id"] == "git"
    assert configs["access"]["enabled"] is False
    assert configs["gitAccess"]["enabled"] is True
    for config in configs.values():
        assert "primary_key" not in config and "secondary_key" not in config


def test_get_never_returns_keys_and_carries_the_etag(http: httpx.Client, service: str) -> None:
    keys = http.post(f"{service}/tenant/access/listSecrets?{API}").json()["data"]
    response = http.get(f"{service}/tenant/access?{API}")
    assert response.status_code == 200
    assert response.headers["etag"] == f'"{response.json()["data"]["etag"]}"'
    assert keys["primary_key"] not in response.text
    assert keys["secondary_key"] not in response.text
    assert "primary_key" not in response.json()["data"]


def test_head_gives_the_etag_and_no_body(http: httpx.Client, service: str) -> None:
    response = http.head(f"{service}/tenant/gitAccess?{API}")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["etag"] == http.get(f"{service}/tenant/gitAccess?{API}").headers["etag"]
    assert http.head(f"{service_path('nope-missing')}/tenant/access?{API}").status_code == 404


def test_put_sets_principal_enabled_and_chosen_keys(http: httpx.Client, service: str) -> None:
    path = f"{service}/tenant/access"
    primary = "P" * 40
    response = http.put(
        f"{path}?{API}",
        json={"properties": {"principalId": "robot", "enabled": True, "primaryKey": primary}},
        headers={"If-Match": _etag(http, path)},
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["principal_id"] == "robot" and data["enabled"] is True
    assert "primary_key" not in data
    keys = http.post(f"{path}/listSecrets?{API}").json()["data"]
    assert keys["primary_key"] == primary
    assert keys["principal_id"] == "robot"


def test_patch_changes_enabled_only(http: httpx.Client, service: str) -> None:
    path = f"{service}/tenant/access"
    before = http.post(f"{path}/listSecrets?{API}").json()["data"]
    response = http.patch(f"{path}?{API}", json={"properties": {"enabled": True}}, headers={"If-Match": "*"})
    assert response.status_code == 200
    assert response.json()["data"]["enabled"] is True
    after = http.post(f"{path}/listSecrets?{API}").json()["data"]
    assert (after["primary_key"], after["secondary_key"]) == (before["primary_key"], before["secondary_key"])
    refused = http.patch(f"{path}?{API}", json={"properties": {"principalId": "x"}}, headers={"If-Match": "*"})
    assert refused.status_code == 400
    assert refused.json()["error"]["details"][0]["field"] == "body.properties.principalId"


def test_regenerate_primary_leaves_the_secondary(http: httpx.Client, service: str) -> None:
    path = f"{service}/tenant/access"
    before = http.post(f"{path}/listSecrets?{API}").json()["data"]
    rotation = http.post(f"{path}/regeneratePrimaryKey?{API}")
    assert rotation.status_code == 200
    assert rotation.json()["data"]["key"] == "primary"
    after = http.post(f"{path}/listSecrets?{API}").json()["data"]
    assert after["primary_key"] != before["primary_key"]
    assert after["secondary_key"] == before["secondary_key"]


def test_git_operations_act_on_git_access_whichever_name_is_in_the_path(http: httpx.Client, service: str) -> None:
    def keys(name: str) -> dict[str, str]:
        data: dict[str, str] = http.post(f"{service}/tenant/{name}/listSecrets?{API}").json()["data"]
        return data

    access_before, git_before = keys("access"), keys("gitAccess")
    one = http.post(f"{service}/tenant/access/git/regeneratePrimaryKey?{API}")
    two = http.post(f"{service}/tenant/gitAccess/git/regenerateSecondaryKey?{API}")
    assert one.status_code == two.status_code == 200
    assert one.json()["data"]["access_name"] == two.json()["data"]["access_name"] == "gitAccess"
    access_after, git_after = keys("access"), keys("gitAccess")
    assert access_after == access_before
    assert git_after["primary_key"] != git_before["primary_key"]
    assert git_after["secondary_key"] != git_before["secondary_key"]


def test_list_paging_with_top_and_skip(http: httpx.Client) -> None:
    rg = "paging-" + uuid.uuid4().hex[:6]
    for name in ("a1", "a2", "a3"):
        assert http.put(f"{service_path(name, rg)}?{API}", json=SERVICE_BODY).status_code == 201
    everything = http.get(f"{provider(rg)}/service?{API}").json()["data"]
    assert [s["name"] for s in everything] == ["a1", "a2", "a3"]
    page = http.get(f"{provider(rg)}/service?{API}&$top=2&$skip=1").json()["data"]
    assert [s["name"] for s in page] == ["a2", "a3"]
