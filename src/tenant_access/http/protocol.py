"""The HTTP/1.1 protocol, with a deadline for request headers.

uvicorn closes idle keep-alive connections but lets a client take as long as it likes to send the
headers of a request, so a few hundred "slow-loris" sockets dribbling one header byte at a time
would hold the server's connections forever. Here each request's headers must be complete within
``header_timeout`` seconds of its first byte (or of the connection, for the first request), or the
connection is closed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("tenant_access.http")


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    header_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None

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

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def protocol_class(header_timeout: float) -> type[Any] | str:
    """The guarded protocol with ``header_timeout`` bound, or uvicorn's default where httptools
    is unavailable (a non-CPython interpreter), with a warning."""
    try:
        import httptools  # noqa: F401
    except ImportError:  # pragma: no cover - httptools is a dependency on CPython
        log.warning("httptools is not installed: request headers have no deadline")
        return "auto"
    return type("HttpProtocol", (GuardedHttpToolsProtocol,), {"header_timeout": header_timeout})
