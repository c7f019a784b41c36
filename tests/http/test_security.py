"""Authentication and authorization over a real server, generated from the route table so that a
new route cannot slip through unprotected."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tenant_access.http.handlers import ROUTES
from tenant_access.security.authorization import ROLE_OPERATIONS, Role
from tenant_access.security.sas import make_sas
from tests.backends import Backend
from tests.conftest import API, SERVICE_BODY, SUBSCRIPTION, service_path
from tests.serverproc import ServerProcess

OTHER_SUBSCRIPTION = "99999999-8888-7777-6666-555555555555"


@pytest.fixture(scope="module")
def server(db_backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # A high failure limit: this module sends hundreds of bad credentials on purpose.
    proc = db_backend.server(tmp_path_factory.mktemp("security"), ["--auth-failures-per-minute", "100000"]).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def owner(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers=server.auth("owner"), timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def svc(owner: httpx.Client) -> str:
    path = service_path("secured-" + uuid.uuid4().hex[:6])
    assert owner.put(f"{path}?{API}", json=SERVICE_BODY).status_code == 201
    return path


def _concrete(route_path: str, service: str) -> str:
    name = service.rsplit("/", 1)[1]
    return (route_path.replace("{subscriptionId}", SUBSCRIPTION).replace("{resourceGroupName}", "rg1")
            .replace("{serviceName}", name).replace("{accessName}", "access"))


PROTECTED = [r for r in ROUTES if not r.public]


def _fake_jwt(claims: dict[str, object], signature: bytes = b"sig") -> str:
    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.{base64.urlsafe_b64encode(signature).decode()}"


NOW = int(dt.datetime.now(dt.UTC).timestamp())
BAD_CREDENTIALS = {
    "none": None,
    "empty bearer": "Bearer",
    "not a jwt": "Bearer not-a-token",
    "forged signature": "Bearer " + _fake_jwt({"sub": "x", "role": "owner", "scope": "/", "exp": NOW + 600,
                                              "aud": "https://management.azure.com/"}),
    "basic scheme": "Basic dXNlcjpwYXNz",
    "non-ascii": "Bearer ключ",
    "10 KB": "Bearer " + "a" * 10_000,
    "bad sas": "SharedAccessSignature uid=integration&ex=2099-01-01T00:00:00.0000000Z&sn=AAAA",
}


def _send(server: ServerProcess, method: str, path: str, authorization: str | None) -> httpx.Response:
    headers = {} if authorization is None else {"Authorization": authorization.encode("utf-8")}
    body = {"properties": {"enabled": True}} if method in ("PUT", "PATCH") else None
    return httpx.request(method, f"{server.url}{path}?{API}", headers={**headers, "If-Match": "*"},  # type: ignore[dict-item]
                         json=body if method != "PUT" or "tenant" in path else SERVICE_BODY, timeout=10)


@pytest.mark.parametrize("route", PROTECTED, ids=lambda r: r.operation)
def test_every_route_refuses_bad_credentials_alike(server: ServerProcess, svc: str, route: object) -> None:
    from tenant_access.http.routing import Route

    assert isinstance(route, Route)
    codes = set()
    for authorization in BAD_CREDENTIALS.values():
        response = _send(server, route.method, _concrete(route.path, svc), authorization)
        assert response.status_code == 401, (route.operation, authorization and authorization[:30], response.text)
        assert "Bearer" in response.headers["www-authenticate"]
        if route.method != "HEAD":
            error = response.json()["error"]
            codes.add(error["code"])
            # The kind of failure is named (tests/http/test_explained_errors.py), nothing of the credential.
            assert error["message"].startswith("Authentication failed: ")
            credential = (authorization or "").partition(" ")[2]
            assert not credential or credential[:12] not in error["message"]
    assert codes <= {"UNAUTHORIZED"}


def test_an_expired_token_is_refused(server: ServerProcess, svc: str) -> None:
    from tenant_access.security.tokens import issue_token, load_or_create_signing_key

    secret = load_or_create_signing_key(server.data_dir, create=False)
    stale = issue_token(secret, "old", "owner", "/", 60, now=NOW - 3600, iss=server.issuer)
    response = httpx.get(f"{server.url}{svc}?{API}", headers={"Authorization": f"Bearer {stale}"})
    assert response.status_code == 401


@pytest.mark.parametrize("route", PROTECTED, ids=lambda r: r.operation)
def test_every_route_refuses_other_scopes_and_reveals_nothing(server: ServerProcess, svc: str, route: object) -> None:
    from tenant_access.http.routing import Route

    assert isinstance(route, Route)
    path = _concrete(route.path, svc)
    for scope in (f"/subscriptions/{OTHER_SUBSCRIPTION}", f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg2",
                  f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg1/providers/Microsoft.ApiManagement/service/other"):
        token = server.token("owner", scope)
        response = _send(server, route.method, path, f"Bearer {token}")
        assert response.status_code == 403, (route.operation, scope, response.text)
        missing = _send(server, route.method, path.replace(svc.rsplit("/", 1)[1], "nosuchsvc"), f"Bearer {token}")
        assert missing.status_code == 403  # the same answer whether or not the service exists
        if route.method != "HEAD":
            assert response.json()["error"]["code"] == "FORBIDDEN"


def test_the_role_matrix(server: ServerProcess, svc: str) -> None:
    for role in Role:
        token = f"Bearer {server.token(role.value, f'/subscriptions/{SUBSCRIPTION}')}"
        for route in PROTECTED:
            if route.operation == "services.delete":
                continue  # exercised below, so the shared service survives
            response = _send(server, route.method, _concrete(route.path, svc), token)
            allowed = route.operation in ROLE_OPERATIONS[role]
            assert (response.status_code != 403) == allowed, (role, route.operation, response.status_code)
    doomed = service_path("doomed-" + uuid.uuid4().hex[:6])
    owner = f"Bearer {server.token('owner')}"
    assert _send(server, "PUT", doomed, owner).status_code == 201
    assert _send(server, "DELETE", doomed, f"Bearer {server.token('key-operator')}").status_code == 403
    assert _send(server, "DELETE", doomed, owner).status_code == 200


def test_a_scoped_token_works_inside_its_scope(server: ServerProcess, svc: str) -> None:
    token = f"Bearer {server.token('key-operator', svc)}"
    assert _send(server, "POST", f"{svc}/tenant/access/regenerateSecondaryKey", token).status_code == 200
    assert _send(server, "GET", f"{svc}/tenant", token).status_code == 200


def _sas_client(server: ServerProcess, header: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": header}, timeout=10)


def test_shared_access_signatures_and_zero_downtime_rotation(server: ServerProcess, owner: httpx.Client) -> None:
    svc = service_path("sas-" + uuid.uuid4().hex[:6])
    assert owner.put(f"{svc}?{API}", json=SERVICE_BODY).status_code == 201
    access = f"{svc}/tenant/access"
    # Azure creates "access" disabled: a SAS is refused until it is enabled.
    keys = owner.post(f"{access}/listSecrets?{API}").json()["data"]
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    with _sas_client(server, make_sas("integration", keys["primary_key"], soon)) as client:
        assert client.get(f"{access}?{API}").status_code == 401
    assert owner.patch(f"{access}?{API}", json={"properties": {"enabled": True}},
                       headers={"If-Match": "*"}).status_code == 200
    keys = owner.post(f"{access}/listSecrets?{API}").json()["data"]
    by_primary = make_sas("integration", keys["primary_key"], soon)
    by_secondary = make_sas("integration", keys["secondary_key"], soon)
    with _sas_client(server, by_primary) as primary, _sas_client(server, by_secondary) as secondary:
        assert primary.get(f"{access}?{API}").status_code == 200
        assert secondary.get(f"{access}?{API}").status_code == 200
        # Only routes of its own service.
        assert primary.get(f"{service_path('other-svc')}?{API}").status_code == 401
        # Rotate the primary: tokens signed with it die at once, the secondary's keep working.
        assert secondary.post(f"{access}/regeneratePrimaryKey?{API}").status_code == 200
        assert primary.get(f"{access}?{API}").status_code == 401
        assert secondary.get(f"{access}?{API}").status_code == 200
        # A key-operator credential: it may not change the configuration.
        assert secondary.patch(f"{access}?{API}", json={"properties": {"enabled": True}},
                               headers={"If-Match": "*"}).status_code == 403
    keys = owner.post(f"{access}/listSecrets?{API}").json()["data"]
    expired = make_sas("integration", keys["secondary_key"], dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
    wrong_uid = make_sas("someone", keys["secondary_key"], soon)
    valid = make_sas("integration", keys["secondary_key"], soon)
    tampered = valid.replace("uid=integration", "uid=integratioN")
    flipped = valid[:-6] + ("A" if valid[-6] != "A" else "B") + valid[-5:]
    for header in (expired, wrong_uid, tampered, flipped):
        with _sas_client(server, header) as client:
            assert client.get(f"{access}?{API}").status_code == 401, header
    with _sas_client(server, valid) as client:
        assert client.get(f"{access}?{API}").status_code == 200
    # Disabling the configuration disables its signatures.
    assert owner.patch(f"{access}?{API}", json={"properties": {"enabled": False}},
                       headers={"If-Match": "*"}).status_code == 200
    with _sas_client(server, valid) as client:
        assert client.get(f"{access}?{API}").status_code == 401


def test_public_routes_need_no_credential(server: ServerProcess) -> None:
    for path in ("/healthz", "/readyz", "/openapi.json", "/tenant1/v2.0/.well-known/openid-configuration"):
        assert httpx.get(f"{server.url}{path}").status_code == 200, path


def test_failed_authentications_are_limited_per_address(db_backend: Backend, tmp_path: Path) -> None:
    server = db_backend.server(tmp_path, ["--auth-failures-per-minute", "5"]).start()
    try:
        url = f"{server.url}{service_path('x')}?{API}"
        statuses = [httpx.get(url, headers={"Authorization": "Bearer nope"}).status_code for _ in range(7)]
        assert statuses[:5] == [401] * 5
        assert statuses[5:] == [429, 429]
        limited = httpx.get(url, headers=server.auth())
        assert limited.status_code == 429  # even a good credential waits: the address is cooling down
        assert int(limited.headers["retry-after"]) > 0
        assert limited.json()["error"]["code"] == "TOO_MANY_REQUESTS"
    finally:
        server.stop()


def test_refused_requests_are_audited(server: ServerProcess, owner: httpx.Client, svc: str) -> None:
    reader = f"Bearer {server.token('reader', svc)}"
    assert _send(server, "POST", f"{svc}/tenant/access/listSecrets", reader).status_code == 403
    records = owner.get(f"{svc}/auditEvents?{API}&operation=access.list_secrets").json()["data"]
    denied = [r for r in records if r["outcome"] == "denied"]
    assert denied
    assert denied[-1]["role"] == "reader"
    assert denied[-1]["status"] == 403


@pytest.mark.parametrize("mode", ["emulator", "none"])
def test_relaxed_modes_say_so_on_every_answer(db_backend: Backend, tmp_path: Path, mode: str) -> None:
    server = db_backend.server(tmp_path, ["--auth", mode]).start()
    try:
        unsigned = _fake_jwt({"sub": "dev", "exp": NOW + 600, "aud": "https://management.azure.com/"})
        headers = {"Authorization": f"Bearer {unsigned}"} if mode == "emulator" else {}
        response = httpx.put(f"{server.url}{service_path('relaxed')}?{API}", json=SERVICE_BODY, headers=headers)
        assert response.status_code == 201, response.text
        assert mode in response.headers["x-tenant-access-auth"]
        if mode == "emulator":
            expired = _fake_jwt({"sub": "dev", "exp": NOW - 600, "aud": "https://management.azure.com/"})
            refused = httpx.get(f"{server.url}{service_path('relaxed')}?{API}",
                                headers={"Authorization": f"Bearer {expired}"})
            assert refused.status_code == 401
        assert "WARNING" in server.log()
    finally:
        server.stop()


def test_remembered_routes_and_decisions_answer_like_the_first_time(server: ServerProcess, svc: str) -> None:
    """The server remembers checked paths, verified bearer headers and authorization decisions.
    The same path, asked again by other principals, in other spellings and with other query
    strings, must be decided afresh for each of them."""
    access = f"{svc}/tenant/access"
    outside = server.auth("owner", f"/subscriptions/{OTHER_SUBSCRIPTION}")
    reader = server.auth("reader", "/")
    with httpx.Client(base_url=server.url, timeout=10) as http:
        for _ in range(3):
            assert http.get(f"{access}?{API}", headers=server.auth()).status_code == 200
            assert http.get(f"{access}?{API}", headers=outside).status_code == 403
            assert http.post(f"{access}/listSecrets?{API}", headers=reader).status_code == 403
            assert http.post(f"{access}/listSecrets?{API}", headers=server.auth()).status_code == 200
            assert http.get(f"{access}?api-version=1999-01-01", headers=server.auth()).status_code == 400
            assert http.get(access, headers=server.auth()).status_code == 400
            upper = http.get(f"{svc}/tenant/ACCESS?{API}", headers=server.auth())
            assert upper.status_code == 200
            assert upper.json()["data"]["name"] == "access"
            assert http.get(f"{svc}/tenant/nope?{API}", headers=server.auth()).status_code == 400
            assert http.get(f"{access}?{API}", headers={"Authorization": "Bearer x.y.z"}).status_code == 401
            assert http.delete(f"{access}?{API}", headers=server.auth()).status_code == 405
