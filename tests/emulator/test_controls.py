"""The emulator controls over HTTP: reset, state dump, seeding, and who may use them."""

from __future__ import annotations

import ssl
from typing import Any

import httpx
import pytest

from tenant_access.client import NotFound, ServiceRef, ValidationError
from tenant_access.testing import RunningServer, run_server

SUB = "11111111-2222-3333-4444-555555555555"
KEY_A = "seeded-primary-key-0123456789abcdef0123456789"
KEY_B = "seeded-secondary-key-0123456789abcdef012345678"
DOCUMENT: dict[str, Any] = {
    "subscription": SUB,
    "resource_group": "rig",
    "services": [
        {"name": "alpha", "location": "West Europe", "sku": {"name": "Premium", "capacity": 2},
         "publisher_email": "ops@example.com", "publisher_name": "Ops", "tags": {"env": "test"},
         "access": {"enabled": True, "principal_id": "robot", "primary_key": KEY_A, "secondary_key": KEY_B}},
        {"name": "beta", "resource_group": "other-rig", "git_access": {"enabled": False}},
    ],
}
ALPHA = ServiceRef(SUB, "rig", "alpha")
BETA = ServiceRef(SUB, "other-rig", "beta")


def test_seed_creates_services_with_their_properties_and_fixed_keys(tenant_access_server: RunningServer) -> None:
    results = tenant_access_server.emulator.seed(DOCUMENT)
    assert [(r["name"], r["result"]) for r in results] == [("alpha", "created"), ("beta", "created")]
    client = tenant_access_server.client
    alpha = client.get_service(ALPHA)
    assert (alpha.location, alpha.sku_name, alpha.sku_capacity, alpha.tags) == ("West Europe", "Premium", 2,
                                                                                 {"env": "test"})
    secrets = client.list_secrets(ALPHA.access())
    assert (secrets.primary_key, secrets.secondary_key, secrets.enabled, secrets.principal_id) == (
        KEY_A, KEY_B, True, "robot")
    beta = client.get_service(BETA)
    assert (beta.location, beta.sku_name, beta.publisher_email) == ("westeurope", "Developer", "admin@example.com")
    assert client.get_access(BETA.access("gitAccess")).enabled is False
    assert client.get_access(BETA.access()).enabled is False  # Azure's default for access


def test_seeding_again_changes_nothing_and_never_touches_keys(tenant_access_server: RunningServer) -> None:
    controls, client = tenant_access_server.emulator, tenant_access_server.client
    controls.seed(DOCUMENT)
    rotated = client.regenerate_primary_key(ALPHA.access())
    etag = client.get_service(ALPHA).etag
    assert [r["result"] for r in controls.seed(DOCUMENT)] == ["unchanged", "unchanged"]
    assert client.get_service(ALPHA).etag == etag
    secrets = client.list_secrets(ALPHA.access())
    assert secrets.primary_key != KEY_A and secrets.primary_key_version_id == rotated.id
    assert secrets.secondary_key == KEY_B

    changed = {**DOCUMENT, "services": [{**DOCUMENT["services"][0], "sku": "Basic",
                                          "access": {"enabled": False, "primary_key": KEY_A}}]}
    assert [r["result"] for r in controls.seed(changed)] == ["updated"]
    assert client.get_service(ALPHA).sku_name == "Basic"
    after = client.list_secrets(ALPHA.access())
    assert after.enabled is False
    assert after.primary_key == secrets.primary_key  # the document's key applies only at creation


def test_seed_refuses_a_bad_document_naming_every_field_and_applies_nothing(
        tenant_access_server: RunningServer) -> None:
    bad = {"subscription": SUB, "services": [
        {"name": "no-group", "subscription": "not-a-guid"},
        {"name": "-bad-", "resource_group": "rg", "sku": "Gigantic", "publisher_emial": "x",
         "access": {"primary_key": "short"}},
        {"name": "twice", "resource_group": "rg"},
        {"name": "TWICE", "resource_group": "RG"},
    ]}
    with pytest.raises(ValidationError) as caught:
        tenant_access_server.emulator.seed(bad)
    fields = {d.field for d in caught.value.details}
    assert {"body.services[0].subscription", "body.services[0].resource_group", "body.services[1].name",
            "body.services[1].sku.name", "body.services[1].publisher_emial",
            "body.services[1].access.primary_key", "body.services[3].name"} <= fields
    assert tenant_access_server.emulator.state()["services"] == []


