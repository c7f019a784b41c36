"""The HTTP/1.1 protocol, with a deadline for request headers and limits on their size.

uvicorn closes idle keep-alive connections but lets a client take as long as it likes to send the
headers of a request, so a few hundred "slow-loris" sockets dribbling one header byte at a time
would hold the server's connections forever. Here each request's headers must be complete within
``header_timeout`` seconds of its first byte (or of the connection, for the first request), or the
connection is closed.

It also refuses, before anything is buffered further, a request target over :data:`MAX_URL_BYTES`
(414) and headers over :data:`MAX_HEADER_BYTES` or :data:`MAX_HEADERS` (431); and it answers
requests that are not valid HTTP/1.1 (a NUL or control character in the request line or a header,
a bad version, garbage) with a 400 in the server's wire format rather than uvicorn's plain text.
"""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tenant_access.domain.errors import HeadersTooLarge, TenantAccessError, UriTooLong, ValidationFailed
from tenant_access.http.ids import new_request_id

log = logging.getLogger("tenant_access.http")

#: The longest request target (path and query) accepted.
MAX_URL_BYTES = 16 * 1024
#: The most header bytes (names and values) and the most header lines one request may send.
MAX_HEADER_BYTES = 32 * 1024
MAX_HEADERS = 200
#: Seconds an idle connection gets to close by itself once the server is stopping.
SHUTDOWN_GRACE = 0.3


class _Refused(Exception):
    """Stops the parser once a request has been answered with an error."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    header_timeout: float = 10.0
    api_style: str = "seed"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._header_count = 0
        self._refused = False
        self._lost = False

    def _refuse(self, exc: TenantAccessError) -> None:
        """Answer ``exc`` in the active wire format and close the connection."""
        if self._refused:
            return
        self._refused = True
        self._disarm()

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
            self._header_deadline = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        log.info("closing a connection whose request headers took over %.0f s", self.header_timeout)
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._disarm()
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


def protocol_class(header_timeout: float, api_style: str = "seed") -> type[Any] | str:
    """The guarded protocol with ``header_timeout`` and the wire format of its refusals bound, or
    uvicorn's default where httptools is unavailable (a non-CPython interpreter), with a warning."""
    try:
        import httptools  # noqa: F401
    except ImportError:  # pragma: no cover - httptools is a dependency on CPython
        log.warning("httptools is not installed: request headers have no deadline")
        return "auto"
    return type("HttpProtocol", (GuardedHttpToolsProtocol,), {"header_timeout": header_timeout,
                                                               "api_style": api_style})
