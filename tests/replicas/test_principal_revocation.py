"""A disabled, re-keyed or deleted service principal's token stops working on every replica within a
second, although each replica remembers the tokens it verified and caches principals."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import API, provider
from tests.replicas.conftest import figure
from tests.replicas.harness import Replicas, replicas_on
from tests.serverproc import ServerProcess

DEADLINE = 1.0
PUBLIC = "https://replicas.example.com"  # replicas behind one name share one issuer


def _cli(replicas: Replicas, database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANT_ACCESS_")}
    env["TENANT_ACCESS_MASTER_KEY"] = replicas[0].env["TENANT_ACCESS_MASTER_KEY"]
    result = subprocess.run(
        [sys.executable, "-m", "tenant_access", "principals", *args, "--data-dir", str(replicas[0].data_dir),
         "--database-url", database_url],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )
    assert result.returncode == 0, result.stderr
    return result


def _sign_in(server: ServerProcess, client_id: str, secret: str) -> str:
    response = httpx.post(f"{server.url}/local/oauth2/v2.0/token", timeout=30, data={
        "grant_type": "client_credentials", "client_id": client_id, "client_secret": secret,
        "scope": f"{PUBLIC}/.default"})
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def _status(client: httpx.Client, server: ServerProcess, token: str) -> int:
    return client.get(f"{server.url}{provider('revoke-rg')}/service?{API}",
                      headers={"Authorization": f"Bearer {token}"}).status_code


def _refused_after(client: httpx.Client, server: ServerProcess, token: str) -> float:
    start = time.monotonic()
    while _status(client, server, token) != 401:
        if time.monotonic() - start > DEADLINE:
            raise AssertionError(f"a revoked principal's token still worked on a replica {DEADLINE}s later")
    return time.monotonic() - start


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_revoked_principals_token_is_refused_on_every_replica_within_a_second(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest,
) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    with replicas_on(tmp_path / "replicas", ["--database-url", url], count=2, extra=["--public-url", PUBLIC]) \
            as replicas, httpx.Client(timeout=10) as client:
        a, b = replicas[0], replicas[1]
        delays = []
        for action in ("disable", "rotate-secret", "delete"):
            created = _cli(replicas, url, "create", "--role", "owner", "--scope", "/").stdout
            fields = dict(line.split(":", 1) for line in created.splitlines() if ":" in line)
            client_id, secret = fields["client id"].strip(), fields["client secret"].strip()
            token = _sign_in(a, client_id, secret)
            for server in replicas:  # each replica verifies it once, and remembers it from then on
                assert _status(client, server, token) == 200
            _cli(replicas, url, action, client_id)
            delays.append(_refused_after(client, b, token))
            assert _status(client, a, token) == 401
        figure(f"principal revocation seen by another replica ({backend}): "
               + ", ".join(f"{d * 1000:.0f} ms" for d in delays))
