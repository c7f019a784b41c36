"""The seed wire format: ``{"success": true, "data": ...}`` and ``{"success": false, "error": ...}``.

This is the product's default and its original contract (``../shared/seed/``): flat, snake_case
``data`` objects that all carry ``id`` and ``created_at``, and one error envelope for everything,
down to unknown routes and server faults.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from tenant_access.clock import format_duration
from tenant_access.domain.audit import AuditEvent
from tenant_access.domain.errors import TenantAccessError
from tenant_access.domain.models import AccessConfig, Rotation, Secrets, Service, ServiceRef
from tenant_access.domain.usage import KeyUsage
from tenant_access.http.context import Context, Outcome
from tenant_access.http.request import Request
from tenant_access.http.responses import Rendered, Response, json_response

NAME = "seed"
REQUEST_ID_HEADER = "X-Request-Id"


_last_rfc3339: tuple[_dt.datetime | None, str] = (None, "")


def rfc3339(value: _dt.datetime) -> str:
    """UTC with a ``Z``; microseconds only when there are any, matching the seed's example shape.

    An answer shows a value just made (a rotation's time) or one of a few stored ones: the last
    value is remembered by identity, and a UTC one is formatted without two conversions (an LRU
    cache here hashed every new datetime to miss, which cost more than the formatting)."""
    global _last_rfc3339  # noqa: PLW0603 - a one-entry memo; a race can only recompute the same text
    last, text = _last_rfc3339
    if value is last:
        return text
    if value.tzinfo is _dt.UTC:
        text = value.isoformat()[:-6] + "Z"  # isoformat omits zero microseconds, as wanted
    else:
        moved = value.astimezone(_dt.UTC) if value.utcoffset() else value
        text = moved.replace(tzinfo=None).isoformat() + "Z"
    _last_rfc3339 = (value, text)
    return text


def service_data(svc: Service) -> dict[str, Any]:
    return {
        "id": svc.ref.resource_id,
        "name": svc.ref.name,
        "subscription_id": svc.ref.subscription_id,
        "resource_group": svc.ref.resource_group,
        "location": svc.location,
        "sku_name": svc.sku_name,
        "sku_capacity": svc.sku_capacity,
        "publisher_email": svc.publisher_email,
        "publisher_name": svc.publisher_name,
        "tags": svc.tags,
        "provisioning_state": "Succeeded",
        "etag": svc.etag,
        "created_at": rfc3339(svc.created_at),
        "updated_at": rfc3339(svc.updated_at),
    }


def access_data(config: AccessConfig) -> dict[str, Any]:
    return {
        "id": config.resource_id,
        "name": config.name.value,
        "service_name": config.service.name,
        "resource_group": config.service.resource_group,
        "subscription_id": config.service.subscription_id,
        "principal_id": config.principal_id,
        "enabled": config.enabled,
        "etag": config.etag,
        "primary_key_version_id": config.primary_version_id,
        "primary_key_created_at": rfc3339(config.primary_created_at),
        "secondary_key_version_id": config.secondary_version_id,
        "secondary_key_created_at": rfc3339(config.secondary_created_at),
        "created_at": rfc3339(config.created_at),
        "updated_at": rfc3339(config.updated_at),
    }


def secrets_data(secrets: Secrets) -> dict[str, Any]:
    data = access_data(secrets.config)
    data["primary_key"] = secrets.primary_key
    data["secondary_key"] = secrets.secondary_key
    for slot, when in zip(("primary", "secondary"), secrets.expires_at, strict=True):
        if when is not None:  # only under a rotation policy with an expiryTime
            data[f"{slot}_key_expires_at"] = rfc3339(when)
    return data


def rotation_data(rotation: Rotation) -> dict[str, Any]:
    version, config = rotation.version, rotation.config
    return {
        "id": version.id,
        "created_at": rfc3339(version.created_at),
        "key": version.slot.value,
        "access_name": config.name.value,
        "service_name": config.service.name,
        "resource_group": config.service.resource_group,
        "subscription_id": config.service.subscription_id,
        "configuration_id": config.resource_id,
        "previous_id": rotation.previous_version_id,
        "etag": config.etag,
    }


def audit_data(record: AuditEvent) -> dict[str, Any]:
    return {
        "id": record.id,
        "created_at": rfc3339(record.at),
        "principal": record.principal,
        "role": record.role,
        "scope": record.scope,
        "operation": record.operation,
        "target": record.target,
        "outcome": record.outcome,
        "status": record.status,
        "request_id": record.request_id,
        "client": record.client,
        "old_version_id": record.old_version_id,
        "new_version_id": record.new_version_id,
        "detail": record.detail,
        "count": record.count,
    }


def key_usage_data(usage: KeyUsage) -> dict[str, Any]:
    """Our extension (issue 14), in the seed's flat snake_case; times to the minute."""
    config = usage.config
    return {
        "id": config.resource_id + "/keyUsage",
        "access_name": config.name.value,
        "service_name": config.service.name,
        "resource_group": config.service.resource_group,
        "subscription_id": config.service.subscription_id,
        "as_of": rfc3339(usage.as_of),
        "flush_interval_seconds": usage.flush_seconds,
        "keys": [{
            "slot": key.slot.value,
            "version_id": key.version_id,
            "created_at": rfc3339(key.created_at),
            "last_used_at": rfc3339(key.last_used) if key.last_used else None,
            "use_count": key.uses,
            "unused_for": format_duration(key.unused_for(usage.as_of)),
            "expires_at": rfc3339(key.expires_at) if key.expires_at else None,
        } for key in usage.keys],
    }


def _ok(status: int, data: Any) -> Response:
    return json_response(status, {"success": True, "data": data})


_access_answer: Rendered[AccessConfig] = Rendered(lambda config: {"success": True, "data": access_data(config)})


def _etag(config: AccessConfig) -> str:
    return f'"{config.etag}"'


def success_status(kind: str, ctx: Context) -> int:
    """Every success of an existing configuration is a 200 here (a new service is 201, decided by
    the use case); the audit record of a change takes its status from this."""
    return 200


def render(outcome: Outcome, ctx: Context) -> Response:
    kind, value = outcome.kind, outcome.value
    if kind == "rotation":
        return _ok(success_status(kind, ctx), rotation_data(value))
    if kind == "access":
        return Response(200, _access_answer(value)).header("ETag", _etag(value))
    if kind == "access_etag":
        return Response(200, content_type=None).header("ETag", _etag(value))
    if kind == "secrets":  # keys: no cache may keep a copy (RFC 9111 no-store)
        return _ok(200, secrets_data(value)).header("ETag", _etag(value.config)).header("Cache-Control", "no-store")
    if kind == "access_list":
        return _ok(200, [access_data(c) for c in value])
    if kind == "service":
        return _ok(201 if outcome.created else 200, service_data(value))
    if kind == "service_list":
        return _ok(200, [service_data(s) for s in value])
    if kind == "service_deleted":
        ref, deleted = value
        if deleted is None:
            raise _missing(ref)
        data = service_data(deleted)
        data["provisioning_state"] = "Deleted"
        return _ok(200, data)
    if kind == "audit_list":
        return _ok(200, [audit_data(r) for r in value])
    if kind == "key_usage":
        return _ok(200, key_usage_data(value))
    if kind == "rotation_policy":  # Key Vault's shape in both styles: that is what its users know
        return _ok(200, value.describe())
    if kind == "rotation_policy_deleted":
        return _ok(200, {"deleted": value})
    if kind.startswith("event_subscription"):
        from tenant_access.http import events

        return events.render(outcome, "seed")
    if kind == "document":
        return json_response(200, value)
    raise AssertionError(f"no seed rendering for {kind}")


def _missing(ref: ServiceRef) -> TenantAccessError:
    from tenant_access.domain.errors import NotFound

    return NotFound(f"The service '{ref.name}' was not found in resource group '{ref.resource_group}'.")


def error(exc: TenantAccessError, request: Request | None, request_id: str) -> Response:
    body: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if exc.details:
        body["details"] = [d.as_dict() for d in exc.details]
    body["request_id"] = request_id
    response = json_response(exc.status, {"success": False, "error": body})
    for name, value in exc.headers.items():
        response.header(name, value)
    return response


def common_headers(response: Response, request: Request | None, request_id: str) -> None:
    """``nosniff`` goes on every answer, errors included: a browser must never run a JSON body as
    a script or a page."""
    response.header("X-Content-Type-Options", "nosniff")
    response.header(REQUEST_ID_HEADER, request_id)
