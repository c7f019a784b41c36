"""The server as its own token issuer, against a real server process: issuer and audiences, the
OpenID document and its key set, lifetimes, and revocation (of service principals and of the
signing key) while the server runs."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from tenant_access.security.sas import make_sas
from tenant_access.security.verification_keys import signing_key_id
from tests.conftest import API, SERVICE_BODY, provider, service_path
from tests.serverproc import ServerProcess

PUBLIC = "https://keys.example.com"
ENTRA = "https://login.microsoftonline.com/11111111-2222-3333-4444-555555555555/v2.0"
DEADLINE = 1.0  # the promise: a revocation is seen within a second


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    made = ServerProcess(tmp_path_factory.mktemp("identity"), [
        "--public-url", PUBLIC + "/", "--token-issuer", ENTRA, "--auth-failures-per-minute", "100000",
    ]).start()
    yield made
    made.stop()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tenant_access", *args], capture_output=True, text=True, timeout=60,
                          check=False)


def create_principal(server: ServerProcess) -> tuple[str, str]:
    created = cli("principals", "create", "--data-dir", str(server.data_dir), "--role", "owner", "--scope", "/")
    assert created.returncode == 0, created.stderr
    fields = dict(line.split(":", 1) for line in created.stdout.splitlines() if ":" in line)
    return fields["client id"].strip(), fields["client secret"].strip()


def sign_in(server: ServerProcess, client_id: str, secret: str,
            scope: str = "https://management.azure.com/.default") -> httpx.Response:
    return httpx.post(f"{server.url}/local/oauth2/v2.0/token", data={
        "grant_type": "client_credentials", "client_id": client_id, "client_secret": secret, "scope": scope,
    }, timeout=30)


def token_of(server: ServerProcess, client_id: str, secret: str, **kwargs: str) -> str:
    response = sign_in(server, client_id, secret, **kwargs)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def status(server: ServerProcess, token: str) -> int:
    """401 when the token is refused; 200 (an empty listing) when it is accepted."""
    return httpx.get(f"{server.url}{provider('identity-rg')}/service?{API}",
                     headers={"Authorization": f"Bearer {token}"}, timeout=30).status_code


def within(deadline: float, condition: Callable[[], bool]) -> float:
    """Seconds until ``condition()`` held; fails past ``deadline`` (plus the request in flight)."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < deadline, f"not within {deadline}s"
        time.sleep(0.02)
    return time.monotonic() - start


# --- issuer -------------------------------------------------------------------------------------


def test_own_tokens_carry_the_public_url_as_issuer_and_are_accepted_with_token_issuer_set(
    server: ServerProcess,
) -> None:
    made = cli("token", "--data-dir", str(server.data_dir), "--public-url", PUBLIC, "--expires-in", "600")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert jwt.decode(token, options={"verify_signature": False})["iss"] == PUBLIC
    assert status(server, token) == 200
    client_id, secret = create_principal(server)
    issued = token_of(server, client_id, secret)
    claims = jwt.decode(issued, options={"verify_signature": False})
    assert (claims["iss"], claims["azp"], claims["idtyp"]) == (PUBLIC, client_id, "app")
    assert status(server, issued) == 200
    # The same key, another issuer: refused (own tokens answer to the own issuer only).
    other = cli("token", "--data-dir", str(server.data_dir), "--public-url", "https://elsewhere.example")
    assert status(server, other.stdout.strip()) == 401


# --- the OpenID document ----------------------------------------------------------------------


def test_the_openid_document_is_built_from_the_public_url_never_the_host_header(server: ServerProcess) -> None:
    documents = [
        httpx.get(f"{server.url}/local/v2.0/.well-known/openid-configuration", headers=headers, timeout=30)
        for headers in ({}, {"Host": "evil.example"}, {"Host": "evil.example:443", "X-Forwarded-Host": "x.example"})
    ]
    assert {d.status_code for d in documents} == {200}
    assert documents[0].content == documents[1].content == documents[2].content
    document = documents[0].json()
    assert document["issuer"] == PUBLIC
    assert document["token_endpoint"] == f"{PUBLIC}/local/oauth2/v2.0/token"
    assert document["authorization_endpoint"] == f"{PUBLIC}/local/oauth2/v2.0/authorize"
    # What MSAL (msal-node's isOpenIdConfigResponse, MSAL Python) and OpenID Connect Discovery require.
    for required in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri", "response_types_supported",
                     "subject_types_supported", "id_token_signing_alg_values_supported"):
        assert document[required], required
    assert f"{PUBLIC}/.default" in document["scopes_supported"]


