"""Regressions of the identity defects, each against a server started only with options that existed
before they were fixed (so each test shows the defect on the old code): tokens without ``iss``,
an OpenID document taken from the ``Host`` header and without ``jwks_uri``, tokens and signatures
that never expire, and a token endpoint minting tokens for any audience but the server's own."""

from __future__ import annotations

import base64
import datetime as dt
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from tenant_access.security.sas import make_sas
from tests.conftest import API, SERVICE_BODY, provider, service_path
from tests.serverproc import ServerProcess


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start(data_dir: Path, port: int, args: list[str]) -> ServerProcess:
    server = ServerProcess(data_dir, [*args, "--auth-failures-per-minute", "100000"])
    server.port = port
    return server.start()


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = _start(tmp_path_factory.mktemp("regressions"), _free_port(), ["--tls"])
    yield server
    server.stop()


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TENANT_ACCESS_")}
    return subprocess.run([sys.executable, "-m", "tenant_access", *args], capture_output=True, text=True, timeout=60,
                          check=False, env={**environ, **(env or {})})


def cli_token(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """``tenant-access token`` as an operator runs it beside the server: same data dir, port and TLS setting."""
    env = {"TENANT_ACCESS_PORT": str(server.port)}
    if server.url.startswith("https:"):
        env["TENANT_ACCESS_TLS"] = "true"
    return cli("token", "--data-dir", str(server.data_dir), *args, env=env)


def client(server: ServerProcess) -> httpx.Client:
    verify = ssl.create_default_context(cafile=str(server.cert_path)) if server.cert_path else True
    return httpx.Client(base_url=server.url, verify=verify, timeout=30)


def status(server: ServerProcess, token: str) -> int:
    with client(server) as http:
        return http.get(f"{provider('regress-rg')}/service?{API}",
                        headers={"Authorization": f"Bearer {token}"}).status_code


def owner(server: ServerProcess) -> dict[str, str]:
    made = cli_token(server, "--expires-in", "600")
    assert made.returncode == 0, made.stderr
    return {"Authorization": f"Bearer {made.stdout.strip()}"}


def test_the_own_token_carries_iss_and_is_accepted_with_token_issuer_set(tmp_path: Path) -> None:
    port = _free_port()
    server = _start(tmp_path, port, ["--token-issuer", f"http://127.0.0.1:{port}"])
    try:
        made = cli_token(server, "--expires-in", "600")
        assert made.returncode == 0, made.stderr
        assert jwt.decode(made.stdout.strip(), options={"verify_signature": False}).get("iss") == server.url
        assert status(server, made.stdout.strip()) == 200
    finally:
        server.stop()


def test_the_openid_document_is_the_same_whatever_the_host_header(tls_server: ServerProcess) -> None:
    with client(tls_server) as http:
        honest = http.get("/local/v2.0/.well-known/openid-configuration")
        poisoned = http.get("/local/v2.0/.well-known/openid-configuration", headers={"Host": "evil.example"})
    assert honest.status_code == poisoned.status_code == 200
    assert honest.content == poisoned.content
    assert "evil.example" not in poisoned.text
    assert honest.json()["token_endpoint"] == f"{tls_server.url}/local/oauth2/v2.0/token"


def test_the_openid_document_has_a_served_jwks_uri(tls_server: ServerProcess) -> None:
    with client(tls_server) as http:
        document = http.get("/local/v2.0/.well-known/openid-configuration").json()
        assert document["jwks_uri"].startswith(tls_server.url + "/")
        keys = http.get(document["jwks_uri"].removeprefix(tls_server.url))
    assert keys.status_code == 200
    assert keys.json() == {"keys": []}


def test_a_token_with_exp_10_to_the_30_is_refused(tls_server: ServerProcess) -> None:
    key = base64.b64decode((tls_server.data_dir / "signing-key").read_text().strip())
    claims = {"sub": "x", "role": "owner", "scope": "/", "aud": "https://management.azure.com/",
              "iss": tls_server.url, "iat": int(time.time()), "exp": 10**30}
    assert status(tls_server, jwt.encode(claims, key, algorithm="HS256")) == 401


def test_a_366_day_token_is_not_issued(tls_server: ServerProcess) -> None:
    made = cli_token(tls_server, "--expires-in", str(366 * 24 * 3600))
    assert made.returncode == 2
    assert made.stdout == ""


def _principal(server: ServerProcess) -> tuple[str, str]:
    created = cli("principals", "create", "--data-dir", str(server.data_dir), "--role", "owner", "--scope", "/")
    assert created.returncode == 0, created.stderr
    fields = dict(line.split(":", 1) for line in created.stdout.splitlines() if ":" in line)
    return fields["client id"].strip(), fields["client secret"].strip()


def _sign_in(server: ServerProcess, scope: str) -> httpx.Response:
    client_id, secret = _principal(server)
    with client(server) as http:
        return http.post("/local/oauth2/v2.0/token", data={
            "grant_type": "client_credentials", "client_id": client_id, "client_secret": secret, "scope": scope})


def test_a_foreign_audience_is_invalid_scope(tls_server: ServerProcess) -> None:
    response = _sign_in(tls_server, "https://evil.example/.default")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


@pytest.mark.parametrize("suffix", ["/.default", "//.default"])
def test_the_servers_own_endpoint_scope_gives_a_token_it_accepts(tls_server: ServerProcess, suffix: str) -> None:
    response = _sign_in(tls_server, tls_server.url + suffix)
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    assert jwt.decode(token, options={"verify_signature": False})["aud"] == tls_server.url + "/"
    assert status(tls_server, token) == 200


def test_a_sas_expiring_in_year_9999_is_refused(tls_server: ServerProcess) -> None:
    headers = owner(tls_server)
    path = service_path(f"regress-{time.monotonic_ns()}")
    with client(tls_server) as http:
        assert http.put(f"{path}?{API}", json=SERVICE_BODY, headers=headers).status_code == 201
        assert http.patch(f"{path}/tenant/access?{API}", json={"properties": {"enabled": True}},
                          headers={**headers, "If-Match": "*"}).status_code == 200
        keys = http.post(f"{path}/tenant/access/listSecrets?{API}", headers=headers).json()["data"]
        for expiry, expected in ((dt.datetime.now(dt.UTC) + dt.timedelta(hours=1), 200),
                                 (dt.datetime(9999, 12, 31, tzinfo=dt.UTC), 401)):
            sas = make_sas(keys["principal_id"], keys["primary_key"], expiry)
            assert http.get(f"{path}/tenant/access?{API}", headers={"Authorization": sas}).status_code == expected
