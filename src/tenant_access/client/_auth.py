"""Credentials as httpx ``Auth`` classes, so they work with any transport and both clients.

The SharedAccessSignature code duplicates the server's few lines on purpose: the client must not
import the server package (start-up cost, and a client install should not need uvicorn). A test
checks that both produce the same token.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import hmac
import inspect
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator

import httpx

Clock = Callable[[], _dt.datetime]
TokenSource = str | Callable[[], str] | Callable[[], Awaitable[str]]


def _utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def sas_expiry(value: _dt.datetime) -> str:
    """.NET's round-trip ("O") form of a UTC time: ``yyyy-MM-ddTHH:mm:ss.fffffffZ``.

    The expiry is signed as text, so it must be byte-for-byte what the verifier formats.
    """
    if value.tzinfo is None:
        raise ValueError("the expiry must be timezone-aware (UTC)")
    value = value.astimezone(_dt.UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond:06d}0Z"


def sas_token(uid: str, key: str, expiry: _dt.datetime) -> str:
    """The token (``uid=…&ex=…&sn=…``) that follows ``SharedAccessSignature`` in ``Authorization``.

    The key is used as its UTF-8 text, not base64-decoded: that is what Azure API Management does.
    """
    if not (0 < len(uid) <= 256 and uid.isprintable() and not any(c in uid for c in "&= ")):
        # The same rule the server applies: these characters would make the token ambiguous.
        raise ValueError("a SAS identifier is 1 to 256 printable characters without '&', '=' or spaces")
    ex = sas_expiry(expiry)
    digest = hmac.new(key.encode("utf-8"), f"{uid}\n{ex}".encode(), hashlib.sha512).digest()
    return f"uid={uid}&ex={ex}&sn={base64.b64encode(digest).decode('ascii')}"


class SharedAccessSignature(httpx.Auth):
    """Signs every request with ``Authorization: SharedAccessSignature uid=…&ex=…&sn=…``.

    A token is reused until less than a quarter of ``ttl`` (at most five minutes) is left, then
    re-signed, so long-running clients never send an expired one and short scripts sign once.
    ``key`` is an access configuration's primary or secondary key; ``uid`` its identifier
    (``principal_id``, e.g. ``integration``).
    """

    def __init__(
        self,
        uid: str,
        key: str,
        *,
        ttl: _dt.timedelta | float = _dt.timedelta(hours=1),
        clock: Clock | None = None,
    ) -> None:
        if not key:
            raise ValueError("the key must not be empty")
        self.uid = uid
        self._key = key
        self.ttl = ttl if isinstance(ttl, _dt.timedelta) else _dt.timedelta(seconds=ttl)
        if self.ttl <= _dt.timedelta(0):
            raise ValueError("ttl must be positive")
        self._margin = min(self.ttl / 4, _dt.timedelta(minutes=5))
        self._clock = clock or _utcnow
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires: _dt.datetime | None = None
        sas_token(uid, key, self._clock() + self.ttl)  # refuse a bad uid now, not on the first request

    def __repr__(self) -> str:
        return f"SharedAccessSignature(uid={self.uid!r}, key='***', ttl={self.ttl!r})"

    def header(self) -> str:
        """The current ``Authorization`` value, re-signed when close to expiry."""
        with self._lock:
            now = self._clock()
            if self._token is None or self._expires is None or self._expires - now < self._margin:
                self._expires = now + self.ttl
                self._token = sas_token(self.uid, self._key, self._expires)
            return f"SharedAccessSignature {self._token}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self.header()
        yield request


class BearerToken(httpx.Auth):
    """Sends ``Authorization: Bearer <token>``.

    ``token`` may be a string or a callable called before every request, so that a caller's own
    cache can refresh it; with :class:`AsyncClient` the callable may be a coroutine function.
    """

    def __init__(self, token: TokenSource) -> None:
        if isinstance(token, str) and not token:
            raise ValueError("the token must not be empty")
        self._source = token

    def __repr__(self) -> str:
        return "BearerToken('***')"

    def _sync_token(self) -> str:
        if isinstance(self._source, str):
            return self._source
        value = self._source()
        if inspect.isawaitable(value):
            if inspect.iscoroutine(value):
                value.close()  # never awaited: close it so it does not warn
            raise TypeError("an async token callable needs AsyncClient")
        return value

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._sync_token()}"
        yield request

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if isinstance(self._source, str):
            token = self._source
        else:
            value = self._source()
            token = await value if inspect.isawaitable(value) else value
        request.headers["Authorization"] = f"Bearer {token}"
        yield request