def test_the_jwks_uri_is_served(server: ServerProcess) -> None:
    document = httpx.get(f"{server.url}/local/v2.0/.well-known/openid-configuration", timeout=30).json()
    assert document["jwks_uri"] == f"{PUBLIC}/local/discovery/v2.0/keys"
    keys = httpx.get(server.url + document["jwks_uri"].removeprefix(PUBLIC), timeout=30)
    assert keys.status_code == 200
    assert keys.headers["content-type"].startswith("application/json")
    assert keys.json() == {"keys": []}  # HS256 under a secret: no public key exists to publish
    adfs = httpx.get(f"{server.url}/adfs/.well-known/openid-configuration", timeout=30).json()
    assert httpx.get(server.url + adfs["jwks_uri"].removeprefix(PUBLIC), timeout=30).json() == {"keys": []}


# --- audiences ----------------------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["https://evil.example/.default", "https://graph.microsoft.com/.default",
                                   f"{PUBLIC}.evil.example/.default", f"{PUBLIC}/", "https://management.azure.com/",
                                   f"{PUBLIC}/.default https://management.azure.com/.default"])
def test_a_scope_the_server_would_not_accept_is_invalid_scope(server: ServerProcess, scope: str) -> None:
    client_id, secret = create_principal(server)
    response = sign_in(server, client_id, secret, scope=scope)
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_scope"
    assert set(body) == {"error", "error_description"}
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(("scope", "audience"), [
    (f"{PUBLIC}/.default", PUBLIC + "/"),
    (f"{PUBLIC}//.default", PUBLIC + "/"),
    ("https://management.azure.com/.default", "https://management.azure.com/"),
    ("https://management.azure.com//.default", "https://management.azure.com/"),
])
def test_the_public_url_scope_gives_a_token_the_server_accepts(server: ServerProcess, scope: str,
                                                                 audience: str) -> None:
    client_id, secret = create_principal(server)
    token = token_of(server, client_id, secret, scope=scope)
    assert jwt.decode(token, options={"verify_signature": False})["aud"] == audience
    assert status(server, token) == 200


# --- lifetimes ----------------------------------------------------------------------------------


def test_a_token_for_ever_is_refused_however_well_signed(server: ServerProcess) -> None:
    from tenant_access.security import signing_keys

    key = signing_keys.load_current(server.data_dir, create=False)
    now = int(time.time())
    for exp in (10**30, now + 366 * 24 * 3600):
        forever = jwt.encode({"sub": "x", "role": "owner", "scope": "/", "aud": "https://management.azure.com/",
                              "iss": PUBLIC, "iat": now, "exp": exp}, key.reveal(), algorithm="HS256",
                             headers={"kid": signing_key_id(key)})
        assert status(server, forever) == 401


def test_the_token_command_refuses_a_366_day_token(server: ServerProcess) -> None:
    made = cli("token", "--data-dir", str(server.data_dir), "--public-url", PUBLIC, "--expires-in",
               str(366 * 24 * 3600))
    assert made.returncode == 2
    assert "maximum token lifetime" in made.stderr
    assert made.stdout == ""


def test_a_sas_expiring_in_year_9999_is_refused(server: ServerProcess) -> None:
    owner = server.auth()
    path = service_path(f"sas-cap-{time.monotonic_ns()}")
    assert httpx.put(f"{server.url}{path}?{API}", json=SERVICE_BODY, headers=owner, timeout=30).status_code == 201
    enabled = httpx.patch(f"{server.url}{path}/tenant/access?{API}", json={"properties": {"enabled": True}},
                          headers={**owner, "If-Match": "*"}, timeout=30)
    assert enabled.status_code == 200, enabled.text
    keys = httpx.post(f"{server.url}{path}/tenant/access/listSecrets?{API}", headers=owner, timeout=30).json()["data"]

    def with_sas(expiry: dt.datetime) -> int:
        sas = make_sas(keys["principal_id"], keys["primary_key"], expiry)
        return httpx.get(f"{server.url}{path}/tenant/access?{API}", headers={"Authorization": sas},
                         timeout=30).status_code

    now = dt.datetime.now(dt.UTC)
    assert with_sas(now + dt.timedelta(hours=1)) == 200
    assert with_sas(dt.datetime(9999, 12, 31, 23, 59, tzinfo=dt.UTC)) == 401
    assert with_sas(now + dt.timedelta(days=31)) == 401


