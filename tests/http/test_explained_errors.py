"""Every refusal a newcomer meets says what is wrong, in both wire styles (issue 17).

A refused bearer token names its kind of failure (RFC 6750 ``error_description``), a request with
no credential gets a challenge without an error code, and a SharedAccessSignature refused for a
service that does not exist gets exactly the answer of one with a bad signature for a service that
does (issue 12). Each over a real server process.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tenant_access.security.sas import make_sas
from tenant_access.security.tokens import issue_token, load_or_create_signing_key
from tests.conftest import API, SERVICE_BODY, service_path
from tests.serverproc import ServerProcess

STYLES = ("seed", "azure")


@pytest.fixture(scope="module", params=STYLES)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    style: str = request.param
    proc = ServerProcess(tmp_path_factory.mktemp(f"explained-{style}"),
                         ["--api-style", style, "--auth-failures-per-minute", "100000"]).start()
    yield proc
    proc.stop()


def _style(server: ServerProcess) -> str:
    return server.args[server.args.index("--api-style") + 1]


def _message(response: httpx.Response) -> str:
    body = response.json()
    message: str = body["error"]["message"]
    return message


def _token(server: ServerProcess, **kwargs: Any) -> str:
    secret = load_or_create_signing_key(server.data_dir, create=False)
    return issue_token(secret, "tests", "owner", "/", kwargs.pop("expires_in", 600), **kwargs)


@pytest.fixture(scope="module")
def svc(server: ServerProcess) -> str:
    path = service_path("explained-" + secrets.token_hex(4))
    with httpx.Client(base_url=server.url, headers=server.auth(), timeout=10) as owner:
        assert owner.put(f"{path}?{API}", json=SERVICE_BODY).status_code in (200, 201)
        assert owner.patch(f"{path}/tenant/access?{API}", json={"properties": {"enabled": True}},
                           headers={"If-Match": "*"}).status_code == 200
    return path


def _get(server: ServerProcess, path: str, authorization: str | None) -> httpx.Response:
    headers = {} if authorization is None else {"Authorization": authorization}
    return httpx.get(f"{server.url}{path}/tenant/access?{API}", headers=headers, timeout=10)


BEARER_CASES = {
    "malformed": (lambda s: "not-a-jwt", "the bearer token is malformed"),
    "expired": (lambda s: _token(s, expires_in=60, now=time.time() - 7200), "the bearer token has expired"),
    "unknown signing key": (lambda s: issue_token(secrets.token_bytes(32), "tests", "owner", "/", 600),
                            "the bearer token is signed with a key this server does not have"),
    "wrong audience": (lambda s: _token(s, aud="https://example.com/"), "the bearer token is for another audience"),
}


@pytest.mark.parametrize("case", BEARER_CASES, ids=str)
def test_a_refused_bearer_token_says_why(server: ServerProcess, svc: str, case: str) -> None:
    make, description = BEARER_CASES[case]
    token = make(server)
    response = _get(server, svc, f"Bearer {token}")
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="tenant-access", error="invalid_token", error_description="')
    assert description in challenge
    assert description in _message(response)
    assert token[-20:] not in response.text and token[-20:] not in challenge
    code = response.json()["error"]["code"]
    assert code == ("UNAUTHORIZED" if _style(server) == "seed" else "AuthenticationFailed")


def test_no_credential_gets_a_challenge_without_an_error_code(server: ServerProcess, svc: str) -> None:
    response = _get(server, svc, None)
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge == 'Bearer realm="tenant-access", SharedAccessSignature realm="tenant-access"'
    assert "error" not in challenge
    assert "no credential was sent" in _message(response)


def _without_request_id(response: httpx.Response) -> tuple[int, Any, dict[str, str]]:
    body = response.json()
    body["error"].pop("request_id", None)
    headers = {k: v for k, v in response.headers.items()
               if k not in ("date", "x-request-id", "x-ms-request-id", "x-ms-correlation-request-id", "content-length")}
    return response.status_code, body, headers


def test_a_sas_for_a_missing_service_is_answered_like_a_bad_signature(server: ServerProcess, svc: str) -> None:
    with httpx.Client(base_url=server.url, headers=server.auth(), timeout=10) as owner:
        secrets_answer = owner.post(f"{svc}/tenant/access/listSecrets?{API}").json()
    data = secrets_answer["data"] if _style(server) == "seed" else secrets_answer
    uid = data["principal_id"] if _style(server) == "seed" else data["principalId"]
    expiry = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    forged = make_sas(uid, "not-the-key-" + secrets.token_hex(8), expiry)
    missing = service_path("never-created-" + secrets.token_hex(4))

    bad_signature = _get(server, svc, forged)
    no_such_service = _get(server, missing, forged)
    other_uid = _get(server, svc, make_sas("someone-else", "not-the-key", expiry))

    assert bad_signature.status_code == 401
    assert _without_request_id(bad_signature) == _without_request_id(no_such_service) \
        == _without_request_id(other_uid)
    assert "SharedAccessSignature" in bad_signature.headers["www-authenticate"]


def test_an_impossible_date_is_not_called_badly_formed(server: ServerProcess, svc: str) -> None:
    response = httpx.get(f"{server.url}{svc}/tenant/access?api-version=2024-13-01", headers=server.auth())
    assert response.status_code == 400
    message = _message(response)
    assert "2024-13-01 is not a calendar date" in message
    assert "YYYY-MM-DD" not in message


def test_an_unknown_version_names_the_nearest_known_ones(server: ServerProcess, svc: str) -> None:
    response = httpx.get(f"{server.url}{svc}/tenant/access?api-version=2024-05-02", headers=server.auth())
    assert response.status_code == 400
    message = _message(response)
    assert "not a known api-version" in message
    assert "2024-05-01" in message and "2024-06-01-preview" in message


def test_a_single_bad_field_is_named_in_the_message(server: ServerProcess, svc: str) -> None:
    response = httpx.get(f"{server.url}{svc}/tenant/acess?{API}", headers=server.auth())
    assert response.status_code == 400
    message = _message(response)
    assert "accessName" in message and "must be 'access' or 'gitAccess'" in message, message
