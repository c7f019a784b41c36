"""The rotation policy over 400 simulated days, through HTTP, with the moved clock.

A fleet of SAS clients follows rotations (it polls the configuration and moves to the newest key,
each client with its own lag) and makes a request every simulated day. At every step every client
is answered (zero downtime), no key is regenerated while a client used it within the grace period,
and every key is regenerated within two rotation periods (each rotation regenerates the key the
clients left) and before it expires. A fleet that never moves is never cut off by the policy:
rotation is blocked, recorded once per episode and shown, never forced.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

import httpx

from tenant_access.client import ServiceRef, sas_token
from tenant_access.testing import RunningServer

SUB = "11111111-2222-3333-4444-555555555555"
API = "api-version=2024-05-01"
PERIOD = _dt.timedelta(days=30)
GRACE = _dt.timedelta(days=2)
EXPIRY = _dt.timedelta(days=75)
DAYS = 400


def _base(name: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ApiManagement/service/{name}"


def _time(text: str) -> _dt.datetime:
    return _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class Client:
    slot: str
    lag_days: int
    move_at: _dt.datetime | None = None


class Fleet:
    def __init__(self, server: RunningServer, http: httpx.Client, name: str, clients: list[Client]) -> None:
        self.server, self.http, self.name, self.clients = server, http, name, clients
        self.base = _base(name)
        self.now = server.now()
        self.keys: dict[str, str] = {}
        self.versions: dict[str, tuple[str, _dt.datetime]] = {}
        #: version id -> the last (simulated) time a client used it
        self.last_use: dict[str, _dt.datetime] = {}
        self.created: dict[str, _dt.datetime] = {}
        self.replaced: dict[str, _dt.datetime] = {}
        self.refresh()

    def refresh(self) -> bool:
        """Read the configuration (as a fleet's controller would on a notification); True on a change."""
        data = self.http.get(f"{self.base}/tenant/access?{API}").json()["data"]
        versions = {slot: (data[f"{slot}_key_version_id"], _time(data[f"{slot}_key_created_at"]))
                    for slot in ("primary", "secondary")}
        if versions == self.versions:
            return False
        for slot, (vid, created) in versions.items():
            self.created.setdefault(vid, created)
            old = self.versions.get(slot)
            if old is not None and old[0] != vid:
                self.replaced[old[0]] = created
        self.versions = versions
        secrets = self.http.post(f"{self.base}/tenant/access/listSecrets?{API}").json()["data"]
        self.keys = {"primary": secrets["primary_key"], "secondary": secrets["secondary_key"]}
        return True

    def newest(self) -> str:
        return max(("primary", "secondary"), key=lambda slot: self.versions[slot][1])

    def step(self, days: int = 1) -> None:
        moved = self.http.post("/_emulator/clock/advance", json={"by": f"P{days}D"}).json()
        self.now = _time(moved["now"])
        if self.refresh():
            for client in self.clients:  # the notification: move to the newest key after your lag
                if client.lag_days >= 0 and client.slot != self.newest():
                    client.move_at = self.now + _dt.timedelta(days=client.lag_days)
        for client in self.clients:
            if client.move_at is not None and self.now >= client.move_at:
                client.slot, client.move_at = self.newest(), None
            self.use(client)

    def use(self, client: Client) -> None:
        token = sas_token("integration", self.keys[client.slot], self.now + _dt.timedelta(hours=1))
        answer = self.http.get(f"{self.base}?{API}", headers={"Authorization": f"SharedAccessSignature {token}"})
        assert answer.status_code == 200, f"day {self.now}: a client on the {client.slot} key was cut off"
        self.last_use[self.versions[client.slot][0]] = self.now

    def policy_status(self) -> dict[str, object]:
        status: dict[str, object] = self.http.get(
            f"{self.base}/tenant/access/rotationPolicy?{API}").json()["data"]["status"]
        return status


def _setup(server: RunningServer, http: httpx.Client, name: str, expiry: _dt.timedelta | None) -> None:
    server.emulator.seed({"services": [{"subscription": SUB, "resource_group": "rg", "name": name,
                                        "access": {"enabled": True}}]})
    policy = {"lifetimeActions": [{"trigger": {"timeAfterCreate": f"P{PERIOD.days}D"}, "action": {"type": "Rotate"}}],
              "attributes": {"expiryTime": f"P{expiry.days}D" if expiry else None}, "gracePeriod": f"P{GRACE.days}D"}
    assert http.put(f"{_base(name)}/tenant/access/rotationPolicy?{API}", json=policy).status_code == 200


def test_a_following_fleet_is_never_cut_off_and_every_key_is_rotated(tenant_access_server: RunningServer) -> None:
    server = tenant_access_server
    with httpx.Client(base_url=server.url, headers=server.headers()) as http:
        _setup(server, http, "fleet", EXPIRY)
        fleet = Fleet(server, http, "fleet", [Client("primary", lag) for lag in (0, 1, 1, 2, 3, 3)])
        start = fleet.now
        for _ in range(DAYS):
            fleet.step()
        audit = server.client.list_audit_events(ServiceRef(SUB, "rg", "fleet"), kind="changes")
        assert fleet.policy_status()["blockedSince"] is None
    rotations = [e for e in audit if e.principal == "policy" and (e.operation or "").startswith("access.regenerate")]
    assert len(rotations) >= DAYS // PERIOD.days - 1, [e.operation for e in rotations]
    assert not [e for e in audit if e.operation == "access.rotation_blocked"]
    for record in rotations:  # none regenerated while in use (within the grace period)
        assert record.old_version_id is not None and record.time is not None
        used = fleet.last_use.get(record.old_version_id)
        assert used is None or record.time - used >= GRACE, (record.old_version_id, used, record.time)
    for vid, created in fleet.created.items():  # every key rotated within two periods, before it expires
        end = fleet.replaced.get(vid, fleet.now)
        if created > start or vid in fleet.replaced:
            assert end - created <= 2 * PERIOD + _dt.timedelta(days=2), (vid, created, end)
            assert end - created < EXPIRY


def test_a_fleet_that_never_moves_blocks_rotation_and_is_never_forced(tenant_access_server: RunningServer) -> None:
    server = tenant_access_server
    with httpx.Client(base_url=server.url, headers=server.headers()) as http:
        # Half the fleet on each key, never moving: no key is ever unused.
        _setup(server, http, "stuck", None)
        both = Fleet(server, http, "stuck", [Client("primary", -1), Client("secondary", -1)])
        original = dict(both.versions)
        for _ in range(3 * PERIOD.days):
            both.step()
        status = both.policy_status()
        assert both.versions == original  # never forced
        assert status["blockedSince"] is not None and str(status["lastOutcome"]).startswith(
            "rotation blocked: both keys in use since")
        # One fleet on the primary only: the unused secondary is rotated once, then the policy waits for it.
        _setup(server, http, "lazy", None)
        lazy = Fleet(server, http, "lazy", [Client("primary", -1)])
        primary = lazy.versions["primary"]
        for _ in range(3 * PERIOD.days):
            lazy.step()
        assert lazy.versions["primary"] == primary
        assert "have not moved to the secondary key" in str(lazy.policy_status()["lastOutcome"])
        blocked = [e for ref in ("stuck", "lazy") for e in server.client.list_audit_events(
            ServiceRef(SUB, "rg", ref)) if e.operation == "access.rotation_blocked"]
        assert len(blocked) == 2, [(e.target, e.detail) for e in blocked]  # once per blocked episode
        assert all(e.principal == "policy" for e in blocked)
