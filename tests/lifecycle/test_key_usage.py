"""Key usage through HTTP: accepted signatures are counted per key version (to the minute, on the
server's clock), shown by keyUsage in both wire styles as their OpenAPI documents say, survive a
restart once flushed, and start from zero for a regenerated key."""

from __future__ import annotations

import datetime as _dt
from typing import Any

import httpx
import jsonschema
import pytest
from referencing import Registry, Resource

from tenant_access.client import ServiceRef, sas_token
from tenant_access.testing import RunningServer, run_server

SUB = "11111111-2222-3333-4444-555555555555"
REF = ServiceRef(SUB, "rg", "used")
API = "api-version=2024-05-01"
SERVICE = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ApiManagement/service/used"
TEMPLATE = ("/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.ApiManagement"
            "/service/{serviceName}/tenant/{accessName}/keyUsage")
SEED = {"services": [{"subscription": SUB, "resource_group": "rg", "name": "used", "access": {"enabled": True}}]}


def _sas(key: str, server: RunningServer) -> dict[str, str]:
    expiry = server.now() + _dt.timedelta(hours=1)
    return {"Authorization": "SharedAccessSignature " + sas_token("integration", key, expiry)}


def _usage(server: RunningServer) -> httpx.Response:
    return httpx.get(f"{server.url}{SERVICE}/tenant/access/keyUsage?{API}", headers=server.headers())


def _check_documented(server: RunningServer, response: httpx.Response) -> None:
    document = httpx.get(f"{server.url}/openapi.json").json()
    schema = document["paths"][TEMPLATE]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    registry: Registry[Any] = Registry().with_resource("urn:doc", Resource.opaque(document))

    def rebase(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: ("urn:doc" + v if k == "$ref" and v.startswith("#") else rebase(v)) for k, v in node.items()}
        return [rebase(v) for v in node] if isinstance(node, list) else node

    jsonschema.Draft202012Validator(rebase(schema), registry=registry).validate(response.json())


@pytest.mark.parametrize("api_style", ["seed", "azure"])
def test_uses_are_counted_per_key_and_shown_in_both_styles(api_style: str) -> None:
    with run_server(api_style=api_style, auth="emulator") as server:
        server.emulator.seed(SEED)
        keys = server.client.list_secrets(REF.access())
        server.emulator.set_clock("2030-03-04T05:06:30Z")
        for _ in range(5):
            assert httpx.get(f"{server.url}{SERVICE}?{API}", headers=_sas(keys.primary_key, server)).status_code == 200
        # A refused signature (wrong key) counts for no key.
        assert httpx.get(f"{server.url}{SERVICE}?{API}", headers=_sas("not-the-key", server)).status_code == 401
        response = _usage(server)
        assert response.status_code == 200, response.text
        _check_documented(server, response)
        body = response.json()
        if api_style == "seed":
            primary, secondary = body["data"]["keys"]
            assert (primary["slot"], primary["use_count"], primary["last_used_at"]) == ("primary", 5,
                                                                                         "2030-03-04T05:06:00Z")
            assert (secondary["use_count"], secondary["last_used_at"]) == (0, None)
            config = server.client.get_access(REF.access())
            assert (primary["version_id"], secondary["version_id"]) == (config.primary_key_version_id,
                                                                        config.secondary_key_version_id)
        else:
            primary, secondary = body["properties"]["keys"]
            assert (primary["useCount"], primary["lastUsedAt"]) == (5, "2030-03-04T05:06:00.0000000Z")
            assert (secondary["useCount"], secondary["lastUsedAt"]) == (0, None)
            assert body["name"] == "keyUsage"
        metrics = httpx.get(f"{server.url}/metrics").text
        assert "tenant_access_key_uses_total 5.0" in metrics
        assert keys.primary_key not in metrics
        assert not [line for line in metrics.splitlines() if line.startswith("tenant_access_key_") and "{" in line
                    and "rotations" not in line], "usage metrics carry no per-key labels"


def test_figures_survive_a_restart_and_a_regenerated_key_starts_from_zero(tmp_path: Any) -> None:
    with run_server(auth="emulator", data_dir=tmp_path) as server:
        server.emulator.seed(SEED)
        keys = server.client.list_secrets(REF.access())
        for key in (keys.primary_key, keys.secondary_key, keys.secondary_key):
            assert httpx.get(f"{server.url}{SERVICE}?{API}", headers=_sas(key, server)).status_code == 200
    with run_server(auth="emulator", data_dir=tmp_path) as again:
        primary, secondary = _usage(again).json()["data"]["keys"]
        assert (primary["use_count"], secondary["use_count"]) == (1, 2)
        assert primary["last_used_at"] is not None
        again.client.regenerate_secondary_key(REF.access())
        primary, secondary = _usage(again).json()["data"]["keys"]
        assert (primary["use_count"], secondary["use_count"], secondary["last_used_at"]) == (1, 0, None)


def test_a_reader_may_see_usage_but_it_holds_no_key(tenant_access_server: RunningServer) -> None:
    tenant_access_server.emulator.seed(SEED)
    response = httpx.get(f"{tenant_access_server.url}{SERVICE}/tenant/access/keyUsage?{API}",
                         headers=tenant_access_server.headers("reader"))
    assert response.status_code == 200
    keys = tenant_access_server.client.list_secrets(REF.access())
    assert keys.primary_key not in response.text and keys.secondary_key not in response.text


def test_unknown_service_is_404_in_the_active_format(tenant_access_server: RunningServer) -> None:
    response = httpx.get(f"{tenant_access_server.url}{SERVICE}x/tenant/access/keyUsage?{API}",
                         headers=tenant_access_server.headers())
    assert response.status_code == 404 and response.json()["success"] is False
