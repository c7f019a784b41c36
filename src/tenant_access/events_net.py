"""Talking to webhook destinations: which may be reached, how a request is signed, one attempt.

A destination is refused when any address its name resolves to is loopback, private, link-local
(the cloud metadata service at 169.254.169.254 among them), shared, reserved, multicast or
unspecified, unless the server runs with ``--allow-private-event-destinations``. The name is
resolved once per attempt and the request is sent to the address that was checked (the host name
still goes in ``Host`` and, for HTTPS, in SNI and certificate checks), so a name cannot resolve to
a public address for the check and to a private one for the connection. Redirects are never
followed (a 3xx is a failed attempt), and a response's body is read only up to a few bytes and
never stored: a destination cannot make the server fetch, or keep, anything on its behalf.

Signatures follow Standard Webhooks: ``webhook-signature: v1,<base64 HMAC-SHA256 of
"{webhook-id}.{webhook-timestamp}.{body}">``; a secret of the form ``whsec_<base64>`` is used
decoded, any other as its UTF-8 bytes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

#: Ranges no destination may be in without ``--allow-private-event-destinations``, beyond what
#: :mod:`ipaddress` already calls private, loopback, link-local, reserved, multicast or unspecified.
_EXTRA_BLOCKED = (ipaddress.ip_network("100.64.0.0/10"), ipaddress.ip_network("fd00:ec2::/32"))
#: Bytes of a response body read (and then dropped): enough to end the exchange cleanly.
MAX_RESPONSE_BYTES = 4096
USER_AGENT = "tenant-access-events/1"


#: What a failed exchange raises (beside :class:`Refused`): no answer, a broken answer, a timeout.
FAILURES: tuple[type[BaseException], ...] = (aiohttp.ClientError, TimeoutError, OSError)


def session(concurrency: int = 16) -> aiohttp.ClientSession:
    """A connection pool for attempts (open it in a running loop). aiohttp rather than httpx: one
    delivery cost the delivery process 67-79 µs of CPU against 440-540 µs with httpx, measured
    side by side against the benchmark's receiver (benchmarks/events.py), and the delivery process
    shares a core with the clients of the server. No cookies are kept, no proxy is taken from the
    environment, and bodies are never decoded."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency),
                                 cookie_jar=aiohttp.DummyCookieJar(), trust_env=False, auto_decompress=False)


class Refused(Exception):
    """The destination may not be contacted; the message says why, with no secret in it."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    retry_after: float | None
    #: Headers the handshake needs (lower-cased names).
    allowed_origin: str | None = None
    #: The first bytes of the body, only when asked for (the Event Grid validation answer); never stored.
    head: bytes = b""


def blocked(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast
            or ip.is_unspecified or any(ip in net for net in _EXTRA_BLOCKED))


async def resolve(url: str, *, allow_private: bool) -> str:
    """The address to connect to for ``url``, after the safety rules; raises :class:`Refused`."""
    parts = urlsplit(url)
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host:
        raise Refused("the destination must be an http(s) URL")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        # An address needs no resolver (asyncio would still send it to a thread for getaddrinfo).
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            raise Refused(f"the destination's host name {host!r} does not resolve") from None
        addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise Refused(f"the destination's host name {host!r} does not resolve")
    if not allow_private:
        for address in addresses:
            if blocked(address):
                raise Refused(f"the destination {host!r} resolves to {address}, a loopback, private, link-local or "
                              "metadata address; start the server with --allow-private-event-destinations to allow it")
    return addresses[0]


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    from tenant_access.client.webhooks import digest  # standard library only: cheap to import

    return "v1," + base64.b64encode(digest(secret, message_id, timestamp, body)).decode("ascii")


def headers(event_id: str, timestamp: int, body: bytes, content_type: str, secret: str | None) -> dict[str, str]:
    out = {"content-type": content_type, "user-agent": USER_AGENT, "webhook-id": event_id,
           "webhook-timestamp": str(timestamp)}
    if secret is not None:
        out["webhook-signature"] = signature(secret, event_id, timestamp, body)
    return out


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if 0 <= seconds <= 86400 else None


async def send(method: str, url: str, *, content: bytes = b"", request_headers: dict[str, str] | None = None,
               timeout: float, allow_private: bool, keep_head: bool = False,
               client: aiohttp.ClientSession | None = None) -> Answer:
    """One request to a destination, to the address checked by :func:`resolve`; never follows a
    redirect. Raises :class:`Refused` for a forbidden destination, one of :data:`FAILURES` for a
    failed exchange."""
    address = await resolve(url, allow_private=allow_private)
    parts = urlsplit(url)
    host_header = parts.netloc.rsplit("@", 1)[-1]
    ip = ipaddress.ip_address(address)
    literal = f"[{address}]" if ip.version == 6 else address
    target = parts._replace(netloc=f"{literal}:{parts.port or (443 if parts.scheme == 'https' else 80)}").geturl()
    sent_headers = {**(request_headers or {}), "Host": host_header}
    async with contextlib.AsyncExitStack() as stack:
        if client is None:
            client = await stack.enter_async_context(session(1))
        async with asyncio.timeout(timeout):
            async with client.request(method, URL(target, encoded=True), data=content or None, headers=sent_headers,
                                      allow_redirects=False, timeout=aiohttp.ClientTimeout(total=timeout),
                                      server_hostname=parts.hostname if parts.scheme == "https" else None) as response:
                # Read (then dropped) only so far: a short answer is read to its end, which lets its
                # connection serve the next attempt; a longer one is cut and its connection closed.
                head = b""
                while len(head) < MAX_RESPONSE_BYTES:
                    chunk = await response.content.read(MAX_RESPONSE_BYTES - len(head))
                    if not chunk:
                        break
                    head += chunk
                status, headers = response.status, response.headers
    return Answer(status, _retry_after(headers.get("retry-after")), headers.get("webhook-allowed-origin"),
                  head if keep_head else b"")
