"""Headers every answer owes its client, in both wire formats: ``no-store`` on every answer that
carries a key, ``nosniff`` on every answer (errors included), and a 400 for a request that sends
two ``Authorization`` headers instead of silently using the last."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tenant_access.security.sas import make_sas
from tests.conftest import API, SERVICE_BODY, service_path
from tests.serverproc import ServerProcess


@pytest.fixture(scope="module", params=["seed", "azure"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp(f"headers-{request.param}"),
                         ["--api-style", request.param, "--auth-failures-per-minute", "1000"]).start()
    proc.style = request.param  # type: ignore[attr-defined]
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def svc(server: ServerProcess) -> str:
    path = service_path("hdr-" + uuid.uuid4().hex[:6])
    assert httpx.put(f"{server.url}{path}?{API}", json=SERVICE_BODY, headers=server.auth()).status_code in (200, 201)
    return path


def _code(server: ServerProcess, response: httpx.Response) -> str:
    body = response.json()
    return str(body["error"]["code"])


def test_list_secrets_is_never_stored_by_a_cache(server: ServerProcess, svc: str) -> None:
    response = httpx.post(f"{server.url}{svc}/tenant/access/listSecrets?{API}", headers=server.auth())
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"
    # Answers without keys are left to the usual caching rules.
    assert "cache-control" not in httpx.get(f"{server.url}{svc}/tenant/access?{API}", headers=server.auth()).headers


@pytest.mark.parametrize("call", ["ok", "not found", "unauthenticated", "bad api-version", "openapi", "healthz"])
def test_every_answer_says_nosniff(server: ServerProcess, svc: str, call: str) -> None:
    url, headers = {
        "ok": (f"{svc}/tenant/access?{API}", server.auth()),
        "not found": (f"{service_path('nope-' + uuid.uuid4().hex[:6])}/tenant/access?{API}", server.auth()),
        "unauthenticated": (f"{svc}/tenant/access?{API}", {"Authorization": "Bearer nope"}),
        "bad api-version": (f"{svc}/tenant/access?api-version=1999-01-01", server.auth()),
        "openapi": ("/openapi.json", {}),
        "healthz": ("/healthz", {}),
    }[call]
    response = httpx.get(f"{server.url}{url}", headers=headers)
    assert response.headers["x-content-type-options"] == "nosniff", response.headers


def test_two_authorization_headers_are_refused(server: ServerProcess, svc: str) -> None:
    good = f"Bearer {server.token()}"
    for pair in ([good, "Bearer nope"], ["Bearer nope", good], [good, good]):
        response = httpx.get(f"{server.url}{svc}/tenant/access?{API}",
                             headers=[("Authorization", value) for value in pair])
        assert response.status_code == 400, pair
        assert _code(server, response) == ("VALIDATION_ERROR" if server.style == "seed"  # type: ignore[attr-defined]
                                           else "ValidationError")
        assert response.headers["x-content-type-options"] == "nosniff"


def test_the_token_endpoint_answers_are_never_stored(server: ServerProcess) -> None:
    created = subprocess.run(
        [sys.executable, "-m", "tenant_access", "principals", "create", "--data-dir", str(server.data_dir),
         "--role", "reader", "--scope", "/"],
        capture_output=True, text=True, timeout=30, check=True,
    )
    fields = dict(line.split(":", 1) for line in created.stdout.splitlines() if ":" in line)
    form = {"grant_type": "client_credentials", "client_id": fields["client id"].strip()}
    for secret, status in ((fields["client secret"].strip(), 200), ("wrong", 401)):
        response = httpx.post(f"{server.url}/t/oauth2/v2.0/token", data={**form, "client_secret": secret})
        assert response.status_code == status
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-content-type-options"] == "nosniff"


def test_sas_callers_of_different_services_have_buckets_of_their_own(tmp_path: Path) -> None:
    """Every SAS caller's subject is ``integration``; the rate limit must still tell them apart."""
    server = ServerProcess(tmp_path, ["--rate-limit", "0.01"]).start()  # a burst of 1, then one per 100 s
    try:
        soon = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        signatures = {}

        def owner() -> dict[str, str]:  # the owner is rate limited too: a subject of its own per call
            return {"Authorization": f"Bearer {server.token(sub='owner-' + uuid.uuid4().hex)}", "If-Match": "*"}

        with httpx.Client(base_url=server.url, timeout=10) as client:
            for name in ("bucket-a", "bucket-b"):
                svc = service_path(name + "-" + uuid.uuid4().hex[:6])
                access = f"{svc}/tenant/access"
                assert client.put(f"{svc}?{API}", json=SERVICE_BODY, headers=owner()).status_code == 201
                assert client.patch(f"{access}?{API}", json={"properties": {"enabled": True}},
                                    headers=owner()).status_code == 200
                keys = client.post(f"{access}/listSecrets?{API}", headers=owner()).json()["data"]
                signatures[access] = make_sas("integration", keys["primary_key"], soon)
        first, second = signatures.items()
        with httpx.Client(base_url=server.url, timeout=10) as client:
            assert client.get(f"{first[0]}?{API}", headers={"Authorization": first[1]}).status_code == 200
            assert client.get(f"{first[0]}?{API}", headers={"Authorization": first[1]}).status_code == 429
            assert client.get(f"{second[0]}?{API}", headers={"Authorization": second[1]}).status_code == 200
    finally:
        server.stop()
