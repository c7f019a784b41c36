"""``tenant-access serve --seed FILE`` over a real server process, and reset on every backend."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.backends import Backend
from tests.serverproc import ServerProcess

SUB = "11111111-2222-3333-4444-555555555555"
FIXED = "fixed-key-for-the-test-rig-0123456789abcdef"
SEED_YAML = f"""
# A test rig: two services, one with a fixed access key.
subscription: {SUB}
resource_group: rig
services:
  - name: alpha
    location: West Europe
    sku: Premium
    publisher_email: ops@example.com
    publisher_name: Ops
    access:
      enabled: yes
      primary_key: {FIXED}
  - name: beta
"""
API = "api-version=2024-05-01"


def _svc(server: ServerProcess, name: str) -> str:
    return f"{server.url}/subscriptions/{SUB}/resourceGroups/rig/providers/Microsoft.ApiManagement/service/{name}"


def test_serve_seed_provisions_once_and_leaves_keys_alone_on_restart(tmp_path: Path) -> None:
    seed = tmp_path / "rig.yaml"
    seed.write_text(SEED_YAML)
    server = ServerProcess(tmp_path / "data", ["--seed", str(seed)]).start()
    try:
        assert f"seeded 2 service(s) from {seed}: 2 created, 0 updated, 0 unchanged" in server.log()
        headers = server.auth()
        secrets = httpx.post(f"{_svc(server, 'alpha')}/tenant/access/listSecrets?{API}", headers=headers).json()
        assert secrets["data"]["primary_key"] == FIXED and secrets["data"]["enabled"] is True
        rotated = httpx.post(f"{_svc(server, 'alpha')}/tenant/access/regeneratePrimaryKey?{API}", headers=headers)
        assert rotated.status_code == 200
        server.restart()
        assert "2 service(s)" in server.log() and "0 created, 0 updated, 2 unchanged" in server.log()
        after = httpx.post(f"{_svc(server, 'alpha')}/tenant/access/listSecrets?{API}", headers=server.auth()).json()
        assert after["data"]["primary_key"] != FIXED  # the rotation survived the re-seed
        assert after["data"]["primary_key_version_id"] == rotated.json()["data"]["id"]
        # With strict auth and no flag, the controls are off.
        assert httpx.get(f"{server.url}/_emulator/state", headers=server.auth()).status_code == 404
    finally:
        server.stop()


def test_a_json_seed_from_the_environment(tmp_path: Path) -> None:
    seed = tmp_path / "rig.json"
    seed.write_text(json.dumps({"subscription": SUB, "resource_group": "rig", "services": [{"name": "gamma"}]}))
    server = ServerProcess(tmp_path / "data", ["--emulator-controls"], env={"TENANT_ACCESS_SEED": str(seed)}).start()
    try:
        assert "1 created" in server.log()
        assert "emulator controls are on" in server.log()
        state = httpx.get(f"{server.url}/_emulator/state", headers=server.auth()).json()
        assert [s["name"] for s in state["services"]] == ["gamma"]
    finally:
        server.stop()


def test_a_bad_seed_file_stops_the_start_naming_every_problem(tmp_path: Path) -> None:
    seed = tmp_path / "bad.yaml"
    seed.write_text("services:\n  - name: 9lives\n    sku: Huge\n    colour: red\n")
    with pytest.raises(RuntimeError) as caught:
        ServerProcess(tmp_path / "data", ["--seed", str(seed)]).start()
    text = str(caught.value)
    for where in ("services[0].subscription", "services[0].resource_group", "services[0].name",
                  "services[0].sku.name", "services[0].colour"):
        assert where in text, text
    broken = tmp_path / "broken.yaml"
    broken.write_text("services: [\n")
    with pytest.raises(RuntimeError, match="not valid YAML"):
        ServerProcess(tmp_path / "data2", ["--seed", str(broken)]).start()


def test_reset_and_state_on_each_storage_backend(db_backend: Backend, tmp_path: Path) -> None:
    seed = tmp_path / "rig.yaml"
    seed.write_text(SEED_YAML)
    server = db_backend.server(tmp_path / "data", ["--emulator-controls", "--seed", str(seed)]).start()
    try:
        with httpx.Client(base_url=server.url, headers=server.auth(), timeout=10) as http:
            state = http.get("/_emulator/state", params={"reveal": "true"}).json()
            assert [s["name"] for s in state["services"]] == ["alpha", "beta"]
            assert state["services"][0]["access"]["primary_key"] == FIXED
            assert http.post("/_emulator/reset").json() == {"reset": True}
            assert http.get("/_emulator/state").json()["services"] == []
            assert http.get(f"{_svc(server, 'alpha').removeprefix(server.url)}?{API}").status_code == 404
            audit = http.get(f"{_svc(server, 'alpha').removeprefix(server.url)}/auditEvents?{API}").json()
            assert audit["data"] == []
            seeded = http.post("/_emulator/seed", json=state).json()
            assert [s["result"] for s in seeded["services"]] == ["created", "created"]
            again = http.get("/_emulator/state", params={"reveal": "true"}).json()
            assert again["services"][0]["access"]["primary_key"] == FIXED
    finally:
        server.stop()
