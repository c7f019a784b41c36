"""Checking an event delivery in your receiver: its Standard Webhooks signature and its age.

Use it on the raw body, before parsing it::

    from tenant_access.client.webhooks import verify

    event = verify(request.headers, raw_body, secret)   # raises WebhookVerificationError

A delivery is accepted when one of the ``v1,`` signatures in ``webhook-signature`` is the
HMAC-SHA256 (keyed by the subscription's secret) of ``{webhook-id}.{webhook-timestamp}.{body}``,
and its timestamp is within ``tolerance`` seconds of now (either way): a delivery captured and
replayed later is refused even though its signature is good. De-duplicate on the event id (the
``webhook-id``): every delivery of one event carries the same one.

Standalone (standard library only), so a receiver can vendor this file.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

DEFAULT_TOLERANCE = 300


class WebhookVerificationError(Exception):
    """The delivery is not authentic or not fresh; the message says which check failed."""


def _key(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except ValueError:
            pass
    return secret.encode("utf-8")


def digest(secret: str, message_id: str, timestamp: int, body: bytes) -> bytes:
    """HMAC-SHA256 of ``{message_id}.{timestamp}.{body}`` under the secret (``whsec_`` + base64, or
    plain text): the one definition the server signs with and :func:`verify` checks against."""
    return hmac.new(_key(secret), f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    raise WebhookVerificationError(f"the {name} header is missing")


def verify(headers: Mapping[str, str], body: bytes, secret: str, *, tolerance: float = DEFAULT_TOLERANCE,
           now: float | None = None) -> Any:
    """The delivered JSON (a CloudEvent, or Event Grid's array), once authentic and fresh."""
    message_id = _header(headers, "webhook-id")
    stamp = _header(headers, "webhook-timestamp")
    signatures = _header(headers, "webhook-signature")
    try:
        sent_at = int(stamp)
    except ValueError:
        raise WebhookVerificationError("the webhook-timestamp header is not a number of seconds") from None
    current = time.time() if now is None else now
    if abs(current - sent_at) > tolerance:
        raise WebhookVerificationError(f"the webhook-timestamp is more than {tolerance:g} s from now: a replay, "
                                       "or a clock that is off")
    expected = digest(secret, message_id, sent_at, body)
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version != "v1":
            continue
        try:
            given = base64.b64decode(value, validate=True)
        except ValueError:
            continue
        if hmac.compare_digest(given, expected):
            return json.loads(body)
    raise WebhookVerificationError("no webhook-signature matches the body: a wrong secret, or a changed body")
