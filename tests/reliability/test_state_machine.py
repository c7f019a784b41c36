"""Stateful properties: a Hypothesis state machine against the real application over HTTP.

The model holds, for both configurations of one service, both keys' version ids (and the keys once
read), the entity tag, the enabled flag and the principal id. The machine drives regenerations
(all four operations, with and without an idempotency key, and retries of a used key), listSecrets,
GET/HEAD, PUT and PATCH with the current and with a stale ``If-Match``, caller-chosen keys, shared
access signatures made with current and with replaced keys, and restarts of the store (a new store
and application on the same file). Invariants, after every step:

- regenerating one key never changes the other;
- a signature made with a key validates exactly while that key is current and ``access`` enabled;
- the entity tag changes on every change and only then;
- no answer but listSecrets' ever contains a key (every key the model ever saw is searched for).

Seeded (``derandomize``) so a failure replays; the example count is small enough for CI and can be
raised with STATE_MACHINE_EXAMPLES.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tenant_access.security.sas import make_sas
from tests.conftest import API, SERVICE_BODY, service_path
from tests.reliability import invariants
from tests.reliability.inproc import InProcessServer, settings_for

NAMES = ("access", "gitAccess")
SLOTS = ("primary", "secondary")
SVC = service_path("stateful")


@dataclass(frozen=True)
class Config:
    primary: str
    secondary: str
    etag: str
    enabled: bool
    principal: str
    keys: dict[str, str | None] = field(default_factory=lambda: {"primary": None, "secondary": None})

    def version(self, slot: str) -> str:
        return self.primary if slot == "primary" else self.secondary


@dataclass(frozen=True)
class Signature:
    header: str
    slot: str
    key: str
    uid: str


class TenantAccessMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="state-machine-"))
        self.server = InProcessServer(settings_for(self.dir)).start()
        self.http = httpx.Client(base_url=self.server.url, headers=self.server.auth(), timeout=30)
        self.model: dict[str, Config] = {}
        self.old_etags: dict[str, list[str]] = {name: [] for name in NAMES}
        self.seen_keys: set[str] = set()
        self.used_keys: list[tuple[str, str, str, str]] = []  # (idempotency key, url, version, name)
        self.signatures: list[Signature] = []

    def teardown(self) -> None:
        self.http.close()
        self.server.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- plumbing ------------------------------------------------------------------------------------

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self.http.request(method, f"{SVC}{path}?{API}", **kwargs)
        if not path.endswith("/listSecrets"):
            text = response.text + str(response.headers)
            for key in self.seen_keys:
                assert key not in text, f"a key leaked from {method} {path}"
        return response

    def read(self, name: str) -> dict[str, Any]:
        response = self.call("GET", f"/tenant/{name}")
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()["data"]
        assert "primary_key" not in data and "secondary_key" not in data
        assert response.headers["etag"] == f'"{data["etag"]}"'
        return data

    def changed(self, name: str, new: Config) -> None:
        old = self.model[name]
        if new.etag != old.etag:
            self.old_etags[name].append(old.etag)
        self.model[name] = new

    # -- rules -----------------------------------------------------------------------------------------

    @initialize()
    def create_service(self) -> None:
        assert self.call("PUT", "", json=SERVICE_BODY).status_code == 201
        for name in NAMES:
            data = self.read(name)
            self.model[name] = Config(data["primary_key_version_id"], data["secondary_key_version_id"],
                                      data["etag"], data["enabled"], data["principal_id"])

    @rule(name=st.sampled_from(NAMES), slot=st.sampled_from(SLOTS), git=st.booleans(),
          idempotent=st.booleans())
    def regenerate(self, name: str, slot: str, git: bool, idempotent: bool) -> None:
        # The git operations always rotate gitAccess, whatever the path names.
        target = "gitAccess" if git else name
        path = f"/tenant/{name}/{'git/' if git else ''}regenerate{slot.capitalize()}Key"
        key = secrets.token_hex(8) if idempotent else None
        response = self.call("POST", path, headers={"Idempotency-Key": key} if key else {})
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        old = self.model[target]
        assert data["previous_id"] == old.version(slot)
        assert data["id"] != old.version(slot)
        assert data["etag"] != old.etag
        assert data["access_name"] == target and data["key"] == slot
        other = "secondary" if slot == "primary" else "primary"
        keys = {**old.keys, slot: None}
        new = replace(old, etag=data["etag"], keys=keys, **{slot: data["id"]})
        self.changed(target, new)
        after = self.read(target)
        assert after[f"{other}_key_version_id"] == old.version(other), "regenerating one key changed the other"
        if key:
            self.used_keys.append((key, path, data["id"], target))

    @precondition(lambda self: self.used_keys)
    @rule(data=st.data())
    def retry_with_a_used_idempotency_key(self, data: st.DataObject) -> None:
        key, path, version, target = data.draw(st.sampled_from(self.used_keys))
        before = self.read(target)
        response = self.call("POST", path, headers={"Idempotency-Key": key})
        assert response.status_code == 200, response.text
        assert response.json()["data"]["id"] == version
        assert response.headers["idempotent-replayed"] == "true"
        assert self.read(target) == before, "a replay changed the configuration"

    @precondition(lambda self: self.used_keys)
    @rule(data=st.data())
    def reuse_an_idempotency_key_elsewhere(self, data: st.DataObject) -> None:
        key, path, _version, _target = data.draw(st.sampled_from(self.used_keys))
        other = path.replace("Primary", "Secondary") if "Primary" in path else path.replace("Secondary", "Primary")
        before = {name: self.read(name) for name in NAMES}
        response = self.call("POST", other, headers={"Idempotency-Key": key})
        assert response.status_code == 409, response.text
        assert {name: self.read(name) for name in NAMES} == before

    @rule(name=st.sampled_from(NAMES))
    def list_secrets(self, name: str) -> None:
        response = self.call("POST", f"/tenant/{name}/listSecrets")
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        config = self.model[name]
        assert (data["primary_key_version_id"], data["secondary_key_version_id"]) == (config.primary, config.secondary)
        assert data["etag"] == config.etag, "reading the keys changed the entity tag"
        for slot in SLOTS:
            known = config.keys[slot]
            assert known is None or known == data[f"{slot}_key"], "a key changed without a new version"
        self.seen_keys |= {data["primary_key"], data["secondary_key"]}
        self.model[name] = replace(config, keys={"primary": data["primary_key"], "secondary": data["secondary_key"]})

    @rule(name=st.sampled_from(NAMES))
    def head(self, name: str) -> None:
        response = self.call("HEAD", f"/tenant/{name}")
        assert response.status_code == 200
        assert response.headers["etag"] == f'"{self.model[name].etag}"'

    @rule(name=st.sampled_from(NAMES), enabled=st.booleans(), stale=st.booleans())
    def patch(self, name: str, enabled: bool, stale: bool) -> None:
        config = self.model[name]
        if stale and not self.old_etags[name]:
            return
        tag = self.old_etags[name][-1] if stale else config.etag
        response = self.call("PATCH", f"/tenant/{name}", headers={"If-Match": f'"{tag}"'},
                             json={"properties": {"enabled": enabled}})
        if stale:
            assert response.status_code == 412, response.text
            assert self.read(name)["etag"] == config.etag
            return
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        assert (data["etag"] != config.etag) == (enabled != config.enabled), "the entity tag moved without a change"
        self.changed(name, replace(config, enabled=enabled, etag=data["etag"]))

    @rule(name=st.sampled_from(NAMES), principal=st.sampled_from(["integration", "git", "ops-1"]),
          supply=st.sampled_from(["none", "same", "new"]), slot=st.sampled_from(SLOTS), stale=st.booleans(),
          star=st.booleans())
    def put(self, name: str, principal: str, supply: str, slot: str, stale: bool, star: bool) -> None:
        config = self.model[name]
        if (stale and not self.old_etags[name]) or (supply == "same" and config.keys[slot] is None):
            return
        props: dict[str, Any] = {"principalId": principal}
        chosen = None
        if supply != "none":
            chosen = config.keys[slot] if supply == "same" else "K" + secrets.token_urlsafe(40)
            props[f"{slot}Key"] = chosen
            self.seen_keys.add(chosen)  # type: ignore[arg-type]
        tag = f'"{self.old_etags[name][0]}"' if stale else "*" if star else f'"{config.etag}"'
        response = self.call("PUT", f"/tenant/{name}", headers={"If-Match": tag},
                             json={"properties": props})
        if stale:
            assert response.status_code == 412, response.text
            return
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        new_key = supply == "new"
        assert (data[f"{slot}_key_version_id"] != config.version(slot)) == new_key
        assert (data["etag"] != config.etag) == (new_key or principal != config.principal)
        keys = {**config.keys, slot: chosen} if new_key else config.keys
        self.changed(name, replace(config, principal=principal, etag=data["etag"], keys=keys,
                                   **{slot: data[f"{slot}_key_version_id"]}))

    @precondition(lambda self: any(self.model["access"].keys.values()))
    @rule(slot=st.sampled_from(SLOTS), uid=st.sampled_from(["current", "other"]))
    def make_signature(self, slot: str, uid: str) -> None:
        config = self.model["access"]
        key = config.keys[slot]
        if key is None:
            return
        who = config.principal if uid == "current" else "someone-else"
        soon = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        self.signatures.append(Signature(make_sas(who, key, soon), slot, key, who))

    @precondition(lambda self: self.signatures)
    @rule(data=st.data())
    def use_a_signature(self, data: st.DataObject) -> None:
        signature = data.draw(st.sampled_from(self.signatures))
        config = self.model["access"]
        current = signature.key == config.keys[signature.slot]
        expected = 200 if current and config.enabled and signature.uid == config.principal else 401
        response = self.http.get(f"{SVC}/tenant/access?{API}", headers={"Authorization": signature.header})
        assert response.status_code == expected, (signature.slot, current, config.enabled, response.text)

    @rule()
    def restart(self) -> None:
        """A new store and application on the same file: everything the model knows survives."""
        self.server.stop()
        self.server = InProcessServer(settings_for(self.dir)).start()
        self.http.close()
        self.http = httpx.Client(base_url=self.server.url, headers=self.server.auth(), timeout=30)

    # -- invariants ------------------------------------------------------------------------------------

    @invariant()
    def the_server_agrees_with_the_model(self) -> None:
        if not self.model:
            return
        for name in NAMES:
            data, config = self.read(name), self.model[name]
            assert (data["primary_key_version_id"], data["secondary_key_version_id"], data["etag"], data["enabled"],
                    data["principal_id"]) == (config.primary, config.secondary, config.etag, config.enabled,
                                              config.principal)


@pytest.mark.slow
def test_the_state_machine(tmp_path: Path) -> None:
    machine = settings(
        max_examples=int(os.environ.get("STATE_MACHINE_EXAMPLES", "25")), stateful_step_count=30,
        deadline=None, derandomize=True, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )(TenantAccessMachine)
    runner = machine.TestCase()
    runner.runTest()


def test_the_database_after_a_short_run_is_consistent(tmp_path: Path) -> None:
    """One fixed sequence, outside Hypothesis, with the database checked afterwards."""
    machine = TenantAccessMachine()
    try:
        machine.create_service()
        for name, slot, git in (("access", "secondary", False), ("access", "primary", True), ("gitAccess", "primary",
                                                                                              False)):
            machine.regenerate(name, slot, git, True)
            machine.list_secrets(name)
        machine.patch("access", True, False)
        machine.restart()
        machine.the_server_agrees_with_the_model()
        assert invariants.problems(machine.dir / "tenant-access.db") == []
    finally:
        machine.teardown()
