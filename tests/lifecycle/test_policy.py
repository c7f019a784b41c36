"""Rotation policies over HTTP: Key Vault's shape plus gracePeriod, validated with every problem
named, audited, shown with their state; expiryTime makes keys expire (a SAS of an expired key is a
401 whose audit record names expiry) and listSecrets/keyUsage show expiresAt."""

from __future__ import annotations

import datetime as _dt
from typing import Any

import httpx
import pytest

from tenant_access.client import ServiceRef, sas_token
from tenant_access.testing import RunningServer, run_server

SUB = "11111111-2222-3333-4444-555555555555"
REF = ServiceRef(SUB, "rg", "ruled")
API = "api-version=2024-05-01"
SERVICE = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ApiManagement/service/ruled"
POLICY_URL = f"{SERVICE}/tenant/access/rotationPolicy?{API}"
SEED = {"services": [{"subscription": SUB, "resource_group": "rg", "name": "ruled", "access": {"enabled": True}}]}
POLICY = {
    "lifetimeActions": [{"trigger": {"timeAfterCreate": "P30D"}, "action": {"type": "Rotate"}},
                        {"trigger": {"timeBeforeExpiry": "P10D"}, "action": {"type": "Notify"}}],
    "attributes": {"expiryTime": "P45D"},
    "gracePeriod": "PT15M",
}


@pytest.fixture
def server(tenant_access_server: RunningServer) -> RunningServer:
    tenant_access_server.emulator.seed(SEED)
    return tenant_access_server


def _sas(server: RunningServer, key: str) -> httpx.Response:
    header = "SharedAccessSignature " + sas_token("integration", key, server.now() + _dt.timedelta(hours=1))
    return httpx.get(f"{server.url}{SERVICE}?{API}", headers={"Authorization": header})


def test_put_get_delete_and_the_audit_trail(server: RunningServer) -> None:
    with httpx.Client(base_url=server.url, headers=server.headers()) as http:
        _put_get_delete(server, http)


def _put_get_delete(server: RunningServer, http: httpx.Client) -> None:
    assert http.get(POLICY_URL).status_code == 404
    put = http.put(POLICY_URL, json=POLICY)
    assert put.status_code == 200, put.text
    data = put.json()["data"]
    assert data["lifetimeActions"] == POLICY["lifetimeActions"] and data["gracePeriod"] == "PT15M"
    assert data["attributes"]["expiryTime"] == "P45D" and data["id"].endswith("/tenant/access/rotationPolicy")
    config = server.client.get_access(REF.access())
    assert config.primary_key_version_id
    status = data["status"]
    assert status["overdue"] is False and status["blockedSince"] is None and status["nextRotation"]
    assert http.get(POLICY_URL).json()["data"]["lifetimeActions"] == POLICY["lifetimeActions"]
    # A reader may look, not change.
    reader = server.headers("reader")
    assert httpx.get(server.url + POLICY_URL, headers=reader).status_code == 200
    assert httpx.put(server.url + POLICY_URL, json=POLICY, headers=reader).status_code == 403
    assert http.delete(POLICY_URL).json()["data"] == {"deleted": True}
    assert http.delete(POLICY_URL).json()["data"] == {"deleted": False}
    operations = [e.operation for e in server.client.list_audit_events(REF, kind="changes")]
    assert operations.count("access.rotation_policy.put") == 1 and operations.count(
        "access.rotation_policy.delete") == 1


