"""Reading answers in either wire style into the client's dataclasses.

Style detection, per answer (unless the client was told the style): a JSON object with a boolean
``success`` is the seed envelope; otherwise an ``x-ms-request-id`` header means Azure and an
``X-Request-Id`` header means seed; a bodiless ``204`` (which the seed style never sends) means
Azure. The body decides before the headers because a proxy may add or strip headers but does not
rewrite bodies.
"""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any, Literal

import httpx

from tenant_access.client._errors import UnexpectedResponse, request_id_of
from tenant_access.client._models import (
    AccessConfiguration,
    AuditEvent,
    KeySlot,
    KeyUsage,
    KeyUse,
    KeyVersion,
    Secrets,
    Service,
    ServiceRef,
)

Style = Literal["seed", "azure"]
Json = dict[str, Any]


def body_of(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return json.loads(response.content)
    except ValueError:
        raise _unexpected(response, "the answer is not JSON") from None


def detect(response: httpx.Response, body: Any) -> Style | None:
    if isinstance(body, dict) and isinstance(body.get("success"), bool):
        return "seed"
    if "x-ms-request-id" in response.headers:
        return "azure"
    if "x-request-id" in response.headers:
        return "seed"
    if response.status_code == 204:
        return "azure"
    return None


def _unexpected(response: httpx.Response, why: str) -> UnexpectedResponse:
    return UnexpectedResponse(
        f"{response.request.method} {response.request.url.path} answered {response.status_code}, but {why}; "
        "is the endpoint a tenant-access server?",
        status=response.status_code, request_id=request_id_of(response),
    )


def payload(response: httpx.Response, body: Any, style: Style) -> Any:
    """The resource part of a success answer: the seed's ``data``, or the Azure body itself."""
    if style == "seed":
        if not (isinstance(body, dict) and body.get("success") is True and "data" in body):
            raise _unexpected(response, 'the body is not a {"success": true, "data": ...} envelope')
        return body["data"]
    if body is None:
        raise _unexpected(response, "the body is empty")
    return body


def obj(response: httpx.Response, value: Any) -> Json:
    if not isinstance(value, dict):
        raise _unexpected(response, "a JSON object was expected")
    return value


def items(response: httpx.Response, value: Any, style: Style) -> tuple[list[Json], str | None]:
    """The items of a list answer and, in Azure style, the link to the next page (``None`` at the end)."""
    if style == "seed":
        if not isinstance(value, list):
            raise _unexpected(response, "a list was expected in data")
        return [obj(response, v) for v in value], None
    body = obj(response, value)
    found = body.get("value")
    if not isinstance(found, list):
        raise _unexpected(response, 'a {"value": [...]} list was expected')
    link = body.get("nextLink")
    return [obj(response, v) for v in found], link if isinstance(link, str) and link else None


def unquote_etag(value: str | None) -> str | None:
    """The opaque tag without its quotes (weak tags keep their ``W/`` form whole)."""
    if value is None:
        return None
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def quote_etag(value: str) -> str:
    value = value.strip()
    if value == "*" or value.startswith(('"', "W/")):
        return value
    return f'"{value}"'


def _s(data: Json, *keys: str) -> str | None:
    for key in keys:
        value = data.get(key)
        if isinstance(value, str):
            return value
    return None


def _need(response: httpx.Response, data: Json, *keys: str) -> str:
    value = _s(data, *keys)
    if value is None:
        raise _unexpected(response, f"the field {keys[0]!r} is missing")
    return value


def _sub(data: Json, key: str) -> Json:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _bool(data: Json, key: str) -> bool:
    return data.get(key) is True


def parse_time(value: Any) -> _dt.datetime | None:
    """RFC 3339 from the seed, or .NET's seven fractional digits from Azure (trimmed to six)."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    if "." in text:
        head, _, rest = text.partition(".")
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = head + "." + rest[:min(digits, 6)].ljust(6, "0") + rest[digits:]
    try:
        parsed = _dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=_dt.UTC)


def _path_parts(resource_id: str) -> dict[str, str]:
    """``/subscriptions/x/resourceGroups/y/...`` → {"subscriptions": x, "resourcegroups": y, ...}."""
    parts = [p for p in resource_id.split("/") if p]
    return {parts[i].lower(): parts[i + 1] for i in range(0, len(parts) - 1, 2)}


def service(response: httpx.Response, data: Json, style: Style, ref: ServiceRef | None = None) -> Service:
    if style == "seed":
        capacity = data.get("sku_capacity")
        tags = data.get("tags")
        return Service(
            id=_need(response, data, "id"),
            name=_need(response, data, "name"),
            subscription_id=_need(response, data, "subscription_id"),
            resource_group=_need(response, data, "resource_group"),
            location=_s(data, "location") or "",
            sku_name=_s(data, "sku_name") or "",
            sku_capacity=capacity if isinstance(capacity, int) else 0,
            publisher_email=_s(data, "publisher_email") or "",
            publisher_name=_s(data, "publisher_name") or "",
            tags=dict(tags) if isinstance(tags, dict) else {},
            etag=_s(data, "etag"),
            provisioning_state=_s(data, "provisioning_state"),
            created_at=parse_time(data.get("created_at")),
        )
    resource_id = _need(response, data, "id")
    where = _path_parts(resource_id)
    props, sku = _sub(data, "properties"), _sub(data, "sku")
    capacity = sku.get("capacity")
    tags = data.get("tags")
    return Service(
        id=resource_id,
        name=_need(response, data, "name"),
        subscription_id=where.get("subscriptions") or (ref.subscription_id if ref else ""),
        resource_group=where.get("resourcegroups") or (ref.resource_group if ref else ""),
        location=_s(data, "location") or "",
        sku_name=_s(sku, "name") or "",
        sku_capacity=capacity if isinstance(capacity, int) else 0,
        publisher_email=_s(props, "publisherEmail") or "",
        publisher_name=_s(props, "publisherName") or "",
        tags=dict(tags) if isinstance(tags, dict) else {},
        etag=_s(data, "etag"),
        provisioning_state=_s(props, "provisioningState"),
        created_at=parse_time(props.get("createdAtUtc")),
    )


def access(response: httpx.Response, data: Json, style: Style, etag_header: str | None = None) -> AccessConfiguration:
    """A configuration; the ``ETag`` header, when the answer has one, wins over a body ``etag``."""
    if style == "seed":
        return AccessConfiguration(
            name=_need(response, data, "name"),
            enabled=_bool(data, "enabled"),
            principal_id=_s(data, "principal_id"),
            etag=unquote_etag(etag_header) or _s(data, "etag"),
            id=_s(data, "id"),
            primary_key_version_id=_s(data, "primary_key_version_id"),
            secondary_key_version_id=_s(data, "secondary_key_version_id"),
        )
    props = _sub(data, "properties")
    return AccessConfiguration(
        name=_need(response, data, "name"),
        enabled=_bool(props, "enabled"),
        principal_id=_s(props, "principalId"),
        etag=unquote_etag(etag_header) or _s(data, "etag"),
        id=_s(data, "id"),
    )


def secrets(response: httpx.Response, data: Json, style: Style, name: str) -> Secrets:
    etag = unquote_etag(response.headers.get("etag"))
    if style == "seed":
        return Secrets(
            name=_s(data, "name") or name,
            enabled=_bool(data, "enabled"),
            primary_key=_need(response, data, "primary_key"),
            secondary_key=_need(response, data, "secondary_key"),
            principal_id=_s(data, "principal_id"),
            etag=etag or _s(data, "etag"),
            primary_key_version_id=_s(data, "primary_key_version_id"),
            secondary_key_version_id=_s(data, "secondary_key_version_id"),
        )
    # AccessInformationSecretsContract is flat and names neither the configuration nor its etag
    # in the body; the name is the one asked for.
    return Secrets(
        name=name,
        enabled=_bool(data, "enabled"),
        primary_key=_need(response, data, "primaryKey"),
        secondary_key=_need(response, data, "secondaryKey"),
        principal_id=_s(data, "principalId"),
        etag=etag,
    )


def key_version(response: httpx.Response, body: Any, style: Style, slot: KeySlot, access_name: str) -> KeyVersion:
    if style == "azure" or body is None:
        return KeyVersion(slot=slot, access_name=access_name)
    data = obj(response, payload(response, body, style))
    reported = _s(data, "key")
    return KeyVersion(
        slot="secondary" if reported == "secondary" else "primary" if reported == "primary" else slot,
        access_name=_s(data, "access_name") or access_name,
        id=_s(data, "id"),
        created_at=parse_time(data.get("created_at")),
        previous_id=_s(data, "previous_id"),
        etag=_s(data, "etag"),
    )


_AUDIT_FIELDS = ("principal", "role", "scope", "operation", "target", "outcome", "request_id", "client",
                 "old_version_id", "new_version_id", "id", "detail")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def audit_event(response: httpx.Response, data: Json, style: Style) -> AuditEvent:
    """Seed: flat snake_case with ``created_at``. Azure style: camelCase with ``at`` (an extension
    of this server's, so both spellings of each field are accepted in either style)."""
    values = {name: _s(data, name, _camel(name)) for name in _AUDIT_FIELDS}
    status = data.get("status")
    when = next((data[k] for k in ("time", "created_at", "at", "createdAt") if k in data), None)
    count = data.get("count")
    return AuditEvent(time=parse_time(when), status=status if isinstance(status, int) else None,
                      count=count if isinstance(count, int) and count > 0 else 1, **values)


def rfc3339(value: _dt.datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("audit filter times must be timezone-aware")
    return value.astimezone(_dt.UTC).isoformat().replace("+00:00", "Z")


def key_usage(response: httpx.Response, data: Json, style: Style, name: str) -> KeyUsage:
    """Our extension (``keyUsage``): flat snake_case in the seed style, a proxy resource with
    camelCase ``properties`` in the Azure style."""
    seed = style == "seed"
    body = data if seed else _sub(data, "properties")
    names = (("version_id", "created_at", "last_used_at", "use_count", "unused_for", "expires_at") if seed else
             ("keyVersionId", "createdAt", "lastUsedAt", "useCount", "unusedFor", "expiresAt"))
    found = {}
    for item in body.get("keys") or []:
        if isinstance(item, dict) and item.get("slot") in ("primary", "secondary"):
            count = item.get(names[3])
            found[item["slot"]] = KeyUse(
                slot=item["slot"], version_id=_s(item, names[0]), created_at=parse_time(item.get(names[1])),
                last_used_at=parse_time(item.get(names[2])), use_count=count if isinstance(count, int) else 0,
                unused_for=_s(item, names[4]), expires_at=parse_time(item.get(names[5])))
    if set(found) != {"primary", "secondary"}:
        raise _unexpected(response, "a key usage answer without both keys")
    interval = body.get("flush_interval_seconds" if seed else "flushIntervalSeconds")
    return KeyUsage(name=_s(data, "access_name") or name, primary=found["primary"], secondary=found["secondary"],
                    as_of=parse_time(body.get("as_of" if seed else "asOf")),
                    flush_interval_seconds=float(interval) if isinstance(interval, int | float) else None)
