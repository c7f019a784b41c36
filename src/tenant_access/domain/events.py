"""Events: the facts that holders of a key act on, and their two wire shapes.

An event is decided here, in the domain, from a change that is about to be stored; the store
writes it in the same transaction as the change (the transactional outbox), so an acknowledged
change always has its event and a refused or rolled-back one never does. Events carry ids,
versions and times only: a key never leaves the store in an event, whatever the subscriber.

The id is fixed when the event is decided and stored with it, so every delivery (and every
redelivery) of one fact carries the same id, and a receiver can de-duplicate on it.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from tenant_access.domain.keys import ordered_id
from tenant_access.domain.models import AccessConfig, AccessName, KeySlot, ServiceRef

PREFIX: Final = "Microsoft.ApiManagement.TenantAccess."
KEY_REGENERATED: Final = PREFIX + "KeyRegenerated"
KEY_NEAR_EXPIRY: Final = PREFIX + "KeyNearExpiry"
KEY_EXPIRED: Final = PREFIX + "KeyExpired"
ROTATION_BLOCKED: Final = PREFIX + "RotationBlocked"
ACCESS_ENABLED: Final = PREFIX + "AccessEnabled"
ACCESS_DISABLED: Final = PREFIX + "AccessDisabled"
SERVICE_CREATED: Final = PREFIX + "ServiceCreated"
SERVICE_DELETED: Final = PREFIX + "ServiceDeleted"

#: The data schema version of every type (Event Grid's ``dataVersion``); bumped with any
#: incompatible change of a payload.
DATA_VERSION: Final = "1.0"

_ID = {"type": "string", "pattern": "^[0-9a-f]{24}$"}
_TIME = {"type": "string", "format": "date-time"}
_SLOT = {"type": "string", "enum": ["primary", "secondary"]}
_ACCESS = {"type": "string", "enum": ["access", "gitAccess"]}
_SERVICE = {"type": "string", "description": "The service's resource id."}


def _object(properties: Mapping[str, Any], required: tuple[str, ...] | None = None) -> dict[str, Any]:
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
            "properties": dict(properties), "required": list(required or properties),
            "additionalProperties": False}


_CONFIG = {"service": _SERVICE, "accessName": _ACCESS}

#: One JSON Schema per type, for the ``data`` member. ``additionalProperties: false`` is what
#: keeps key material out: a test checks every emitted payload against these.
SCHEMAS: Final[dict[str, dict[str, Any]]] = {
    KEY_REGENERATED: _object({
        **_CONFIG, "slot": _SLOT, "oldVersionId": _ID, "newVersionId": _ID, "regeneratedAt": _TIME,
        "actor": {"type": "string", "description": "The principal that asked (or `policy`)."},
        "byPolicy": {"type": "boolean"},
    }),
    KEY_NEAR_EXPIRY: _object({**_CONFIG, "slot": _SLOT, "versionId": _ID, "expiresAt": _TIME}),
    KEY_EXPIRED: _object({**_CONFIG, "slot": _SLOT, "versionId": _ID, "expiredAt": _TIME}),
    ROTATION_BLOCKED: _object({
        **_CONFIG, "slot": _SLOT, "reason": {"type": "string"},
        "inUseVersionIds": {"type": "array", "items": _ID},
    }),
    ACCESS_ENABLED: _object({**_CONFIG, "enabled": {"const": True}, "changedAt": _TIME, "actor": {"type": "string"}}),
    ACCESS_DISABLED: _object({**_CONFIG, "enabled": {"const": False}, "changedAt": _TIME,
                              "actor": {"type": "string"}}),
    SERVICE_CREATED: _object({"service": _SERVICE, "createdAt": _TIME, "actor": {"type": "string"}}),
    SERVICE_DELETED: _object({"service": _SERVICE, "deletedAt": _TIME, "actor": {"type": "string"}}),
}
TYPES: Final = tuple(SCHEMAS)


@dataclass(frozen=True, slots=True)
class Event:
    """One fact, as the outbox stores it. ``source`` is the resource id of the configuration (of
    the service, for service events); ``order_key`` is that id lower-cased, the scope within which
    events are delivered in commit order."""

    id: str
    type: str
    source: str
    subject: str
    time: _dt.datetime
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def order_key(self) -> str:
        return self.source.lower()

    @property
    def service_key(self) -> str:
        """The lower-cased service resource id: subscriptions are made on a service."""
        head, sep, _ = self.order_key.partition("/tenant/")
        return head if sep else self.order_key


def _ts(value: _dt.datetime) -> str:
    if value.tzinfo is _dt.UTC:
        return value.isoformat(timespec="microseconds")[:-6] + "Z"
    return value.astimezone(_dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def emit(event_type: str, source: str, subject: str, data: Mapping[str, Any], at: _dt.datetime) -> Event:
    """A new event of a known type (the lifecycle scheduler calls this for expiry and blocked
    rotations); refuses an unknown type, so a typo cannot reach subscribers."""
    if event_type not in SCHEMAS:
        raise ValueError(f"unknown event type {event_type!r}")
    return Event(ordered_id(at), event_type, source, subject, at, dict(data))


def _config_data(service: ServiceRef, name: AccessName) -> dict[str, Any]:
    return {"service": service.resource_id, "accessName": name.value}


def key_regenerated(service: ServiceRef, name: AccessName, slot: KeySlot, old_version_id: str,
                    new_version_id: str, actor: str, at: _dt.datetime) -> Event:
    return emit(KEY_REGENERATED, f"{service.resource_id}/tenant/{name.value}", f"keys/{slot.value}", {
        **_config_data(service, name), "slot": slot.value, "oldVersionId": old_version_id,
        "newVersionId": new_version_id, "regeneratedAt": _ts(at), "actor": actor, "byPolicy": actor == "policy",
    }, at)


def key_near_expiry(service: ServiceRef, name: AccessName, slot: KeySlot, version_id: str,
                    expires_at: _dt.datetime, at: _dt.datetime) -> Event:
    return emit(KEY_NEAR_EXPIRY, f"{service.resource_id}/tenant/{name.value}", f"keys/{slot.value}", {
        **_config_data(service, name), "slot": slot.value, "versionId": version_id, "expiresAt": _ts(expires_at),
    }, at)


def key_expired(service: ServiceRef, name: AccessName, slot: KeySlot, version_id: str,
                at: _dt.datetime) -> Event:
    return emit(KEY_EXPIRED, f"{service.resource_id}/tenant/{name.value}", f"keys/{slot.value}", {
        **_config_data(service, name), "slot": slot.value, "versionId": version_id, "expiredAt": _ts(at),
    }, at)


def rotation_blocked(service: ServiceRef, name: AccessName, slot: KeySlot, in_use: tuple[str, ...], reason: str,
                     at: _dt.datetime) -> Event:
    return emit(ROTATION_BLOCKED, f"{service.resource_id}/tenant/{name.value}", f"keys/{slot.value}", {
        **_config_data(service, name), "slot": slot.value, "reason": reason, "inUseVersionIds": list(in_use),
    }, at)


def access_changes(before: AccessConfig, enabled: bool, actor: str, at: _dt.datetime) -> tuple[Event, ...]:
    """The enabled/disabled event of a change, if ``enabled`` changed."""
    if enabled == before.enabled:
        return ()
    kind = ACCESS_ENABLED if enabled else ACCESS_DISABLED
    return (emit(kind, before.resource_id, "enabled", {
        **_config_data(before.service, before.name), "enabled": enabled, "changedAt": _ts(at), "actor": actor,
    }, at),)


def service_created(service: ServiceRef, actor: str, at: _dt.datetime) -> Event:
    return emit(SERVICE_CREATED, service.resource_id, "service",
                {"service": service.resource_id, "createdAt": _ts(at), "actor": actor}, at)


def service_deleted(service: ServiceRef, actor: str, at: _dt.datetime) -> Event:
    return emit(SERVICE_DELETED, service.resource_id, "service",
                {"service": service.resource_id, "deletedAt": _ts(at), "actor": actor}, at)


# -- wire shapes ---------------------------------------------------------------------------------

def cloudevent(event: Event) -> dict[str, Any]:
    """CloudEvents 1.0, structured JSON mode (``application/cloudevents+json``)."""
    return {"specversion": "1.0", "id": event.id, "source": event.source, "type": event.type,
            "subject": event.subject, "time": _ts(event.time), "datacontenttype": "application/json",
            "dataschema": f"urn:tenant-access:events:{event.type.removeprefix(PREFIX)}:{DATA_VERSION}",
            "data": event.data}


def eventgrid(event: Event) -> dict[str, Any]:
    """The Event Grid event schema (one event; deliveries send a JSON array of them). ``topic`` is
    the service, ``subject`` the path below it, as Event Grid's system topics have them."""
    service = event.data.get("service", event.source)
    subject = event.source[len(service):].lstrip("/") if event.source.startswith(service) else ""
    return {"id": event.id, "topic": service, "subject": "/".join(p for p in (subject, event.subject) if p),
            "eventType": event.type, "eventTime": _ts(event.time), "data": event.data,
            "dataVersion": DATA_VERSION, "metadataVersion": "1"}


SCHEMA_CLOUDEVENTS: Final = "CloudEventSchemaV1_0"
SCHEMA_EVENTGRID: Final = "EventGridSchema"
DELIVERY_SCHEMAS: Final = (SCHEMA_CLOUDEVENTS, SCHEMA_EVENTGRID)


def body(event: Event, schema: str) -> tuple[bytes, str]:
    """The request body and content type one delivery sends."""
    import json

    if schema == SCHEMA_EVENTGRID:
        return json.dumps([eventgrid(event)], separators=(",", ":")).encode(), "application/json"
    return json.dumps(cloudevent(event), separators=(",", ":")).encode(), "application/cloudevents+json"
