"""The HTTP/1.1 protocol, with deadlines for each request, a cap on connections per address, and
limits on the size of request headers.

uvicorn closes idle keep-alive connections but lets a client take as long as it likes to send a
request, so a few hundred "slow-loris" sockets dribbling one byte at a time (of the headers, or of
a body whose ``Content-Length`` promises more) would hold the server's connections forever. Here
each request's headers must be complete within ``header_timeout`` seconds of its first byte (or of
the connection, for the first request), or the connection is closed; and the whole request, body
included, within ``request_timeout`` seconds, or it is answered 408 and the connection closed.
Neither deadline costs a timer of its own on the usual request, whose body arrives with its
headers: the header timer covers both until the headers are complete, and a body timer is armed
only when the body is still incomplete once the bytes at hand are parsed.

One client address may hold at most ``max_connections_per_address`` connections at once; the
next is answered 429 (``Retry-After``) on its first bytes and closed, so one client cannot take
every file descriptor. Refusals are logged at most once per :data:`REFUSAL_LOG_SECONDS`, with a
count, so a flood does not flood the log.

It also refuses, before anything is buffered further, a request target over :data:`MAX_URL_BYTES`
(414) and headers over :data:`MAX_HEADER_BYTES` or :data:`MAX_HEADERS` (431); and it answers
requests that are not valid HTTP/1.1 (a NUL or control character in the request line or a header,
a bad version, garbage) with a 400 in the server's wire format rather than uvicorn's plain text.
"""

from __future__ import annotations

import asyncio
import logging
import time
from http import HTTPStatus
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tenant_access.domain.errors import (
    HeadersTooLarge,
    RequestTimeout,
    TenantAccessError,
    TooManyRequests,
    UriTooLong,
    ValidationFailed,
)
from tenant_access.http.ids import new_request_id

log = logging.getLogger("tenant_access.http")

#: The longest request target (path and query) accepted.
MAX_URL_BYTES = 16 * 1024
#: The most header bytes (names and values) and the most header lines one request may send.
MAX_HEADER_BYTES = 32 * 1024
MAX_HEADERS = 200
#: Seconds an idle connection gets to close by itself once the server is stopping.
SHUTDOWN_GRACE = 0.3
#: At most one log line per this many seconds about refused connections (with how many were refused).
REFUSAL_LOG_SECONDS = 10.0


class ConnectionCount:
    """Open connections per client address, for one server (shared by its protocol instances,
    which all run on one event loop); and the refusals not yet logged."""

    __slots__ = ("by_address", "last_logged", "unlogged")

    def __init__(self) -> None:
        self.by_address: dict[str, int] = {}
        self.unlogged = 0
        self.last_logged = float("-inf")

    def refused(self, address: str, cap: int) -> None:
        self.unlogged += 1
        now = time.monotonic()
        if now - self.last_logged >= REFUSAL_LOG_SECONDS:
            log.warning("refused %d connection(s) over the cap of %d per address (the latest from %s)",
                        self.unlogged, cap, address)
            self.unlogged = 0
            self.last_logged = now


class _Refused(Exception):
    """Stops the parser once a request has been answered with an error."""


