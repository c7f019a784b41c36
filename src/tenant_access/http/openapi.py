"""The OpenAPI 3.1 document of the seed wire format, generated from the route table.

Generated rather than hand-written so it cannot drift from what is served: every route in the
table appears, and nothing else does. Tests validate real responses against these schemas.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tenant_access import __version__
from tenant_access.domain import api_versions, rules
from tenant_access.http.routing import Route

TS = {"type": "string", "format": "date-time", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$"}
STR = {"type": "string"}

ERROR_CODES = [
    "VALIDATION_ERROR", "UNAUTHORIZED", "FORBIDDEN", "NOT_FOUND", "METHOD_NOT_ALLOWED", "CONFLICT",
    "PRECONDITION_FAILED", "PAYLOAD_TOO_LARGE", "URI_TOO_LONG", "UNSUPPORTED_MEDIA_TYPE", "HEADERS_TOO_LARGE",
    "REQUEST_TIMEOUT", "TOO_MANY_REQUESTS",
    "INTERNAL_ERROR", "SERVICE_UNAVAILABLE",
]


def _obj(props: dict[str, Any], required: Sequence[str] | None = None, extra: bool = False) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(required if required is not None else props),
            "additionalProperties": extra}


SCHEMAS: dict[str, Any] = {
    "Service": _obj({
        "id": STR, "name": STR, "subscription_id": STR, "resource_group": STR, "location": STR,
        "sku_name": {"type": "string", "enum": list(rules.SKU_NAMES)}, "sku_capacity": {"type": "integer"},
        "publisher_email": STR, "publisher_name": STR,
        "tags": {"type": "object", "additionalProperties": STR},
        "provisioning_state": {"type": "string", "enum": ["Succeeded", "Deleted"]},
        "etag": STR, "created_at": TS, "updated_at": TS,
    }),
    "AccessConfiguration": _obj({
        "id": STR, "name": {"type": "string", "enum": ["access", "gitAccess"]}, "service_name": STR,
        "resource_group": STR, "subscription_id": STR, "principal_id": STR, "enabled": {"type": "boolean"},
        "etag": STR, "primary_key_version_id": STR, "primary_key_created_at": TS,
        "secondary_key_version_id": STR, "secondary_key_created_at": TS, "created_at": TS, "updated_at": TS,
    }),
    "KeyVersion": _obj({
        "id": {"type": "string", "description": "Opaque id of the new key version"},
        "created_at": TS, "key": {"type": "string", "enum": ["primary", "secondary"]},
        "access_name": {"type": "string", "enum": ["access", "gitAccess"]}, "service_name": STR,
        "resource_group": STR, "subscription_id": STR, "configuration_id": STR, "previous_id": STR, "etag": STR,
    }),
    "AuditEvent": _obj({
        "id": STR, "created_at": TS, "principal": STR, "role": STR, "scope": STR, "operation": STR, "target": STR,
        "outcome": {"type": "string", "enum": ["success", "denied", "failed"]}, "status": {"type": "integer"},
        "request_id": STR, "client": STR, "old_version_id": {"type": ["string", "null"]},
        "new_version_id": {"type": ["string", "null"]}, "detail": {"type": ["string", "null"]},
        "count": {"type": "integer", "minimum": 1,
                  "description": "Requests this record stands for: more than 1 for a summary of refusals"},
    }),
    "Error": _obj({
        "success": {"const": False},
        "error": _obj({
            "code": {"type": "string", "enum": ERROR_CODES}, "message": STR,
            "details": {"type": "array", "items": _obj({"field": STR, "message": STR})},
            "request_id": STR,
        }, required=["code", "message", "request_id"]),
    }),
    "ServiceCreateOrUpdate": _obj({
        "location": {"type": "string", "minLength": 1, "maxLength": 100},
        "sku": _obj({"name": {"type": "string", "enum": list(rules.SKU_NAMES)},
                     "capacity": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}}, extra=True),
        "properties": _obj({"publisherEmail": {"type": "string", "minLength": 1, "maxLength": 100},
                            "publisherName": {"type": "string", "minLength": 1, "maxLength": 100}}, extra=True),
        "tags": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 256}, "maxProperties": 50},
    }, required=["location", "sku", "properties"], extra=True),
    "AccessCreate": _obj({
        "properties": _obj({
            "principalId": {"type": "string", "minLength": 1, "maxLength": rules.MAX_PRINCIPAL_ID_LENGTH},
            "enabled": {"type": "boolean"},
            "primaryKey": {"type": "string", "minLength": rules.MIN_SUPPLIED_KEY_LENGTH,
                           "maxLength": rules.MAX_SUPPLIED_KEY_LENGTH},
            "secondaryKey": {"type": "string", "minLength": rules.MIN_SUPPLIED_KEY_LENGTH,
                             "maxLength": rules.MAX_SUPPLIED_KEY_LENGTH},
        }, required=[], extra=True),
    }, required=[], extra=True),
    "AccessUpdate": _obj({"properties": _obj({"enabled": {"type": "boolean"}}, required=[])}, required=[], extra=True),
    "EventSubscription": _obj({
        "id": STR, "name": STR, "destination": STR, "event_types": {"type": "array", "items": STR},
        "schema": {"type": "string", "enum": ["CloudEventSchemaV1_0", "EventGridSchema"]},
        "signed": {"type": "boolean", "description": "Whether deliveries are signed (the secret is never shown)"},
        "metrics_label": {"type": "string", "pattern": "^[0-9a-f]{12}$",
                          "description": "The value of the `subscription` label of its /metrics series"},
        "created_at": TS,
    }),
}

_NULL = {"type": "null"}
SCHEMAS["EventDeliveries"] = _obj({
    "name": STR, "metrics_label": {"type": "string", "pattern": "^[0-9a-f]{12}$"},
    "delivered": {"anyOf": [{"type": "integer", "minimum": 0}, _NULL],
                  "description": "Delivered by this server process since it started (null: it does not deliver)"},
    "pending": {"type": "integer", "minimum": 0, "description": "Deliveries waiting, retrying ones included"},
    "retrying": {"type": "integer", "minimum": 0, "description": "Pending deliveries that failed at least once"},
    "dead_lettered": {"type": "integer", "minimum": 0},
    "oldest_undelivered_at": {"anyOf": [TS, _NULL]},
    "oldest_undelivered_age_seconds": {"anyOf": [{"type": "number", "minimum": 0}, _NULL]},
    "retries": {"type": "array", "description": "The first 50, soonest next attempt first", "items": _obj({
        "event_id": STR, "event_type": STR, "attempts": {"type": "integer", "minimum": 1},
        "first_attempt_at": TS, "next_attempt_at": TS, "last_error": STR})},
    "dead_letters": {"type": "array", "description": "The first 50, oldest first", "items": _obj({
        "event_id": STR, "event_type": STR, "attempts": {"type": "integer", "minimum": 0},
        "first_attempt_at": TS, "reason": STR})},
    "redeliver_command": {"anyOf": [STR, _NULL],
                          "description": "How to queue dead letters again (there is no API for it); null: none"},
    "as_of": TS,
})
SCHEMAS["Secrets"] = {
    **SCHEMAS["AccessConfiguration"],
    "properties": {**SCHEMAS["AccessConfiguration"]["properties"], "primary_key": STR, "secondary_key": STR,
                   "primary_key_expires_at": TS, "secondary_key_expires_at": TS},
    "required": [*SCHEMAS["AccessConfiguration"]["required"], "primary_key", "secondary_key"],
}

SCHEMAS["KeyUsage"] = _obj({
    "id": STR, "access_name": {"type": "string", "enum": ["access", "gitAccess"]}, "service_name": STR,
    "resource_group": STR, "subscription_id": STR, "as_of": TS,
    "flush_interval_seconds": {"type": "number",
                               "description": "How far behind other replicas' uses the figures may be"},
    "keys": {"type": "array", "minItems": 2, "maxItems": 2, "items": _obj({
        "slot": {"type": "string", "enum": ["primary", "secondary"]}, "version_id": STR, "created_at": TS,
        "last_used_at": {"anyOf": [TS, {"type": "null"}], "description": "To the minute; null: never used"},
        "use_count": {"type": "integer", "minimum": 0},
        "unused_for": {"type": "string", "description": "ISO 8601 duration since the last use (or creation)"},
        "expires_at": {"anyOf": [TS, {"type": "null"}], "description": "null: the key does not expire"},
    })},
})

def _policy_schemas() -> None:
    from tenant_access.http.openapi_common import ROTATION_POLICY, ROTATION_POLICY_STATE

    SCHEMAS["RotationPolicy"] = ROTATION_POLICY
    SCHEMAS["RotationPolicyState"] = ROTATION_POLICY_STATE


_policy_schemas()

PARAMETERS: dict[str, Any] = {
    "subscriptionId": {"name": "subscriptionId", "in": "path", "required": True,
                       "schema": {"type": "string", "format": "uuid"}},
    "resourceGroupName": {"name": "resourceGroupName", "in": "path", "required": True,
                          "schema": {"type": "string", "minLength": 1, "maxLength": 90, "pattern": r"^[-\w._()]+$"}},
    "serviceName": {"name": "serviceName", "in": "path", "required": True,
                    "schema": {"type": "string", "minLength": 1, "maxLength": 50,
                               "pattern": "^[a-zA-Z](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?$"}},
    "accessName": {"name": "accessName", "in": "path", "required": True,
                   "schema": {"type": "string", "enum": ["access", "gitAccess"]}},
    "eventSubscriptionName": {"name": "eventSubscriptionName", "in": "path", "required": True,
                              "schema": {"type": "string", "minLength": 3, "maxLength": 64}},
    "api-version": {"name": "api-version", "in": "query", "required": True,
                    "description": "Any version the specification defines for the operation, or a newer one.",
                    "schema": {"type": "string", "examples": [api_versions.NEWEST_STABLE]}},
    "If-Match": {"name": "If-Match", "in": "header", "required": True,
                 "description": "The ETag from a GET, or * to match any.", "schema": {"type": "string"}},
    "$top": {"name": "$top", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1}},
    "$skip": {"name": "$skip", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 0}},
}

#: operation -> (success status, data schema or None for no body, headers)
SUCCESS: dict[str, tuple[str, dict[str, Any] | None]] = {
    "services.list": ("200", {"type": "array", "items": {"$ref": "#/components/schemas/Service"}}),
    "services.create_or_update": ("200", {"$ref": "#/components/schemas/Service"}),
    "services.get": ("200", {"$ref": "#/components/schemas/Service"}),
    "services.delete": ("200", {"$ref": "#/components/schemas/Service"}),
    "access.list": ("200", {"type": "array", "items": {"$ref": "#/components/schemas/AccessConfiguration"}}),
    "access.get": ("200", {"$ref": "#/components/schemas/AccessConfiguration"}),
    "access.get_entity_tag": ("200", None),
    "access.create": ("200", {"$ref": "#/components/schemas/AccessConfiguration"}),
    "access.update": ("200", {"$ref": "#/components/schemas/AccessConfiguration"}),
    "access.list_secrets": ("200", {"$ref": "#/components/schemas/Secrets"}),
    "access.regenerate_primary_key": ("200", {"$ref": "#/components/schemas/KeyVersion"}),
    "access.regenerate_secondary_key": ("200", {"$ref": "#/components/schemas/KeyVersion"}),
    "access.git_regenerate_primary_key": ("200", {"$ref": "#/components/schemas/KeyVersion"}),
    "access.git_regenerate_secondary_key": ("200", {"$ref": "#/components/schemas/KeyVersion"}),
    "audit.list": ("200", {"type": "array", "items": {"$ref": "#/components/schemas/AuditEvent"}}),
    "access.key_usage": ("200", {"$ref": "#/components/schemas/KeyUsage"}),
    "access.rotation_policy.get": ("200", {"$ref": "#/components/schemas/RotationPolicyState"}),
    "access.rotation_policy.put": ("200", {"$ref": "#/components/schemas/RotationPolicyState"}),
    "access.rotation_policy.delete": ("200", {"type": "object", "properties": {"deleted": {"type": "boolean"}},
                                              "required": ["deleted"], "additionalProperties": False}),
    "events.subscriptions.list": ("200", {"type": "array",
                                          "items": {"$ref": "#/components/schemas/EventSubscription"}}),
    "events.subscriptions.create_or_update": ("200", {"$ref": "#/components/schemas/EventSubscription"}),
    "events.subscriptions.get": ("200", {"$ref": "#/components/schemas/EventSubscription"}),
    "events.subscriptions.delete": ("200", _obj({"name": STR, "deleted": {"const": True}})),
    "events.subscriptions.deliveries": ("200", {"$ref": "#/components/schemas/EventDeliveries"}),
}

_ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_ETAG = {"ETag": {"description": "Entity tag of the access configuration", "schema": {"type": "string"}}}


def _envelope(data: dict[str, Any]) -> dict[str, Any]:
    return _obj({"success": {"const": True}, "data": data})


#: Answers outside the versioned API that are not JSON documents.
NON_JSON = {"meta.metrics": "text/plain", "console.page": "text/html", "console.asset": "*/*"}


def _operation(route: Route) -> dict[str, Any]:
    if not route.versioned:
        media = NON_JSON.get(route.operation)
        content = ({"application/json": {"schema": {"type": "object"}}} if media is None
                   else {media: {"schema": {"type": "string"}}})
        return {
            "operationId": route.operation, "summary": route.summary,
            "responses": {"200": {"description": "OK", "content": content},
                          "503": {"description": "Not ready", **_ERROR}},
        }
    names = [part[1:-1] for part in route.path.split("/") if part.startswith("{")]
    params: list[dict[str, Any]] = [{"$ref": f"#/components/parameters/{n}"} for n in names]
    params.append({"$ref": "#/components/parameters/api-version"})
    if route.method in ("PUT", "PATCH") and route.operation.startswith("access.") and route.body != "RotationPolicy":
        params.append({"$ref": "#/components/parameters/If-Match"})
    if route.operation in ("services.list", "access.list", "audit.list"):
        params += [{"$ref": "#/components/parameters/$top"}, {"$ref": "#/components/parameters/$skip"}]
    if route.operation == "audit.list":
        params += [
            {"name": "operation", "in": "query", "required": False, "schema": STR,
             "description": "Only records of this operation, e.g. access.regenerate_secondary_key"},
            {"name": "kind", "in": "query", "required": False,
             "schema": {"type": "string", "enum": ["changes", "reads", "refusals"]},
             "description": "Only changes (rotations, configuration and service changes), reads (listSecrets) "
                            "or refusals"},
            {"name": "since", "in": "query", "required": False, "schema": {"type": "string", "format": "date-time"}},
            {"name": "until", "in": "query", "required": False, "schema": {"type": "string", "format": "date-time"}},
        ]
    if "regenerate" in route.operation:
        from tenant_access.http.openapi_common import IF_UNUSED_FOR

        params.append(IF_UNUSED_FOR)
    status, data = SUCCESS[route.operation]
    ok: dict[str, Any] = {"description": "Success"}
    if data is not None:
        ok["content"] = {"application/json": {"schema": _envelope(data)}}
    if route.operation.startswith("access.") and route.operation not in ("access.list", "access.key_usage") \
            and "regenerate" not in route.operation and "rotation_policy" not in route.operation:
        ok["headers"] = _ETAG
    responses: dict[str, Any] = {status: ok}
    if route.operation == "services.create_or_update":
        responses["201"] = {"description": "Created", "content": ok["content"]}
    if route.operation == "access.get_entity_tag":
        responses["404"] = {"description": "Not found (no body: HEAD)"}
    else:
        for code, text in (("400", "VALIDATION_ERROR"), ("404", "NOT_FOUND"), ("500", "INTERNAL_ERROR")):
            responses[code] = {"description": text, **_ERROR}
    if route.body is not None:
        responses["413"] = {"description": "PAYLOAD_TOO_LARGE", **_ERROR}
        responses["415"] = {"description": "UNSUPPORTED_MEDIA_TYPE", **_ERROR}
    if route.method in ("PUT", "PATCH") and route.operation.startswith("access.") and route.body != "RotationPolicy":
        responses["412"] = {"description": "PRECONDITION_FAILED", **_ERROR}
    if route.operation == "services.create_or_update":
        responses["409"] = {"description": "CONFLICT (the location of a service cannot change)", **_ERROR}
    if "regenerate" in route.operation:
        responses["409"] = {"description": "CONFLICT (with ifUnusedFor: the key was used within that window)",
                            **_ERROR}
    op: dict[str, Any] = {
        "operationId": route.operation, "summary": route.summary, "parameters": params, "responses": responses,
        "tags": [route.operation.split(".")[0]],
    }
    if route.body is not None:
        op["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{route.body}"}}}}
    return op


def build(routes: Sequence[Route], style: str) -> dict[str, Any]:
    """The document of ``style``'s wire format (the Azure one is built by :mod:`openapi_azure`)."""
    if style == "azure":
        from tenant_access.http import openapi_azure

        return openapi_azure.build(routes)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    doc = {
        "openapi": "3.1.0",
        "info": {
            "title": "tenant-access (seed wire format)",
            "version": __version__,
            "description": "Access configurations of API Management services and their keys. Every success is "
                           "{\"success\": true, \"data\": ...}; every error {\"success\": false, \"error\": ...}.",
        },
        "paths": paths,
        "components": {"schemas": dict(SCHEMAS), "parameters": PARAMETERS},
    }
    from tenant_access.http import openapi_common

    return openapi_common.finish(doc, routes, lambda route: None if route.method == "HEAD" else _ERROR["content"])
