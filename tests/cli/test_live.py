"""The installed command as a user runs it: a separate process against a live server process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serverproc import ServerProcess

SUB = "11111111-2222-3333-4444-555555555555"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("cli-live"), ["--emulator-controls"]).start()
    yield proc
    proc.stop()


def tenant_access(server: ServerProcess, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TENANT_ACCESS_")}
    environ.update({"TENANT_ACCESS_ENDPOINT": server.url, "TENANT_ACCESS_TOKEN": server.token(),
                    "TENANT_ACCESS_SUBSCRIPTION": SUB, "TENANT_ACCESS_RESOURCE_GROUP": "live-rg", **env})
    return subprocess.run([sys.executable, "-m", "tenant_access", *args], capture_output=True, text=True,
                          env=environ, timeout=60, check=False)


def test_a_rotation_from_the_shell(server: ServerProcess) -> None:
    created = tenant_access(server, "services", "create", "live-apim", "--location", "westeurope",
                            "--publisher-email", "ops@example.com", "--publisher-name", "Ops", "-o", "json")
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["name"] == "live-apim"
    before = json.loads(tenant_access(server, "keys", "show", "live-apim", "--reveal", "-o", "json").stdout)
    rotated = tenant_access(server, "keys", "regenerate", "secondary", "live-apim", "-o", "json")
    assert rotated.returncode == 0, rotated.stderr
    after = json.loads(tenant_access(server, "keys", "show", "live-apim", "--reveal", "-o", "json").stdout)
    assert after["primary_key"] == before["primary_key"]
    assert after["secondary_key"] != before["secondary_key"]
    assert after["secondary_key_version_id"] == json.loads(rotated.stdout)["id"]
    table = tenant_access(server, "services", "list")
    assert table.stdout.splitlines()[0].startswith("NAME") and "live-apim" in table.stdout


def test_exit_codes_from_a_real_process(server: ServerProcess, tmp_path: Path) -> None:
    assert tenant_access(server, "services", "list", TENANT_ACCESS_SUBSCRIPTION="").returncode == 2
    assert tenant_access(server, "services", "list", TENANT_ACCESS_TOKEN="garbage").returncode == 3
    missing = tenant_access(server, "services", "show", "not-there")
    assert missing.returncode == 4 and missing.stderr.startswith("Error: 404")
    assert tenant_access(server, "services", "create", "bad", "-l", "w", "--publisher-email", "e",
                         "--publisher-name", "n", "--sku", "Nope").returncode == 5
    assert tenant_access(server, "services", "list", TENANT_ACCESS_ENDPOINT="http://127.0.0.1:9").returncode == 6
    faults = tenant_access(server, "emulator", "faults", "set", "--operation", "services.list", "--count", "1")
    assert faults.returncode == 0, faults.stderr
    assert tenant_access(server, "services", "list").returncode == 6
    assert tenant_access(server, "services", "list").returncode == 0


def test_help_is_fast_and_loads_neither_server_nor_client() -> None:
    code = ("import sys, time; t = time.perf_counter(); import tenant_access.cli; "
            "print(time.perf_counter() - t); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('httpx', 'uvicorn', 'cryptography', 'jwt', "
            "'yaml', 'psycopg') or m.startswith(('tenant_access.http', 'tenant_access.client', "
            "'tenant_access.storage'))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seconds, modules = result.stdout.splitlines()
    assert modules == "[]"
    assert float(seconds) < 0.5
    helped = subprocess.run([sys.executable, "-m", "tenant_access", "keys", "--help"], capture_output=True,
                            text=True, check=False)
    assert helped.returncode == 0 and "regenerate" in helped.stdout