@pytest.mark.parametrize(("body", "fields"), [
    ({"lifetimeActions": [{"trigger": {"timeAfterCreate": "90 days"}, "action": {"type": "Rotate"}}]},
     {"body.lifetimeActions[0].trigger.timeAfterCreate"}),
    ({"lifetimeActions": [{"trigger": {"timeBeforeExpiry": "P10D"}, "action": {"type": "Rotate"}}]},
     {"body.lifetimeActions[0].trigger.timeBeforeExpiry"}),
    ({"lifetimeActions": [{"trigger": {"timeAfterCreate": "P1D", "timeBeforeExpiry": "P1D"},
                           "action": {"type": "Rotate"}}], "attributes": {"expiryTime": "P9D"}},
     {"body.lifetimeActions[0].trigger"}),
    ({"lifetimeActions": [{"trigger": {"timeAfterCreate": "P30D"}, "action": {"type": "Delete"}}], "x": 1},
     {"body.lifetimeActions[0].action.type", "body.x"}),
    ({"lifetimeActions": [{"trigger": {"timeAfterCreate": "P30D"}, "action": {"type": "Rotate"}}],
      "attributes": {"expiryTime": "P30D"}}, {"body.attributes.expiryTime"}),
    ({"gracePeriod": "PT1S"}, {"body.gracePeriod"}),
    ([], {"body"}),
])
def test_invalid_policies_name_every_problem(server: RunningServer, body: Any, fields: set[str]) -> None:
    response = httpx.put(server.url + POLICY_URL, json=body, headers=server.headers())
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert {d["field"] for d in error["details"]} == fields


def test_a_policy_on_git_access_is_refused(server: RunningServer) -> None:
    """The server never sees gitAccess keys used, so a policy there would rotate keys in use."""
    url = server.url + POLICY_URL.replace("/tenant/access/", "/tenant/gitAccess/")
    response = httpx.put(url, json=POLICY, headers=server.headers())
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert [d["field"] for d in error["details"]] == ["path.accessName"]
    assert "gitAccess" in error["message"]
    assert httpx.get(url, headers=server.headers()).status_code == 404


def test_expiry_refuses_an_expired_key_and_names_it_only_in_the_audit_record(server: RunningServer) -> None:
    keys = server.client.list_secrets(REF.access())
    assert _sas(server, keys.primary_key).status_code == 200
    policy = {"lifetimeActions": [], "attributes": {"expiryTime": "P45D"}}
    assert httpx.put(server.url + POLICY_URL, json=policy, headers=server.headers()).status_code == 200
    secrets = httpx.post(f"{server.url}{SERVICE}/tenant/access/listSecrets?{API}", headers=server.headers()).json()
    created = _dt.datetime.fromisoformat(server.client.key_usage(REF.access()).primary.created_at.isoformat())
    assert secrets["data"]["primary_key_expires_at"].startswith((created + _dt.timedelta(days=45)).date().isoformat())
    usage = server.client.key_usage(REF.access())
    assert usage.primary.expires_at == created + _dt.timedelta(days=45)
    server.advance("P46D")
    refused = _sas(server, keys.primary_key)
    wrong = _sas(server, "not-a-key-of-this-service")
    assert refused.status_code == wrong.status_code == 401
    assert refused.json()["error"]["message"] == wrong.json()["error"]["message"]  # the answer tells nothing
    refusals = server.client.list_audit_events(REF, kind="refusals")
    assert any(e.detail and "key expired" in e.detail for e in refusals), [e.detail for e in refusals]
    # A fresh key works again; without the policy nothing expires.
    server.client.regenerate_secondary_key(REF.access())
    assert _sas(server, server.client.list_secrets(REF.access()).secondary_key).status_code == 200
    assert httpx.delete(server.url + POLICY_URL, headers=server.headers()).status_code == 200
    assert _sas(server, keys.primary_key).status_code == 200


def test_azure_style_answers_key_vaults_shape() -> None:
    with run_server(api_style="azure", auth="emulator") as server:
        server.emulator.seed(SEED)
        with httpx.Client(base_url=server.url, headers=server.headers()) as http:
            put = http.put(POLICY_URL, json=POLICY)
            assert put.status_code == 200 and put.json()["lifetimeActions"] == POLICY["lifetimeActions"]
            assert http.get(POLICY_URL).json()["status"]["overdue"] is False
            bad = http.put(POLICY_URL, json={"gracePeriod": "soon"})
            assert bad.status_code == 400 and bad.json()["error"]["code"]
            assert http.delete(POLICY_URL).status_code == 200
            assert http.delete(POLICY_URL).status_code == 204