class _OneWrite:
    """The transport as a response's cycle sees it: the status line and headers are held until the
    body comes, and both go out in one write (uvicorn writes them separately: two send() calls and
    two TCP segments per answer; on loopback each send costs the sender the receiver's side of the
    stack too, about a tenth of a rotation's CPU). Everything else passes through."""

    __slots__ = ("_cycle", "_head", "_headed", "_transport")

    def __init__(self, transport: asyncio.Transport, cycle: Any) -> None:
        self._transport = transport
        self._cycle = cycle
        self._head: bytes | None = None
        self._headed = False

    def write(self, data: bytes) -> None:
        if not self._headed and self._cycle.response_started and not self._cycle.response_complete:
            self._headed = True  # uvicorn's first write once the response has started: its head
            self._head = data
            return
        if self._head is not None:
            data, self._head = self._head + data, None
        self._transport.write(data)

    def flush(self) -> None:
        """A head with no body after it (HEAD): written at the end of the response."""
        if self._head is not None:
            head, self._head = self._head, None
            self._transport.write(head)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    header_timeout: float = 10.0
    request_timeout: float = 30.0
    max_connections_per_address: int = 128
    api_style: str = "seed"
    counts: ClassVar[ConnectionCount] = ConnectionCount()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._body_deadline: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._header_count = 0
        self._refused = False
        self._lost = False
        self._started = 0.0  # loop time of the current request's first byte (or of the connection)
        self._in_body = False  # headers complete, body not yet
        self._address: str | None = None  # counted against the cap (None: not counted)
        self._over_cap = False

    def _refuse(self, exc: TenantAccessError) -> None:
        """Answer ``exc`` in the active wire format and close the connection. A request the
        application is serving learns that its client is gone, and its own answer is dropped."""
        if self._refused:
            return
        self._refused = True
        self._disarm()
        self._disarm_body()
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()

        from tenant_access.http.app import _wire

        wire = _wire(self.api_style)
        request_id = new_request_id()
        response = wire.error(exc, None, request_id)
        wire.common_headers(response, None, request_id)
        head = [f"HTTP/1.1 {response.status} {HTTPStatus(response.status).phrase}"]
        head += [f"{name}: {value}" for name, value in response.headers]
        head += [f"content-type: {response.content_type}", f"content-length: {len(response.body)}",
                 "connection: close"]
        self.transport.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.body)
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        if not self._refused:
            log.info("refusing a request that is not valid HTTP/1.1")
            self._refuse(ValidationFailed("The request is not valid HTTP/1.1.", azure_code="BadRequest"))

    def on_message_begin(self) -> None:
        self._header_bytes = self._header_count = 0
        super().on_message_begin()
        if self._header_deadline is None:
            self._started = self.loop.time()
        self._arm()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > MAX_URL_BYTES:
            self._refuse(UriTooLong(f"The request target is longer than {MAX_URL_BYTES} bytes."))
            raise _Refused

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        self._header_count += 1
        if self._header_bytes > MAX_HEADER_BYTES or self._header_count > MAX_HEADERS:
            self._refuse(HeadersTooLarge(
                f"The request headers are larger than {MAX_HEADER_BYTES} bytes or {MAX_HEADERS} fields."))
            raise _Refused
        super().on_header(name, value)

    def _arm(self) -> None:
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_later(min(self.header_timeout, self.request_timeout),
                                                         self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _disarm_body(self) -> None:
        if self._body_deadline is not None:
            self._body_deadline.cancel()
            self._body_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        log.info("closing a connection whose request headers took over %.1f s",
                 min(self.header_timeout, self.request_timeout))
        self.transport.close()

    def _body_too_slow(self) -> None:
        """408 while the application still waits for the body; if it already answered (a route
        that does not read bodies), the connection is just closed."""
        self._body_deadline = None
        if not self._in_body or self._refused:
            return
        log.info("closing a connection whose request took over %.1f s", self.request_timeout)
        if self.cycle is not None and self.cycle.response_started:
            self._refused = True
            self.transport.close()
        else:
            self._refuse(RequestTimeout(f"The request was not complete within {self.request_timeout:g} s."))

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._started = self.loop.time()
        address = self.client[0] if self.client else None
        if address is not None:
            counts = self.counts.by_address
            open_now = counts.get(address, 0)
            if open_now >= self.max_connections_per_address:
                # Answered on its first bytes (read by then, so the close is a clean FIN that
                # does not discard the answer), or closed at the header deadline if it sends none.
                self._over_cap = True
                self.counts.refused(address, self.max_connections_per_address)
            else:
                counts[address] = open_now + 1
                self._address = address
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._over_cap:
            self._refuse(TooManyRequests(
                f"Too many open connections from this address (at most {self.max_connections_per_address}); "
                "close some and retry.", retry_after=1))
            return
        super().data_received(data)
        if self._in_body and self._body_deadline is None and not self._refused:
            self._body_deadline = self.loop.call_at(self._started + self.request_timeout, self._body_too_slow)

    def on_headers_complete(self) -> None:
        self._disarm()
        self._in_body = True
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.transport is self.transport:
            cycle.transport = _OneWrite(self.transport, cycle)  # type: ignore[assignment]

    def on_response_complete(self) -> None:
        cycle = self.cycle
        if cycle is not None and isinstance(cycle.transport, _OneWrite):
            cycle.transport.flush()
        super().on_response_complete()

    def on_message_complete(self) -> None:
        self._in_body = False
        self._disarm_body()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._disarm()
        self._disarm_body()
        if self._address is not None:
            counts = self.counts.by_address
            left = counts.get(self._address, 1) - 1
            if left > 0:
                counts[self._address] = left
            else:
                counts.pop(self._address, None)
            self._address = None
        super().connection_lost(exc)

    def shutdown(self) -> None:
        """An idle connection is closed at once, as uvicorn does; but closing a TLS connection waits
        for the client's close_notify, which a keep-alive client never sends, and held the process
        for the whole graceful-shutdown timeout (3 s). So an idle connection still open shortly
        after is aborted; one with a request in flight is left to finish."""
        idle = self.cycle is None or self.cycle.response_complete
        super().shutdown()
        if idle:
            self.loop.call_later(SHUTDOWN_GRACE, self._abort_if_open)

    def _abort_if_open(self) -> None:
        if not self._lost:
            self.transport.abort()


def protocol_class(header_timeout: float, api_style: str = "seed", *, request_timeout: float = 30.0,
                   max_connections_per_address: int = 128) -> type[Any] | str:
    """The guarded protocol with its deadlines, its cap, a connection count of its own and the wire
    format of its refusals bound, or uvicorn's default where httptools is unavailable (a
    non-CPython interpreter), with a warning."""
    try:
        import httptools  # noqa: F401
    except ImportError:  # pragma: no cover - httptools is a dependency on CPython
        log.warning("httptools is not installed: requests have no deadline and connections no cap")
        return "auto"
    return type("HttpProtocol", (GuardedHttpToolsProtocol,), {
        "header_timeout": header_timeout, "request_timeout": request_timeout,
        "max_connections_per_address": max_connections_per_address, "api_style": api_style,
        "counts": ConnectionCount(),
    })
