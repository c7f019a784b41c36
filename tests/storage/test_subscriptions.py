"""Declared subscriptions (migration 0009) on both stores: ``tenant-access subscriptions add`` makes
a subscription that Resource Manager clients list before it holds a service."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.backends import Backend, DbServer
from tests.serverproc import ServerProcess

DECLARED = "dec1a4ed-0000-4000-8000-000000000001"
HOLDING = "f011ed00-0000-4000-8000-000000000002"
ARM = "api-version=2022-12-01"
BODY = {"location": "westeurope", "sku": {"name": "Developer", "capacity": 1},
        "properties": {"publisherEmail": "ops@example.com", "publisherName": "Ops"}}


def _cli(server: DbServer, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANT_ACCESS_")}
    done = subprocess.run([sys.executable, "-m", "tenant_access", *args, "--data-dir", str(server.data_dir),
                           *server.database.args()], capture_output=True, text=True, env=env, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _listed(server: ServerProcess, scope: str = "/") -> dict[str, str]:
    answer = httpx.get(f"{server.url}/subscriptions?{ARM}", headers=server.auth("reader", scope))
    assert answer.status_code == 200, answer.text
    return {s["subscriptionId"]: s["displayName"] for s in answer.json()["value"]}


def test_declared_subscriptions_are_listed_with_their_names(db_backend: Backend, tmp_path: Path) -> None:
    server = db_backend.server(tmp_path / "data", ["--api-style", "azure"]).start()
    try:
        path = f"/subscriptions/{HOLDING}/resourceGroups/rg/providers/Microsoft.ApiManagement/service/svc"
        assert httpx.put(f"{server.url}{path}?api-version=2024-05-01", json=BODY,
                         headers=server.auth()).status_code == 201
        assert _listed(server) == {HOLDING: f"Subscription {HOLDING}"}
        _cli(server, "subscriptions", "add", DECLARED, "--name", "Before its first service")
        _cli(server, "subscriptions", "add", HOLDING.upper(), "--name", "Platform team")
        assert _listed(server) == {DECLARED: "Before its first service", HOLDING: "Platform team"}
        _cli(server, "subscriptions", "add", DECLARED, "--name", "Renamed")
        assert _listed(server, f"/subscriptions/{DECLARED}") == {DECLARED: "Renamed"}
        one = httpx.get(f"{server.url}/subscriptions/{DECLARED}?{ARM}", headers=server.auth("reader"))
        assert one.json()["displayName"] == "Renamed"
        assert DECLARED in _cli(server, "subscriptions", "list")
        server.restart()
        assert _listed(server)[DECLARED] == "Renamed"
    finally:
        server.stop()


def test_a_seed_document_declares_subscriptions(tmp_path: Path) -> None:
    seed = tmp_path / "rig.yaml"
    seed.write_text(f"subscriptions:\n  - id: {DECLARED}\n    name: Rig\nservices: []\n")
    server = ServerProcess(tmp_path / "data", ["--api-style", "azure", "--seed", str(seed),
                                               "--emulator-controls"]).start()
    try:
        assert _listed(server) == {DECLARED: "Rig"}
        state = httpx.get(f"{server.url}/_emulator/state", headers=server.auth()).json()
        assert state["subscriptions"] == [{"id": DECLARED, "name": "Rig"}]  # a dump re-seeds them too
        bad = httpx.post(f"{server.url}/_emulator/seed", headers=server.auth(),
                         json={"subscriptions": [{"id": "nope", "name": ""}]})
        assert bad.status_code == 400
        fields = {d["target"] for d in bad.json()["error"]["details"]}
        assert fields == {"body.subscriptions[0].id", "body.subscriptions[0].name"}
    finally:
        server.stop()

