"""The OpenAPI 3.1 document of the Azure wire format (``--api-style azure``), from the route table.

Served at ``/openapi.json`` by a server in Azure mode. The shapes are those :mod:`wire_azure`
writes, which follow the ``Microsoft.ApiManagement`` specification (``apimtenant.json``,
``apimdeployment.json``, the common ``ErrorResponse``): status codes (204 for regenerations, 200 or
204 for a delete), Resource Manager's error envelope, and the request-tracking headers. Like the
seed document it is generated from the routes, so it lists exactly what is served; schemas are
closed (``additionalProperties: false``) so an invented field fails validation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tenant_access import __version__
from tenant_access.domain import api_versions, rules
from tenant_access.http import openapi, openapi_common
from tenant_access.http.routing import Route

STR = {"type": "string"}
BOOL = {"type": "boolean"}
#: .NET's round-trip UTC format, as wire_azure.dotnet_time writes it.
TIME = {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z$"}


def _obj(props: dict[str, Any], required: Sequence[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(props if required is None else required),
            "additionalProperties": False}


_HOSTNAME = _obj({"type": STR, "hostName": STR, "negotiateClientCertificate": BOOL, "defaultSslBinding": BOOL,
                  "certificateSource": STR})
SCHEMAS: dict[str, Any] = {
    "ErrorDetail": _obj({"code": STR, "message": STR, "target": STR}, required=["code", "message"]),
    "ErrorResponse": _obj({"error": _obj({
        "code": STR, "message": STR, "target": STR,
        "details": {"type": "array", "items": {"$ref": "#/components/schemas/ErrorDetail"}},
    }, required=["code", "message"])}),
    "AccessInformationContract": _obj({
        "id": STR, "type": {"const": "Microsoft.ApiManagement/service/tenant"},
        "name": {"type": "string", "enum": ["access", "gitAccess"]},
        "properties": _obj({"principalId": STR, "enabled": BOOL}),
    }),
    "AccessInformationCollection": _obj({
        "value": {"type": "array", "items": {"$ref": "#/components/schemas/AccessInformationContract"}},
        "count": {"type": "integer"}, "nextLink": STR,
    }),
    "AccessInformationSecretsContract": _obj({
        "id": STR, "principalId": STR, "primaryKey": STR, "secondaryKey": STR, "enabled": BOOL,
        # Our extension: present only under a rotation policy with an expiryTime.
        "primaryKeyExpiresAt": TIME, "secondaryKeyExpiresAt": TIME,
    }, required=["id", "principalId", "primaryKey", "secondaryKey", "enabled"]),
    "ApiManagementServiceResource": _obj({
        "id": STR, "name": STR, "type": {"const": "Microsoft.ApiManagement/service"},
        "tags": {"type": "object", "additionalProperties": STR}, "location": STR, "etag": STR,
        "properties": _obj({
            "publisherEmail": STR, "publisherName": STR, "notificationSenderEmail": STR,
            "provisioningState": {"const": "Succeeded"}, "targetProvisioningState": STR, "createdAtUtc": TIME,
            "gatewayUrl": STR, "gatewayRegionalUrl": STR, "portalUrl": STR, "developerPortalUrl": STR,
            "managementApiUrl": STR, "scmUrl": STR,
            "hostnameConfigurations": {"type": "array", "items": _HOSTNAME},
            "customProperties": {"type": "object", "additionalProperties": STR},
            "virtualNetworkType": STR, "disableGateway": BOOL, "publicNetworkAccess": STR,
            "enableClientCertificate": BOOL, "platformVersion": {"type": "string", "enum": ["stv2", "mtv1"]},
        }, required=["publisherEmail", "publisherName", "provisioningState", "createdAtUtc", "gatewayUrl",
                     "hostnameConfigurations", "platformVersion"]),
        "sku": _obj({"name": {"type": "string", "enum": list(rules.SKU_NAMES)}, "capacity": {"type": "integer"}}),
        "systemData": _obj({"createdAt": TIME, "lastModifiedAt": TIME}),
    }),
    "ApiManagementServiceListResult": _obj({
        "value": {"type": "array", "items": {"$ref": "#/components/schemas/ApiManagementServiceResource"}},
        "nextLink": STR,
    }, required=["value"]),
    "AuditEvent": _obj({
        "id": STR, "at": TIME, "principal": STR, "role": STR, "scope": STR, "operation": STR, "target": STR,
        "outcome": {"type": "string", "enum": ["success", "denied", "failed"]}, "status": {"type": "integer"},
        "requestId": STR, "client": STR, "service": {"type": ["string", "null"]},
        "oldVersionId": {"type": ["string", "null"]}, "newVersionId": {"type": ["string", "null"]},
        "detail": {"type": ["string", "null"]},
        "count": {"type": "integer", "minimum": 1},
    }),
    "KeyUsage": _obj({
        "id": STR, "type": {"const": "Microsoft.ApiManagement/service/tenant/keyUsage"}, "name": {"const": "keyUsage"},
        "properties": _obj({
            "asOf": TIME, "flushIntervalSeconds": {"type": "number"},
            "keys": {"type": "array", "minItems": 2, "maxItems": 2, "items": _obj({
                "slot": {"type": "string", "enum": ["primary", "secondary"]}, "keyVersionId": STR, "createdAt": TIME,
                "lastUsedAt": {"anyOf": [TIME, {"type": "null"}]}, "useCount": {"type": "integer", "minimum": 0},
                "unusedFor": STR, "expiresAt": {"anyOf": [TIME, {"type": "null"}]},
            })},
        }),
    }),
    "RotationPolicy": openapi_common.ROTATION_POLICY,
    "RotationPolicyState": openapi_common.ROTATION_POLICY_STATE,
    "AuditEventList": _obj({
        "value": {"type": "array", "items": {"$ref": "#/components/schemas/AuditEvent"}}, "nextLink": STR,
    }, required=["value"]),
    "EventSubscriptionResource": _obj({
        "id": STR, "name": STR, "type": {"const": "Microsoft.ApiManagement/service/eventSubscriptions"},
        "properties": _obj({
            "destination": _obj({"endpointType": {"const": "WebHook"}, "properties": _obj({"endpointUrl": STR})}),
            "eventTypes": {"type": "array", "items": STR},
            "eventDeliverySchema": {"type": "string", "enum": ["CloudEventSchemaV1_0", "EventGridSchema"]},
            "signed": BOOL, "metricsLabel": {"type": "string", "pattern": "^[0-9a-f]{12}$"},
            "createdAt": {"type": "string", "format": "date-time"},
        }),
    }),
    "EventDeliveries": _obj({
        "id": STR, "name": STR, "type": {"const": "Microsoft.ApiManagement/service/eventSubscriptions/deliveries"},
        "properties": _obj({
            "metricsLabel": STR, "delivered": {"type": ["integer", "null"]}, "pending": {"type": "integer"},
            "retrying": {"type": "integer"}, "deadLettered": {"type": "integer"},
            "oldestUndeliveredAt": {"type": ["string", "null"], "format": "date-time"},
            "oldestUndeliveredAgeSeconds": {"type": ["number", "null"]},
            "retries": {"type": "array", "items": _obj({
                "eventId": STR, "eventType": STR, "attempts": {"type": "integer"},
                "firstAttemptAt": {"type": "string", "format": "date-time"},
                "nextAttemptAt": {"type": "string", "format": "date-time"}, "lastError": STR})},
            "deadLetters": {"type": "array", "items": _obj({
                "eventId": STR, "eventType": STR, "attempts": {"type": "integer"},
                "firstAttemptAt": {"type": "string", "format": "date-time"}, "reason": STR})},
            "redeliverCommand": {"type": ["string", "null"]},
            "asOf": {"type": "string", "format": "date-time"},
        }),
    }),
    "EventSubscriptionList": _obj({
        "value": {"type": "array", "items": {"$ref": "#/components/schemas/EventSubscriptionResource"}},
    }),
}

_SUBSCRIPTION = _obj({
    "id": STR, "authorizationSource": STR, "managedByTenants": {"type": "array"}, "subscriptionId": STR,
    "tenantId": STR, "displayName": STR, "state": {"const": "Enabled"},
    "subscriptionPolicies": _obj({"locationPlacementId": STR, "quotaId": STR, "spendingLimit": STR}),
})
_COUNT = _obj({"type": {"const": "Total"}, "value": {"type": "integer"}})
_AUTHENTICATION = _obj({"loginEndpoint": STR, "audiences": {"type": "array", "items": STR}, "tenant": STR,
                        "identityProvider": STR})
_CLOUD_URLS = ("portal", "resourceManager", "graph", "graphAudience", "media", "batch", "gallery", "sqlManagement")
#: Resource Manager's own answers (Azure mode only; subscriptions.json, resources.json, cloud metadata).
ARM_SCHEMAS: dict[str, Any] = {
    "Subscription": _SUBSCRIPTION,
    "SubscriptionListResult": _obj({"value": {"type": "array", "items": {"$ref": "#/components/schemas/Subscription"}},
                                    "count": _COUNT}),
    "TenantListResult": _obj({"value": {"type": "array", "items": _obj({
        "id": STR, "tenantId": STR, "tenantCategory": STR, "displayName": STR, "domains": {"type": "array"},
        "tenantType": STR})}, "count": _COUNT}),
    "ResourceGroup": _obj({"id": STR, "name": STR, "type": {"const": "Microsoft.Resources/resourceGroups"},
                           "location": STR, "properties": _obj({"provisioningState": STR})}),
    "CloudMetadata": {"oneOf": [
        _obj({"name": STR, **dict.fromkeys(_CLOUD_URLS, STR), "authentication": _AUTHENTICATION,
              "suffixes": {"type": "object", "additionalProperties": STR}}),
        _obj({"galleryEndpoint": STR, "graphEndpoint": STR, "portalEndpoint": STR, "authentication": _AUTHENTICATION}),
    ]},
}
#: operation -> (answer schema, whether api-version is required, whether a 404 names a missing thing)
ARM_OPERATIONS: dict[str, tuple[str, bool, bool]] = {
    "metadata.endpoints": ("CloudMetadata", False, False),
    "metadata.endpoints_slash": ("CloudMetadata", False, False),
    "subscriptions.list": ("SubscriptionListResult", True, False),
    "subscriptions.get": ("Subscription", True, True),
    "tenants.list": ("TenantListResult", True, False),
    "resource_groups.get": ("ResourceGroup", True, True),
}

_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
_ETAG = {"ETag": {"description": "Entity tag (quoted)", "required": True, "schema": {"type": "string"}}}
_REQUEST_ID = {"x-ms-request-id": {"description": "This request's id", "required": True, "schema": STR},
               "x-ms-correlation-request-id": {"description": "The caller's correlation id, or the request id",
                                               "required": True, "schema": STR}}


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}


#: operation -> {status: (description, body schema name or None, answer has an ETag)}
SUCCESS: dict[str, dict[str, tuple[str, str | None, bool]]] = {
    "services.list": {"200": ("The services", "ApiManagementServiceListResult", False)},
    "services.list_by_subscription": {"200": ("The services of the subscription that the caller's scope reaches",
                                              "ApiManagementServiceListResult", False)},
    "services.create_or_update": {"200": ("Updated", "ApiManagementServiceResource", True),
                                  "201": ("Created", "ApiManagementServiceResource", True)},
    "services.get": {"200": ("The service", "ApiManagementServiceResource", True)},
    "services.delete": {"200": ("Deleted", None, False), "204": ("There was nothing to delete", None, False)},
    "access.list": {"200": ("Both access configurations", "AccessInformationCollection", False)},
    "access.get": {"200": ("The configuration (never its keys)", "AccessInformationContract", True)},
    "access.get_entity_tag": {"200": ("The entity tag", None, True)},
    "access.create": {"200": ("Replaced", "AccessInformationContract", True)},
    "access.update": {"200": ("Updated", "AccessInformationContract", True),
                      "204": ("Updated (api-versions before 2020-12-01)", None, True)},
    "access.list_secrets": {"200": ("The keys", "AccessInformationSecretsContract", True)},
    "access.regenerate_primary_key": {"204": ("Regenerated", None, False)},
    "access.regenerate_secondary_key": {"204": ("Regenerated", None, False)},
    "access.git_regenerate_primary_key": {"204": ("Regenerated", None, False)},
    "access.git_regenerate_secondary_key": {"204": ("Regenerated", None, False)},
    "audit.list": {"200": ("Audit records (our extension, in Resource Manager's list envelope)", "AuditEventList",
                           False)},
    "access.rotation_policy.get": {"200": ("The policy (Key Vault's shape) and its scheduler state",
                                           "RotationPolicyState", False)},
    "access.rotation_policy.put": {"200": ("The policy as stored, with its scheduler state", "RotationPolicyState",
                                           False)},
    "access.rotation_policy.delete": {"200": ("Deleted", None, False), "204": ("There was no policy", None, False)},
    "access.key_usage": {"200": ("When each key was last used, and how often (our extension)", "KeyUsage", False)},
    "events.subscriptions.list": {"200": ("Event subscriptions (our extension)", "EventSubscriptionList", False)},
    "events.subscriptions.create_or_update": {"200": ("Replaced", "EventSubscriptionResource", False),
                                              "201": ("Created", "EventSubscriptionResource", False)},
    "events.subscriptions.get": {"200": ("The subscription (never its secret)", "EventSubscriptionResource", False)},
    "events.subscriptions.delete": {"200": ("Deleted", None, False), "204": ("There was nothing to delete", None,
                                                                             False)},
    "events.subscriptions.deliveries": {"200": ("What the subscription is owed, and what this server delivered",
                                                "EventDeliveries", False)},
}


def _operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": route.operation, "summary": route.summary,
                          "tags": [route.operation.split(".")[0]]}
    head = route.method == "HEAD"
    if route.operation in ARM_OPERATIONS:
        return _arm_operation(route, op)
    if not route.versioned:
        seed = openapi._operation(route)  # the same documents, health answers and OAuth routes
        op["responses"] = {"200": seed["responses"]["200"]}
        if "parameters" in seed:
            op["parameters"] = seed["parameters"]
        return op
    names = [part[1:-1] for part in route.path.split("/") if part.startswith("{")]
    params: list[dict[str, Any]] = [{"$ref": f"#/components/parameters/{n}"} for n in names]
    if route.method in ("PUT", "PATCH") and route.operation.startswith("access.") and route.body != "RotationPolicy":
        params.append({"$ref": "#/components/parameters/If-Match"})
    if route.operation in ("services.list", "services.list_by_subscription", "access.list", "audit.list"):
        params += [{"$ref": "#/components/parameters/$top"}, {"$ref": "#/components/parameters/$skip"}]
    if route.operation == "access.list":
        params.append({"name": "$filter", "in": "query", "required": False, "schema": STR,
                       "description": "Not used (as in Azure): accepted and ignored"})
    if route.operation == "audit.list":
        params += [
            {"name": "operation", "in": "query", "required": False, "schema": STR},
            {"name": "kind", "in": "query", "required": False,
             "schema": {"type": "string", "enum": ["changes", "reads", "refusals"]}},
            {"name": "since", "in": "query", "required": False, "schema": {"type": "string", "format": "date-time"}},
            {"name": "until", "in": "query", "required": False, "schema": {"type": "string", "format": "date-time"}},
        ]
    if "regenerate" in route.operation:
        params.append(openapi_common.IF_UNUSED_FOR)
    params.append({"name": "x-ms-client-request-id", "in": "header", "required": False, "schema": STR,
                   "description": "Echoed back when it is 1 to 200 visible ASCII characters"})
    op["parameters"] = params
    responses: dict[str, Any] = {}
    for status, (text, body, etag) in SUCCESS[route.operation].items():
        answer: dict[str, Any] = {"description": text, "headers": {**_REQUEST_ID, **(_ETAG if etag else {})}}
        if body is not None:
            answer["content"] = _json(body)
        responses[status] = answer
    error = None if head else _ERROR
    for status, text in (("400", "ValidationError, MissingApiVersionParameter, InvalidApiVersionParameter"),
                         ("404", "ResourceNotFound, NotFound"), ("500", "InternalServerError")):
        responses[status] = {"description": text, **({"content": error} if error else {})}
    if route.method in ("PUT", "PATCH") and route.operation.startswith("access.") and route.body != "RotationPolicy":
        responses["412"] = {"description": "PreconditionFailed: If-Match is not the current entity tag",
                            "content": _ERROR}
    if route.operation == "services.create_or_update":
        responses["409"] = {"description": "InvalidResourceLocation: a service cannot move", "content": _ERROR}
    if "regenerate" in route.operation:
        responses["409"] = {"description": "Conflict: with ifUnusedFor, the key was used within that window",
                            "content": _ERROR}
    op["responses"] = responses
    if route.body is not None:
        op["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{route.body}"}}}}
    return op


def _arm_operation(route: Route, op: dict[str, Any]) -> dict[str, Any]:
    """Resource Manager's operations take its api-versions (any well-formed one), not API Management's."""
    schema, version_required, names_missing = ARM_OPERATIONS[route.operation]
    names = [part[1:-1] for part in route.path.split("/") if part.startswith("{")]
    op["parameters"] = [*(openapi_common.PATH_PARAMETERS[n] for n in names), {
        "name": "api-version", "in": "query", "required": version_required,
        "description": "Any well-formed Resource Manager api-version; every one answers in the shape documented here.",
        "schema": {"type": "string", "pattern": api_versions.WELL_FORMED_PATTERN},
    }]
    responses: dict[str, Any] = {"200": {"description": "OK", "headers": dict(_REQUEST_ID), "content": _json(schema)},
                                 "400": {"description": "MissingApiVersionParameter, InvalidApiVersionParameter, "
                                                        "ValidationError", "content": _ERROR},
                                 "500": {"description": "InternalServerError", "content": _ERROR}}
    if names_missing:
        responses["404"] = {"description": "SubscriptionNotFound, ResourceGroupNotFound", "content": _ERROR}
    op["responses"] = responses
    return op


def build(routes: Sequence[Route]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    doc = {
        "openapi": "3.1.0",
        "info": {
            "title": "tenant-access (Azure Resource Manager wire format)",
            "version": __version__,
            "description": "The tenant access operations of Microsoft.ApiManagement as Azure Resource Manager "
                           "answers them, plus this server's audit extension. Errors are "
                           "{\"error\": {\"code\", \"message\", \"target\"?, \"details\"?}}.",
        },
        "paths": paths,
        "components": {"schemas": {**SCHEMAS, **ARM_SCHEMAS}, "parameters": {}},
    }
    return openapi_common.finish(doc, routes, lambda route: None if route.method == "HEAD" else _ERROR)