# --- revocation of service principals -----------------------------------------------------------


def test_disabling_a_principal_refuses_its_tokens_at_once_and_enabling_restores_them(server: ServerProcess) -> None:
    client_id, secret = create_principal(server)
    token = token_of(server, client_id, secret)
    assert status(server, token) == 200  # remembered as verified from here on
    assert cli("principals", "disable", client_id, "--data-dir", str(server.data_dir)).returncode == 0
    within(DEADLINE, lambda: status(server, token) == 401)
    assert sign_in(server, client_id, secret).json()["error"] == "invalid_client"
    shown = cli("principals", "show", client_id, "--data-dir", str(server.data_dir))
    assert "disabled since" in shown.stdout
    assert secret not in shown.stdout
    assert cli("principals", "enable", client_id, "--data-dir", str(server.data_dir)).returncode == 0
    within(DEADLINE, lambda: status(server, token) == 200)
    assert status(server, token_of(server, client_id, secret)) == 200


def test_rotating_a_secret_refuses_the_old_secret_and_its_tokens(server: ServerProcess) -> None:
    client_id, secret = create_principal(server)
    token = token_of(server, client_id, secret)
    assert status(server, token) == 200
    rotated = cli("principals", "rotate-secret", client_id, "--data-dir", str(server.data_dir))
    assert rotated.returncode == 0, rotated.stderr
    new_secret = dict(line.split(":", 1) for line in rotated.stdout.splitlines())["client secret"].strip()
    assert new_secret != secret
    assert sign_in(server, client_id, secret).status_code == 401
    within(DEADLINE, lambda: status(server, token) == 401)
    fresh = token_of(server, client_id, new_secret)
    assert jwt.decode(fresh, options={"verify_signature": False})["sgen"] == 1
    assert status(server, fresh) == 200


def test_deleting_a_principal_refuses_its_tokens(server: ServerProcess) -> None:
    client_id, secret = create_principal(server)
    token = token_of(server, client_id, secret)
    assert status(server, token) == 200
    listed = cli("principals", "list", "--data-dir", str(server.data_dir))
    assert client_id in listed.stdout
    assert cli("principals", "delete", client_id, "--data-dir", str(server.data_dir)).returncode == 0
    within(DEADLINE, lambda: status(server, token) == 401)
    assert sign_in(server, client_id, secret).status_code == 401
    assert client_id not in cli("principals", "list", "--data-dir", str(server.data_dir)).stdout
    missing = cli("principals", "delete", client_id, "--data-dir", str(server.data_dir))
    assert missing.returncode == 1
    assert "no service principal" in missing.stderr


# --- signing-key rotation -----------------------------------------------------------------------


def test_signing_key_rotation_keeps_old_tokens_for_the_window_then_drops_them(tmp_path: Path) -> None:
    from tenant_access.security import signing_keys

    server = ServerProcess(tmp_path, ["--public-url", PUBLIC, "--max-token-lifetime", "3600",
                                      "--auth-failures-per-minute", "100000"]).start()
    try:
        old_token = server.token(expires_in=600)
        old_kid = jwt.get_unverified_header(old_token)["kid"]
        assert status(server, old_token) == 200
        rotated = cli("signing-key", "rotate", "--data-dir", str(server.data_dir))
        assert rotated.returncode == 0, rotated.stderr
        new_kid = signing_key_id(signing_keys.load_current(server.data_dir, create=False))
        assert new_kid != old_kid
        new_token = server.token(expires_in=600)
        within(1.5, lambda: status(server, new_token) == 200)  # the server follows the new key
        client_id, secret = create_principal(server)
        assert jwt.get_unverified_header(token_of(server, client_id, secret))["kid"] == new_kid
        assert status(server, old_token) == 200  # still inside the overlap window
        listed = cli("signing-key", "status", "--data-dir", str(server.data_dir)).stdout
        assert f"{new_kid}  current" in listed
        assert f"{old_kid}  retired, verifying until" in listed
        # Move the clock past the window: the retired key was retired longer ago than any token lives.
        retired = server.data_dir / signing_keys.RETIRED_FILE
        document = json.loads(retired.read_text())
        document["keys"][0]["retired_at"] = time.time() - 3600 - signing_keys.OVERLAP_MARGIN - 1
        retired.write_text(json.dumps(document))
        within(1.5, lambda: status(server, old_token) == 401)
        assert status(server, new_token) == 200
    finally:
        server.stop()
