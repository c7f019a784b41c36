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

import httpx

#: Ranges no destination may be in without ``--allow-private-event-destinations``, beyond what
#: :mod:`ipaddress` already calls private, loopback, link-local, reserved, multicast or unspecified.
_EXTRA_BLOCKED = (ipaddress.ip_network("100.64.0.0/10"), ipaddress.ip_network("fd00:ec2::/32"))
#: Bytes of a response body read (and then dropped): enough to end the exchange cleanly.
MAX_RESPONSE_BYTES = 4096
USER_AGENT = "tenant-access-events/1"


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
               client: httpx.AsyncClient | None = None) -> Answer:
    """One request to a destination, to the address checked by :func:`resolve`; never follows a
    redirect. Raises :class:`Refused` for a forbidden destination, ``httpx.HTTPError`` (or
    ``TimeoutError``) for a failed exchange."""
    address = await resolve(url, allow_private=allow_private)
    parts = urlsplit(url)
    host_header = parts.netloc.rsplit("@", 1)[-1]
    ip = ipaddress.ip_address(address)
    literal = f"[{address}]" if ip.version == 6 else address
    target = parts._replace(netloc=f"{literal}:{parts.port or (443 if parts.scheme == 'https' else 80)}").geturl()
    extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
    sent_headers = {**(request_headers or {}), "host": host_header}
    async with contextlib.AsyncExitStack() as stack:
        if client is None:
            client = await stack.enter_async_context(httpx.AsyncClient(follow_redirects=False, trust_env=False))
        request = client.build_request(method, target, content=content, headers=sent_headers,
                                       extensions={**extensions, "timeout": httpx.Timeout(timeout).as_dict()})
        async with asyncio.timeout(timeout):
            response = await client.send(request, stream=True)
            head = b""
            try:
                async for chunk in response.aiter_bytes():
                    if keep_head:
                        head += chunk[:MAX_RESPONSE_BYTES - len(head)]
                    if len(head) >= MAX_RESPONSE_BYTES or not keep_head:
                        break
            finally:
                await response.aclose()
    return Answer(response.status_code, _retry_after(response.headers.get("retry-after")),
                  response.headers.get("webhook-allowed-origin"), head)
