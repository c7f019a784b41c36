"""Webhook subscriptions to a service's events: what a PUT may say, checked before anything runs.

The destination's safety (no private addresses, no redirects) is the delivery side's business
(``events_net.py``): it depends on what a name resolves to at the time of sending, not on the text.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from tenant_access.domain import events
from tenant_access.domain.errors import Problems
from tenant_access.domain.models import ServiceRef

#: Hex digits of :func:`metrics_label` (48 bits: no collision among any plausible number of subscriptions).
LABEL_DIGITS = 12
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{1,62}[A-Za-z0-9]$")
MAX_SECRET = 256


@dataclass(frozen=True, slots=True)
class EventSubscription:
    service: ServiceRef
    name: str
    destination: str
    event_types: tuple[str, ...]
    schema: str
    #: The Standard Webhooks signing secret (``whsec_`` + base64), or None for unsigned deliveries.
    #: Never shown back: answers only say whether one is set.
    secret: str | None
    created_at: _dt.datetime

    @property
    def key(self) -> str:
        """The subscription's identity in storage: its resource id, lower-cased."""
        return f"{self.service.resource_id}/eventSubscriptions/{self.name}".lower()

    @property
    def resource_id(self) -> str:
        return f"{self.service.resource_id}/eventSubscriptions/{self.name}"

    @property
    def metrics_label(self) -> str:
        return metrics_label(self.key)

    def wants(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types

    def describe(self) -> dict[str, Any]:
        return {"id": self.resource_id, "name": self.name, "destination": self.destination,
                "event_types": list(self.event_types), "schema": self.schema,
                "signed": self.secret is not None, "metrics_label": self.metrics_label,
                "created_at": self.created_at}


@functools.lru_cache(maxsize=4096)  # every scrape labels every subscription again
def metrics_label(key: str) -> str:
    """The ``subscription`` label of the ``/metrics`` series: a digest of the subscription's key
    (its lower-cased resource id), so a scrape does not name subscription ids, resource groups or
    services, while a dashboard keeps one series per subscription across restarts and replicas.
    Owners see the mapping in the subscription's answers (``metrics_label``). A pseudonym, not a
    secret: whoever already knows a subscription's full resource id can compute its label."""
    return hashlib.sha256(key.lower().encode("utf-8")).hexdigest()[:LABEL_DIGITS]


def destination_for_audit(url: str) -> str:
    """The destination as the audit trail records it: scheme, host and path only. Webhook URLs
    often carry a credential in their query (``?code=...``); the trail must not keep it."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}" + ("?…" if parts.query else "")


NAME_RULE = "3 to 64 letters, digits or hyphens, not starting or ending with a hyphen"


def check_name(name: str) -> None:
    """400 for a name no subscription can have: a GET may say 404, but a DELETE of it must not
    answer "deleted" (Azure style's 204) as if such a subscription could have existed."""
    if not NAME.match(name):
        problems = Problems()
        problems.add("path.eventSubscriptionName", NAME_RULE)
        problems.raise_if_any()


def parse(service: ServiceRef, name: str, body: Any, now: _dt.datetime) -> EventSubscription:
    """The subscription a PUT body describes (``properties`` as Azure resources have them, or the
    fields at the top level). Unknown event types and schemas are refused by name."""
    problems = Problems()
    if not NAME.match(name):
        problems.add("path.eventSubscriptionName", NAME_RULE)
    props = body.get("properties", body) if isinstance(body, dict) else None
    if not isinstance(props, dict):
        problems.add("body", "must be a JSON object")
        problems.raise_if_any("The event subscription is not valid.")
        raise AssertionError("unreachable")
    destination = props.get("destination")
    if isinstance(destination, dict):  # Azure's shape: {"endpointType": "WebHook", "properties": {"endpointUrl"}}
        destination = (destination.get("properties") or {}).get("endpointUrl")
    if not isinstance(destination, str) or not _is_http_url(destination):
        problems.add("body.destination", "must be an absolute http(s) URL")
    types = props.get("eventTypes", props.get("event_types", []))
    if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
        problems.add("body.eventTypes", "must be a list of event types")
        types = []
    unknown = [t for t in types if t not in events.SCHEMAS]
    if unknown:
        problems.add("body.eventTypes", f"unknown event types: {', '.join(unknown)}")
    schema = props.get("eventDeliverySchema", props.get("schema", events.SCHEMA_CLOUDEVENTS))
    if schema not in events.DELIVERY_SCHEMAS:
        problems.add("body.eventDeliverySchema", f"must be one of {', '.join(events.DELIVERY_SCHEMAS)}")
    secret = props.get("secret")
    if secret is not None and (not isinstance(secret, str) or not 24 <= len(secret) <= MAX_SECRET):
        problems.add("body.secret", f"must be a string of 24 to {MAX_SECRET} characters")
    problems.raise_if_any("The event subscription is not valid.")
    return EventSubscription(service, name, str(destination), tuple(dict.fromkeys(types)), str(schema),
                             secret, now)


def _is_http_url(text: str) -> bool:
    try:
        parts = urlsplit(text)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and len(text) <= 2048 \
        and not parts.username and not parts.password
