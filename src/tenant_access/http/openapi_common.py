"""What both OpenAPI documents (seed and Azure) say alike, taken from the code that enforces it.

- the path parameters' patterns are the ones :mod:`tenant_access.domain.rules` matches, so a value
  the document allows is accepted and one it forbids is refused (schemathesis checks both ways);
- the ``api-version`` values each operation accepts (:mod:`~tenant_access.domain.api_versions`),
  including well-formed versions newer than every known one;
- the credentials (bearer tokens and shared access signatures), the answers every protected route
  can give (401, 403, 429, 503) and the routes that need no credential;
- the ``Idempotency-Key`` header of the regenerate operations;
- the OAuth routes (token endpoint, OpenID configuration), whose errors use OAuth's shape in both
  formats.

:func:`finish` applies all of it to a document whose paths were built from the route table.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable, Sequence
from typing import Any

from tenant_access.domain import api_versions, idempotency, rules
from tenant_access.domain import events as domain_events
from tenant_access.http.identity import TENANT_PATTERN
from tenant_access.http.routing import Route

SECURITY_SCHEMES: dict[str, Any] = {
    "bearer": {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": "A token from `tenant-access token`, the token endpoint, or a configured issuer.",
    },
    "sharedAccessSignature": {
        "type": "apiKey", "in": "header", "name": "Authorization",
        "description": "`SharedAccessSignature uid=...&ex=...&sn=...`, signed with a key of the addressed "
                       "service's `access` configuration; valid for that service's routes only.",
    },
}
SECURITY: list[dict[str, list[str]]] = [{"bearer": []}, {"sharedAccessSignature": []}]

#: Path segments that are literal in the route table match in any letter case; so do access names.
_SUFFIXES = ("preview", "alpha", "beta", "rc", "privatepreview")


def case_insensitive(words: Sequence[str]) -> str:
    """A pattern for ``words`` in any letter case (JSON Schema patterns have no ``i`` flag)."""
    def one(word: str) -> str:
        return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in word)

    return "^(?:" + "|".join(one(w) for w in words) + ")$"


def _greater(digits: str) -> list[str]:
    """Patterns for the strings of ``len(digits)`` ASCII digits greater than ``digits``."""
    out = []
    for i, d in enumerate(digits):
        if d != "9":
            rest = "[0-9]" * (len(digits) - i - 1)
            out.append(f"{digits[:i]}[{int(d) + 1}-9]{rest}")
    return out


_DAYS = {1: 31, 2: 28, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31}


def _days(month: int, after: int = 0) -> str:
    return "(?:" + "|".join(f"{d:02d}" for d in range(after + 1, _DAYS[month] + 1)) + ")"


def newer_versions_pattern(newest: _dt.date) -> str:
    """Well-formed api-versions dated after ``newest``: served with the newest behaviour.

    February 29th is left out (the server accepts it in leap years): a document may promise less
    than is served, never more.
    """
    any_day = "(?:" + "|".join(f"{m:02d}-{_days(m)}" for m in _DAYS) + ")"
    dates = [f"(?:{'|'.join(_greater(f'{newest.year:04d}'))})-{any_day}"]
    later = [f"{m:02d}-{_days(m)}" for m in range(newest.month + 1, 13)]
    if newest.day < _DAYS[newest.month]:
        later.append(f"{newest.month:02d}-{_days(newest.month, newest.day)}")
    if later:
        dates.append(f"{newest.year:04d}-(?:{'|'.join(later)})")
    return f"^(?:{'|'.join(dates)})(?:-(?:{'|'.join(_SUFFIXES)}))?$"


def api_version_parameter(operation: str) -> dict[str, Any]:
    newest = max(d for d in (api_versions._date_of(v) for v in api_versions.KNOWN) if d is not None)
    return {
        "name": "api-version", "in": "query", "required": True,
        "description": "Any version the specification defines for this operation, or a well-formed newer one "
                       "(served with the newest behaviour; the answer's x-served-api-version says which).",
        "schema": {"type": "string", "anyOf": [
            {"enum": api_versions.supported_for(operation)},
            {"pattern": newer_versions_pattern(newest)},
        ]},
    }


PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    "subscriptionId": {"name": "subscriptionId", "in": "path", "required": True,
                       "schema": {"type": "string", "pattern": rules.GUID_PATTERN}},
    "resourceGroupName": {"name": "resourceGroupName", "in": "path", "required": True,
                          "schema": {"type": "string", "minLength": 1, "maxLength": 90,
                                     "pattern": rules.RESOURCE_GROUP_PATTERN}},
    "serviceName": {"name": "serviceName", "in": "path", "required": True,
                    "schema": {"type": "string", "minLength": 1, "maxLength": 50,
                               "pattern": rules.SERVICE_NAME_PATTERN}},
    "accessName": {"name": "accessName", "in": "path", "required": True,
                   "description": "`access` or `gitAccess`, in any letter case.",
                   "schema": {"type": "string", "pattern": case_insensitive(["access", "gitAccess"]),
                              "examples": ["access", "gitAccess"]}},
    "eventSubscriptionName": {"name": "eventSubscriptionName", "in": "path", "required": True,
                              "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9-]{1,62}[A-Za-z0-9]$"}},
}
PAGING_PARAMETERS: dict[str, dict[str, Any]] = {
    "$top": {"name": "$top", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 1, "maximum": 999_999_999}},
    "$skip": {"name": "$skip", "in": "query", "required": False,
              "schema": {"type": "integer", "minimum": 0, "maximum": 999_999_999}},
}
IDEMPOTENCY_PARAMETER: dict[str, Any] = {
    "name": idempotency.HEADER, "in": "header", "required": False,
    "description": "A key of the caller's choosing: a retry with the same key within 24 hours answers the "
                   "first request's outcome (with `Idempotent-Replayed: true`) and rotates nothing. The same "
                   "key for another operation or configuration answers 409.",
    "schema": {"type": "string", "pattern": idempotency.PATTERN},
}
#: Where an ``If-Match`` value is required, any value is a value: `*`, tags, lists of tags.
IF_MATCH_PARAMETER: dict[str, Any] = {
    "name": "If-Match", "in": "header", "required": True,
    "description": "The ETag from a GET, or * to match any.", "schema": {"type": "string", "pattern": r"\S"},
}
REPLAYED_HEADER: dict[str, Any] = {
    "required": False,
    "description": "`true` when the answer is the stored outcome of an earlier request with the same "
                   "Idempotency-Key (nothing was rotated)",
    "schema": {"type": "string", "enum": ["true"]},
}

#: Text fields that must not be blank (the rules strip whitespace before checking).
NOT_BLANK = r"\S"
SKU_PATTERN = case_insensitive(rules.SKU_NAMES)

SERVICE_REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["location", "sku", "properties"],
    "properties": {
        "location": {"type": "string", "minLength": 1, "maxLength": 100, "pattern": NOT_BLANK},
        "sku": {
            "type": "object", "required": ["name", "capacity"],
            "properties": {"name": {"type": "string", "maxLength": 100, "pattern": SKU_PATTERN},
                           "capacity": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}},
        },
        "properties": {
            "type": "object", "required": ["publisherEmail", "publisherName"],
            "properties": {
                "publisherEmail": {"type": "string", "minLength": 1, "maxLength": 100, "pattern": NOT_BLANK},
                "publisherName": {"type": "string", "minLength": 1, "maxLength": 100, "pattern": NOT_BLANK},
            },
        },
        "tags": {"type": ["object", "null"], "maxProperties": 50, "propertyNames": {"maxLength": 512},
                 "additionalProperties": {"type": "string", "maxLength": 256}},
    },
}
ACCESS_CREATE_REQUEST: dict[str, Any] = {
    "type": "object",
    "properties": {"properties": {
        "type": ["object", "null"],
        "properties": {
            "principalId": {"type": ["string", "null"], "pattern": rules.PRINCIPAL_ID_PATTERN},
            "enabled": {"type": ["boolean", "null"]},
            "primaryKey": {"type": ["string", "null"], "pattern": rules.SUPPLIED_KEY_PATTERN},
            "secondaryKey": {"type": ["string", "null"], "pattern": rules.SUPPLIED_KEY_PATTERN},
        },
    }},
}
ACCESS_UPDATE_REQUEST: dict[str, Any] = {
    "type": "object",
    "properties": {"properties": {
        "type": ["object", "null"],
        "description": "Only `enabled` may change; `principalId` and the keys are refused (use PUT).",
        "properties": {"enabled": {"type": ["boolean", "null"]},
                       "principalId": False, "primaryKey": False, "secondaryKey": False},
    }},
}
_EVENT_TYPES = {"type": "array", "items": {"type": "string", "enum": list(domain_events.TYPES)},
                "description": "Only these types; empty or left out: all"}
#: An event subscription (our extension): ``properties`` as Azure resources have them, or the same
#: fields at the top level. ``destination`` may also be Event Grid's {endpointType, properties: {endpointUrl}}.
EVENT_SUBSCRIPTION_REQUEST: dict[str, Any] = {"type": "object", "additionalProperties": True, "properties": {
    "properties": {"type": "object", "additionalProperties": True, "properties": {
        "destination": {"type": ["string", "object"], "description": "An absolute http(s) URL"},
        "eventTypes": _EVENT_TYPES,
        "eventDeliverySchema": {"type": "string", "enum": list(domain_events.DELIVERY_SCHEMAS)},
        "secret": {"type": "string", "minLength": 24, "maxLength": 256,
                   "description": "Signs deliveries (Standard Webhooks); whsec_<base64> or any string"},
    }},
}}
REQUEST_BODIES = {"ServiceCreateOrUpdate": SERVICE_REQUEST, "AccessCreate": ACCESS_CREATE_REQUEST,
                  "AccessUpdate": ACCESS_UPDATE_REQUEST, "EventSubscriptionCreate": EVENT_SUBSCRIPTION_REQUEST}

# -- the OAuth routes ------------------------------------------------------------------------------

_OAUTH_ERROR = {"application/json": {"schema": {
    "type": "object", "required": ["error", "error_description"], "additionalProperties": False,
    "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
}}}
_TENANT = {"name": "tenant", "in": "path", "required": True,
           "description": "A tenant id or name (anything: this server is the only tenant).",
           "schema": {"type": "string", "pattern": TENANT_PATTERN}}
_OPENID: dict[str, Any] = {
    "summary": "OpenID configuration (what azure-identity reads first)",
    "parameters": [_TENANT],
    "responses": {
        "200": {"description": "The configuration", "content": {"application/json": {"schema": {
            "type": "object",
            "required": ["issuer", "authorization_endpoint", "token_endpoint", "jwks_uri",
                         "response_types_supported", "subject_types_supported",
                         "id_token_signing_alg_values_supported", "grant_types_supported"],
            "properties": {"issuer": {"type": "string"}, "authorization_endpoint": {"type": "string"},
                           "token_endpoint": {"type": "string"}, "jwks_uri": {"type": "string"},
                           "response_types_supported": {"type": "array", "items": {"type": "string"}},
                           "subject_types_supported": {"type": "array", "items": {"type": "string"}},
                           "id_token_signing_alg_values_supported": {"type": "array", "items": {"type": "string"}},
                           "grant_types_supported": {"type": "array", "items": {"type": "string"}}},
        }}}},
        "400": {"description": "invalid_tenant (OAuth error shape)", "content": _OAUTH_ERROR},
    },
}
_TOKEN: dict[str, Any] = {
    "summary": "OAuth 2.0 client-credentials token endpoint (errors in OAuth's shape, in both formats)",
    "parameters": [{**_TENANT, "description": "Any tenant: it is recorded, not checked.", "schema": {
        "type": "string", "minLength": 1}}],
    "requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
        "type": "object", "required": ["grant_type", "client_id", "client_secret"],
        "properties": {"grant_type": {"type": "string", "enum": ["client_credentials"]},
                       "client_id": {"type": "string"}, "client_secret": {"type": "string"},
                       "scope": {"type": "string"}},
    }}}},
    "responses": {
        "200": {"description": "A bearer token", "content": {"application/json": {"schema": {
            "type": "object", "required": ["token_type", "expires_in", "access_token"],
            "properties": {"token_type": {"const": "Bearer"}, "expires_in": {"type": "integer"},
                           "ext_expires_in": {"type": "integer"}, "access_token": {"type": "string"}},
        }}}},
        "400": {"description": "invalid_request, unsupported_grant_type, invalid_scope (a scope naming an "
                               "audience this server does not accept)", "content": _OAUTH_ERROR},
        "401": {"description": "invalid_client", "content": _OAUTH_ERROR},
        "429": {"description": "temporarily_unavailable: too many failed sign-ins",
                "headers": {"Retry-After": {"required": True, "schema": {"type": "string"}}},
                "content": _OAUTH_ERROR},
    },
}
_KEYS: dict[str, Any] = {
    "summary": "The server's public token signing keys (JWKS)",
    "parameters": [_TENANT],
    "responses": {
        "200": {"description": "A JWKS: empty, since the server's tokens are HS256 under a secret only it holds",
                "content": {"application/json": {"schema": {
                    "type": "object", "required": ["keys"],
                    "properties": {"keys": {"type": "array", "items": {"type": "object"}}}}}}},
        "400": {"description": "invalid_tenant (OAuth error shape)", "content": _OAUTH_ERROR},
    },
}
OAUTH_OPERATIONS: dict[str, dict[str, Any]] = {
    "identity.openid_configuration": _OPENID,
    "identity.keys": _KEYS,
    "identity.openid_configuration_adfs": _OPENID,
    "identity.token": _TOKEN,
}


def _retry_after(description: str, content: dict[str, Any] | None) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description,
                              "headers": {"Retry-After": {"required": True, "schema": {"type": "string"}}}}
    if content is not None:
        answer["content"] = content
    return answer


def finish(doc: dict[str, Any], routes: Sequence[Route], error_content: Callable[[Route], dict[str, Any] | None],
           ) -> dict[str, Any]:
    """Apply what both documents share to ``doc`` (built from ``routes``); answers ``doc``.

    ``error_content(route)`` is the ``content`` of an error answer of that route in this format
    (None where there is no body: HEAD).
    """
    doc.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    doc["security"] = SECURITY
    for route in routes:
        op = doc["paths"][route.path][route.method.lower()]
        if route.operation in OAUTH_OPERATIONS:
            op.update({k: v for k, v in OAUTH_OPERATIONS[route.operation].items() if k != "summary"})
        error = error_content(route)
        if route.public:
            op["security"] = []
        declared = {p.get("name") for p in op.get("parameters", [])} | {
            p.get("$ref", "").rsplit("/", 1)[-1] for p in op.get("parameters", [])}
        for name in (part[1:-1] for part in route.path.split("/") if part.startswith("{")):
            if name not in declared:  # a route of another module with a free-form segment
                op.setdefault("parameters", []).append(
                    {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}})
                op.setdefault("responses", {}).setdefault("404", {
                    "description": "Nothing of that name", **({"content": error} if error is not None else {})})
        responses = op.setdefault("responses", {})

        def answer(description: str, error: dict[str, Any] | None = error) -> dict[str, Any]:
            return {"description": description, **({"content": error} if error is not None else {})}

        if route.versioned:
            params = [p for p in op.get("parameters", []) if not _is_api_version(p)]
            for i, param in enumerate(params):
                name = param.get("$ref", "").rsplit("/", 1)[-1]
                if name in PATH_PARAMETERS:
                    params[i] = PATH_PARAMETERS[name]
                elif name in PAGING_PARAMETERS:
                    params[i] = PAGING_PARAMETERS[name]
                elif name == "If-Match":
                    params[i] = IF_MATCH_PARAMETER
            params.append(api_version_parameter(route.operation))
            if "regenerate" in route.operation:
                params.append(IDEMPOTENCY_PARAMETER)
                responses["409"] = answer("CONFLICT: the Idempotency-Key was used for another request")
                for status, ok in responses.items():
                    if status.startswith("2"):
                        ok.setdefault("headers", {})[idempotency.REPLAYED_HEADER] = REPLAYED_HEADER
            if route.method in ("POST", "PUT", "PATCH"):
                responses.setdefault("413", answer("PAYLOAD_TOO_LARGE"))
                responses.setdefault("415", answer("UNSUPPORTED_MEDIA_TYPE: a body that is not JSON"))
            op["parameters"] = params
            for status, text in (("400", "VALIDATION_ERROR"), ("404", "NOT_FOUND")):
                responses.setdefault(status, answer(text))
        if not route.public:
            responses["401"] = answer("UNAUTHORIZED: no credential, or one that does not verify")
            responses["401"]["headers"] = {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}}
            responses["403"] = answer("FORBIDDEN: the credential's role or scope does not allow this")
            responses["429"] = _retry_after("TOO_MANY_REQUESTS: a rate limit, or too many failed sign-ins",
                                            error)
        if route.operation not in OAUTH_OPERATIONS:
            responses["503"] = _retry_after("SERVICE_UNAVAILABLE: the store is unavailable; retry after the "
                                            "given seconds", error)
    schemas = doc["components"].setdefault("schemas", {})
    schemas.update(REQUEST_BODIES)
    doc["components"].pop("parameters", None)
    return doc


def _is_api_version(param: dict[str, Any]) -> bool:
    return param.get("name") == "api-version" or param.get("$ref", "").endswith("/api-version")


#: ``?ifUnusedFor=`` on the regenerate operations (issue 14): opt-in, so their contract is unchanged without it.
#: Every string this pattern matches is a window the server accepts (at most about 40 years).
WINDOW_PATTERN = r"^P(?=\d|T\d)(\d{1,4}D)?(T(?=\d)(\d{1,5}H)?(\d{1,6}M)?(\d{1,6}S)?)?$"
IF_UNUSED_FOR: dict[str, Any] = {
    "name": "ifUnusedFor", "in": "query", "required": False,
    "schema": {"type": "string", "pattern": WINDOW_PATTERN, "examples": ["PT15M"]},
    "description": "Our extension: refuse (409, naming the last use) to regenerate a key used within this ISO 8601 "
                   "duration. The If-Unused-For header does the same.",
}

_DURATION_PATTERN = r"^P(?=\d|T\d)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$"
_DURATION = {"type": "string", "pattern": _DURATION_PATTERN,
             "description": "ISO 8601 duration, e.g. P90D, PT15M (a year is 365 days, a month 30)"}
_POLICY_ACTION = {"type": "object", "properties": {
    "trigger": {"type": "object", "properties": {"timeAfterCreate": _DURATION, "timeBeforeExpiry": _DURATION},
                "additionalProperties": False},
    "action": {"type": "object", "properties": {"type": {"type": "string", "enum": ["Rotate", "Notify"]}},
               "required": ["type"], "additionalProperties": False}},
    "required": ["trigger", "action"], "additionalProperties": False}
_NULLABLE = {"type": ["string", "null"]}
#: Key Vault's key rotation policy, plus gracePeriod (issue 14): the request body, and the answer with state.
ROTATION_POLICY: dict[str, Any] = {"type": "object", "properties": {
    "lifetimeActions": {"type": "array", "items": _POLICY_ACTION, "maxItems": 2},
    "attributes": {"type": "object", "properties": {"expiryTime": {**_DURATION, "type": ["string", "null"]}}},
    "gracePeriod": _DURATION,
}, "additionalProperties": True}
ROTATION_POLICY_STATE: dict[str, Any] = {"type": "object", "properties": {
    "id": {"type": "string"},
    "lifetimeActions": {"type": "array", "items": _POLICY_ACTION},
    "attributes": {"type": "object", "properties": {"expiryTime": _NULLABLE, "created": {"type": "string"},
                                                    "updated": {"type": "string"}},
                   "required": ["expiryTime", "created", "updated"], "additionalProperties": False},
    "gracePeriod": _DURATION,
    "status": {"type": "object", "properties": {
        "nextRotation": _NULLABLE, "nextNotify": _NULLABLE, "overdue": {"type": "boolean"},
        "lastRunAt": _NULLABLE, "lastOutcome": _NULLABLE, "blockedSince": _NULLABLE},
        "required": ["nextRotation", "nextNotify", "overdue", "lastRunAt", "lastOutcome", "blockedSince"],
        "additionalProperties": False},
}, "required": ["id", "lifetimeActions", "attributes", "gracePeriod", "status"], "additionalProperties": False}
