"""Proving a destination wants our events before a subscription is stored.

CloudEvents' webhook spec: an ``OPTIONS`` request with ``WebHook-Request-Origin`` (this server's
public host), answered 2xx with ``WebHook-Allowed-Origin`` naming it or ``*``. For the Event Grid
schema, Event Grid's own: a ``Microsoft.EventGrid.SubscriptionValidationEvent`` POSTed with
``aeg-event-type: SubscriptionValidation``, answered 200 with ``{"validationResponse": code}``.
A destination that does not answer so is refused (400, naming what it did instead), with the same
safety rules as deliveries (``events_net.py``).
"""

from __future__ import annotations

import datetime as _dt
import json
import secrets
from urllib.parse import urlsplit

from tenant_access import events_net
from tenant_access.domain import events
from tenant_access.domain.errors import FieldError, ValidationFailed
from tenant_access.domain.event_subscriptions import EventSubscription

VALIDATION_EVENT = "Microsoft.EventGrid.SubscriptionValidationEvent"


def _refused(why: str) -> ValidationFailed:
    return ValidationFailed(f"The destination was refused: {why}.",
                            details=[FieldError("body.destination", why)], target="destination")


async def check(sub: EventSubscription, public_url: str, *, timeout: float, allow_private: bool) -> None:
    origin = urlsplit(public_url).netloc or "tenant-access"
    try:
        if sub.schema == events.SCHEMA_EVENTGRID:
            await _event_grid(sub, timeout=timeout, allow_private=allow_private)
        else:
            answer = await events_net.send("OPTIONS", sub.destination, request_headers={
                "webhook-request-origin": origin, "webhook-request-rate": "120",
                "user-agent": events_net.USER_AGENT}, timeout=timeout, allow_private=allow_private)
            if not 200 <= answer.status < 300:
                raise _refused(f"it answered the CloudEvents webhook handshake (OPTIONS) with HTTP {answer.status}"
                               + (" (redirects are not followed)" if 300 <= answer.status < 400 else ""))
            allowed = (answer.allowed_origin or "").strip()
            if allowed not in ("*", origin):
                raise _refused("its answer to the CloudEvents webhook handshake (OPTIONS) did not allow this "
                               f"origin in WebHook-Allowed-Origin (expected {origin} or *)")
    except events_net.Refused as exc:
        raise _refused(str(exc)) from None
    except events_net.FAILURES as exc:
        raise _refused(f"it did not answer the handshake ({type(exc).__name__})") from None


async def _event_grid(sub: EventSubscription, *, timeout: float, allow_private: bool) -> None:
    code = secrets.token_hex(16)
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    body = json.dumps([{"id": secrets.token_hex(12), "topic": sub.service.resource_id, "subject": "",
                        "data": {"validationCode": code, "validationUrl": None}, "eventType": VALIDATION_EVENT,
                        "eventTime": now, "metadataVersion": "1", "dataVersion": "1"}]).encode()
    answer = await events_net.send("POST", sub.destination, content=body, request_headers={
        "content-type": "application/json", "aeg-event-type": "SubscriptionValidation",
        "user-agent": events_net.USER_AGENT}, timeout=timeout, allow_private=allow_private, keep_head=True)
    if answer.status != 200:
        raise _refused(f"it answered the Event Grid subscription validation event with HTTP {answer.status}")
    try:
        replied = json.loads(answer.head).get("validationResponse")
    except (ValueError, AttributeError):
        replied = None
    if not isinstance(replied, str) or not secrets.compare_digest(replied.encode(), code.encode()):
        raise _refused("its answer to the Event Grid subscription validation event did not carry the "
                       "validationCode as validationResponse")