def test_a_seed_that_moves_a_service_is_a_conflict(tenant_access_server: RunningServer) -> None:
    controls = tenant_access_server.emulator
    controls.seed(DOCUMENT)
    moved = {**DOCUMENT, "services": [{**DOCUMENT["services"][0], "location": "Japan East"}]}
    with pytest.raises(Exception, match="cannot move") as caught:
        controls.seed(moved)
    assert getattr(caught.value, "status", None) == 409


def test_state_masks_keys_unless_revealed_and_audits_the_reveal(tenant_access_server: RunningServer) -> None:
    controls = tenant_access_server.emulator
    controls.seed(DOCUMENT)
    masked = controls.state()
    alpha = next(s for s in masked["services"] if s["name"] == "alpha")
    assert alpha["access"]["primary_key"] == alpha["access"]["secondary_key"] == "***"
    assert KEY_A not in str(masked)
    assert {"id", "etag", "created_at", "primary_key_version_id"} <= set(alpha) | set(alpha["access"])
    before = len(tenant_access_server.client.list_audit_events(ALPHA, operation="access.list_secrets"))
    assert before == 0
    revealed = controls.state(reveal=True)
    alpha = next(s for s in revealed["services"] if s["name"] == "alpha")
    assert (alpha["access"]["primary_key"], alpha["access"]["secondary_key"]) == (KEY_A, KEY_B)
    reads = tenant_access_server.client.list_audit_events(ALPHA, operation="access.list_secrets")
    assert len(reads) == 2 and {r.principal for r in reads} == {"tests"}


def test_a_revealed_dump_rebuilds_the_same_state_after_a_reset(tenant_access_server: RunningServer) -> None:
    controls, client = tenant_access_server.emulator, tenant_access_server.client
    controls.seed(DOCUMENT)
    client.regenerate_secondary_key(BETA.access("gitAccess"))
    dump = controls.state(reveal=True)
    keys = {(s["name"], k): (s[k]["primary_key"], s[k]["secondary_key"]) for s in dump["services"]
            for k in ("access", "git_access")}
    controls.reset()
    assert controls.state()["services"] == []
    assert [r["result"] for r in controls.seed(dump)] == ["created", "created"]
    again = controls.state(reveal=True)
    assert {(s["name"], k): (s[k]["primary_key"], s[k]["secondary_key"]) for s in again["services"]
            for k in ("access", "git_access")} == keys
    # A masked dump seeds too: the placeholders mean "whatever keys the server makes".
    controls.reset()
    masked = _masked(dump)
    assert [r["result"] for r in controls.seed(masked)] == ["created", "created"]
    fresh = client.list_secrets(ALPHA.access())
    assert (fresh.primary_key, fresh.secondary_key) != keys[("alpha", "access")]


def _masked(dump: dict[str, Any]) -> dict[str, Any]:
    masked = []
    for svc in dump["services"]:
        copy = dict(svc)
        for key in ("access", "git_access"):
            copy[key] = {**svc[key], "primary_key": "***", "secondary_key": "***"}
        masked.append(copy)
    return {**dump, "services": masked}


def test_reset_deletes_services_keys_and_audit_but_not_credentials(tenant_access_server: RunningServer) -> None:
    controls, client = tenant_access_server.emulator, tenant_access_server.client
    controls.seed(DOCUMENT)
    controls.add_fault("services.get", status=503)
    assert client.list_audit_events(ALPHA)
    controls.reset()
    assert controls.state() == {"version": 1, "services": [], "faults": []}
    with pytest.raises(NotFound):
        client.get_service(ALPHA)
    assert client.list_audit_events(ALPHA) == []  # the trail went with the services
    assert client.list_services(SUB, "rig") == []  # the same owner token still works
    controls.seed(DOCUMENT)
    assert [e.operation for e in client.list_audit_events(ALPHA)] == ["services.create_or_update", "access.create"]


@pytest.mark.parametrize(("role", "scope"), [
    ("reader", "/"), ("key-operator", "/"), ("owner", f"/subscriptions/{SUB}"),
])
def test_only_a_root_scoped_owner_may_use_the_controls(tenant_access_server: RunningServer, role: str,
                                                       scope: str) -> None:
    headers = tenant_access_server.headers(role, scope)
    for method, path in (("POST", "/reset"), ("GET", "/state"), ("POST", "/seed"), ("GET", "/faults"),
                         ("PUT", "/faults"), ("DELETE", "/faults")):
        response = httpx.request(method, f"{tenant_access_server.url}/_emulator{path}", headers=headers,
                                 json={} if method in ("POST", "PUT") else None)
        assert response.status_code == 403, (method, path, response.text)
    anonymous = httpx.post(f"{tenant_access_server.url}/_emulator/reset")
    assert anonymous.status_code == 401


