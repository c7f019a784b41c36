"""Credentials: the SharedAccessSignature against a golden value computed here with hmac/hashlib,
its refresh, and bearer tokens (static, callable, async callable)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac

import httpx
import pytest

from tenant_access.client import AsyncClient, BearerToken, Client, SharedAccessSignature, sas_expiry, sas_token
from tests.client.conftest import new_service_ref

KEY = "pXeTVcmdbU9XxH6fPcPlq8Y9D9G3Cdo5Eh2nMSgKj/DWqeSFFXDdmpz5Trv+L2hQNM+nGa704Rf8Z22W9O1jdQ=="
NOW = dt.datetime(2030, 1, 2, 3, 4, 5, 123456, tzinfo=dt.UTC)
SERVICE_JSON = {"success": True, "data": {
    "id": "/x", "name": "svc", "subscription_id": "s", "resource_group": "g", "created_at": "2030-01-02T03:04:05Z"}}


class Clock:
    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now


def _golden(uid: str, key: str, expiry_text: str) -> str:
    digest = hmac.new(key.encode("utf-8"), f"{uid}\n{expiry_text}".encode(), hashlib.sha512).digest()
    return f"SharedAccessSignature uid={uid}&ex={expiry_text}&sn={base64.b64encode(digest).decode()}"


def _capturing(seen: list[httpx.Request]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=SERVICE_JSON)

    return httpx.MockTransport(handler)


def test_expiry_is_dotnet_round_trip_with_seven_digits() -> None:
    assert sas_expiry(NOW) == "2030-01-02T03:04:05.1234560Z"
    assert sas_expiry(dt.datetime(2014, 8, 4, 22, 3, tzinfo=dt.UTC)) == "2014-08-04T22:03:00.0000000Z"
    plus_two = dt.timezone(dt.timedelta(hours=2))
    assert sas_expiry(dt.datetime(2030, 1, 2, 5, 4, 5, tzinfo=plus_two)) == "2030-01-02T03:04:05.0000000Z"
    with pytest.raises(ValueError, match="aware"):
        sas_expiry(dt.datetime(2030, 1, 2))


def test_every_request_is_signed_with_the_golden_signature() -> None:
    seen: list[httpx.Request] = []
    auth = SharedAccessSignature("integration", KEY, ttl=dt.timedelta(hours=1), clock=Clock(NOW))
    with Client(endpoint="http://mock", credential=auth, transport=_capturing(seen)) as client:
        client.get_service(new_service_ref())
        client.get_service(new_service_ref())
    expected = _golden("integration", KEY, "2030-01-02T04:04:05.1234560Z")
    assert [r.headers["authorization"] for r in seen] == [expected, expected]
    assert "%" not in expected  # the base64 signature is sent as is, not URL-encoded, like Azure's sample
    assert sas_token("integration", KEY, NOW + dt.timedelta(hours=1)) == expected.split(" ", 1)[1]


def test_the_token_is_reused_then_resigned_when_close_to_expiry() -> None:
    clock = Clock(NOW)
    auth = SharedAccessSignature("integration", KEY, ttl=600, clock=clock)  # margin: a quarter, 150 s
    first = auth.header()
    clock.now = NOW + dt.timedelta(seconds=449)
    assert auth.header() == first
    clock.now = NOW + dt.timedelta(seconds=451)
    second = auth.header()
    assert second != first
    assert second == _golden("integration", KEY, sas_expiry(clock.now + dt.timedelta(seconds=600)))


def test_sas_refuses_what_would_make_an_ambiguous_token() -> None:
    for uid in ("", "a&b", "a=b", "a b", "a\nb"):
        with pytest.raises(ValueError, match="identifier"):
            SharedAccessSignature(uid, KEY)
    with pytest.raises(ValueError, match="key"):
        SharedAccessSignature("integration", "")
    with pytest.raises(ValueError, match="ttl"):
        SharedAccessSignature("integration", KEY, ttl=0)
    assert KEY not in repr(SharedAccessSignature("integration", KEY))


def test_the_client_signs_exactly_as_the_server_module_does() -> None:
    from tenant_access.security.sas import make_sas, parse_sas, verify_sas

    for uid, key, expiry in (("integration", KEY, NOW), ("53dd860e1b72ff0467030003", "k" * 40,
                                                          dt.datetime(2014, 8, 4, 22, 3, tzinfo=dt.UTC))):
        assert f"SharedAccessSignature {sas_token(uid, key, expiry)}" == make_sas(uid, key, expiry)
    header = SharedAccessSignature("integration", KEY, clock=Clock(NOW)).header()
    assert verify_sas(parse_sas(header), [("other", "x" * 40), ("mine", KEY)], NOW) == "mine"


def test_a_bearer_token_string_or_callable_is_sent() -> None:
    seen: list[httpx.Request] = []
    tokens = iter(["one", "two"])
    with Client(endpoint="http://mock", credential=BearerToken("static"), transport=_capturing(seen)) as client:
        client.get_service(new_service_ref())
    with Client(endpoint="http://mock", credential=BearerToken(lambda: next(tokens)),
                transport=_capturing(seen)) as client:
        client.get_service(new_service_ref())
        client.get_service(new_service_ref())
    assert [r.headers["authorization"] for r in seen] == ["Bearer static", "Bearer one", "Bearer two"]
    assert "static" not in repr(BearerToken("static"))


@pytest.mark.anyio
async def test_an_async_client_awaits_an_async_token_source() -> None:
    seen: list[httpx.Request] = []

    async def fetch() -> str:
        return "from-a-coroutine"

    async with AsyncClient(endpoint="http://mock", credential=BearerToken(fetch),
                           transport=_capturing(seen)) as client:
        await client.get_service(new_service_ref())
    async with AsyncClient(endpoint="http://mock", credential=SharedAccessSignature("u", KEY, clock=Clock(NOW)),
                           transport=_capturing(seen)) as client:
        await client.get_service(new_service_ref())
    assert seen[0].headers["authorization"] == "Bearer from-a-coroutine"
    assert seen[1].headers["authorization"] == _golden("u", KEY, "2030-01-02T04:04:05.1234560Z")


def test_a_sync_client_refuses_an_async_token_source() -> None:
    async def fetch() -> str:
        return "never"

    with Client(endpoint="http://mock", credential=BearerToken(fetch), transport=_capturing([])) as client, \
            pytest.raises(TypeError, match="AsyncClient"):
        client.get_service(new_service_ref())