def test_refusals_are_refused_before_anything_is_reset(tenant_access_server: RunningServer) -> None:
    tenant_access_server.emulator.seed(DOCUMENT)
    response = httpx.post(f"{tenant_access_server.url}/_emulator/reset",
                          headers=tenant_access_server.headers("key-operator"))
    assert response.status_code == 403
    assert len(tenant_access_server.emulator.state()["services"]) == 2


def test_the_controls_are_off_by_default_with_strict_auth() -> None:
    from tenant_access.config import Settings

    assert Settings().emulator_controls_enabled is False
    assert Settings(auth="none").emulator_controls_enabled is True
    assert Settings(auth="emulator").emulator_controls_enabled is True
    assert Settings(auth="none", emulator_controls=False).emulator_controls_enabled is False
    assert Settings.from_env({"TENANT_ACCESS_EMULATOR_CONTROLS": "yes"}).emulator_controls_enabled is True
    with run_server(emulator_controls=False) as server:
        response = httpx.post(f"{server.url}/_emulator/reset", headers=server.headers())
        assert response.status_code == 404
        with pytest.raises(NotFound):
            server.emulator.state()
        paths = httpx.get(f"{server.url}/openapi.json").json()["paths"]
        assert not [p for p in paths if p.startswith("/_emulator")]


def test_with_auth_none_the_controls_need_no_credential() -> None:
    with run_server(auth="none", emulator_controls=None) as server:
        assert httpx.post(f"{server.url}/_emulator/reset").json() == {"reset": True}


@pytest.mark.tenant_access(api_style="azure", tls=True)
def test_the_controls_answer_in_azure_mode_too(tenant_access_server: RunningServer) -> None:
    controls = tenant_access_server.emulator
    assert [r["result"] for r in controls.seed(DOCUMENT)] == ["created", "created"]
    assert tenant_access_server.client.list_secrets(ALPHA.access()).primary_key == KEY_A
    with pytest.raises(ValidationError) as caught:
        controls.seed({"services": [{"name": "x"}]})
    assert caught.value.code == "ValidationError"
    with httpx.Client(verify=ssl.create_default_context(cafile=str(tenant_access_server.cacert))) as http:
        refused = http.post(f"{tenant_access_server.url}/_emulator/reset",
                            headers=tenant_access_server.headers("reader"))
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "AuthorizationFailed"


def test_every_emulator_route_is_owner_only_and_documented() -> None:
    from tenant_access.http.openapi import build
    from tenant_access.security.authorization import EMULATOR_OPERATIONS, ROLE_OPERATIONS, Role

    with run_server() as server:
        every = [r for r in server._app.routes if r.path.startswith("/_emulator/")]
        # The sink's receiving side is public, as any webhook receiver is: deliveries carry no credential.
        assert {r.operation for r in every if r.public} == {"emulator.sink.options", "emulator.sink.receive"}
        routes = [r for r in every if not r.public]
        assert {r.operation for r in routes} == EMULATOR_OPERATIONS
        assert all(not r.versioned for r in every)
        assert ROLE_OPERATIONS[Role.OWNER] >= EMULATOR_OPERATIONS
        assert not EMULATOR_OPERATIONS & (ROLE_OPERATIONS[Role.READER] | ROLE_OPERATIONS[Role.KEY_OPERATOR])
        document = build(server._app.routes, "seed")
        assert {(p, m) for p, ops in document["paths"].items() for m in ops if p.startswith("/_emulator")} == {
            ("/_emulator/reset", "post"), ("/_emulator/state", "get"), ("/_emulator/seed", "post"),
            ("/_emulator/faults", "get"), ("/_emulator/faults", "put"), ("/_emulator/faults", "delete"),
            ("/_emulator/clock", "get"), ("/_emulator/clock", "put"), ("/_emulator/clock", "delete"),
            ("/_emulator/clock/advance", "post"),
            ("/_emulator/events", "get"), ("/_emulator/sink/{sinkName}", "options"),
            ("/_emulator/sink/{sinkName}", "post"), ("/_emulator/sink/{sinkName}", "get"),
            ("/_emulator/sink/{sinkName}", "delete")}
