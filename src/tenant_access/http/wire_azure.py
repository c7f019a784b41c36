"""The Azure wire format: what Azure Resource Manager answers for the same routes and state.

Chosen per server with ``--api-style azure``. The handlers, the use cases and the store are the
same as in the seed style; only status codes, bodies and headers differ, and each of them follows
the ``Microsoft.ApiManagement`` specification (``apimtenant.json``, ``apimdeployment.json``) or,
where the specification is silent, what Resource Manager is recorded doing. The target reader is
the unmodified ``azure-mgmt-apimanagement`` SDK: anything it would reject (a 200 where it accepts
only 204, an error body without ``error.code``) is a bug here.

Deliberate differences from Azure are listed in ``docs/azure-compatibility.md``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode

from tenant_access.clock import format_duration
from tenant_access.domain.errors import TenantAccessError, ValidationFailed
from tenant_access.domain.models import AccessConfig, Secrets, Service, ServiceRef
from tenant_access.domain.usage import KeyUsage
from tenant_access.http.context import Context, Outcome
from tenant_access.http.handlers import Page
from tenant_access.http.request import Request
from tenant_access.http.responses import Rendered, Response, json_response

NAME = "azure"
SERVICE_TYPE = "Microsoft.ApiManagement/service"
TENANT_TYPE = "Microsoft.ApiManagement/service/tenant"
#: Until this version the specification answers a tenant-access PATCH with 204 and no body.
PATCH_RETURNS_BODY_FROM = "2020-12-01"
NOTIFICATION_SENDER = "apimgmt-noreply@mail.windowsazure.com"
#: What Azure reports in ``customProperties`` for a new service: legacy protocols and ciphers off.
DEFAULT_CUSTOM_PROPERTIES = {
    f"Microsoft.WindowsAzure.ApiManagement.Gateway.{name}": "False"
    for name in (
        "Security.Protocols.Tls10", "Security.Protocols.Tls11", "Security.Protocols.Ssl30",
        "Security.Ciphers.TripleDes168", "Security.Backend.Protocols.Tls10",
        "Security.Backend.Protocols.Tls11", "Security.Backend.Protocols.Ssl30", "Protocols.Server.Http2",
    )
}
#: Client-chosen ids are echoed only when they look like ids, so a header cannot smuggle anything.
_ECHOABLE = re.compile(r"^[\x21-\x7e]{1,200}$")
_HOST = re.compile(r"^[A-Za-z0-9.\-]+(?::\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](?::\d{1,5})?$")


# -- bodies ----------------------------------------------------------------------------------------


def dotnet_time(value: _dt.datetime) -> str:
    """The round-trip format Azure writes (seven fractional digits, ``Z``)."""
    value = value.astimezone(_dt.UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond:06d}0Z"


def access_body(config: AccessConfig) -> dict[str, Any]:
    """``AccessInformationContract``: a proxy resource whose properties never include a key."""
    return {
        "id": config.resource_id,
        "type": TENANT_TYPE,
        "name": config.name.value,
        "properties": {"principalId": config.principal_id, "enabled": config.enabled},
    }


_access_answer: Rendered[AccessConfig] = Rendered(access_body)


def secrets_body(secrets: Secrets) -> dict[str, Any]:
    """``AccessInformationSecretsContract``: flat, no resource envelope.

    ``id`` carries the identifier that signs shared access signatures, which is what the
    specification's example shows there (an opaque user id) and what tools built on the real
    service read from it.
    """
    config = secrets.config
    body: dict[str, Any] = {
        "id": config.principal_id,
        "principalId": config.principal_id,
        "primaryKey": secrets.primary_key,
        "secondaryKey": secrets.secondary_key,
        "enabled": config.enabled,
    }
    for slot, when in zip(("primary", "secondary"), secrets.expires_at, strict=True):
        if when is not None:  # our extension, only under a rotation policy with an expiryTime
            body[f"{slot}KeyExpiresAt"] = dotnet_time(when)
    return body


def _region(location: str) -> str:
    return re.sub(r"[^a-z0-9]", "", location.lower())


def service_body(svc: Service) -> dict[str, Any]:
    """``ApiManagementServiceResource`` as a freshly activated Azure service reports it.

    Every service here is ``Succeeded`` at once (there is nothing to deploy), so clients that wait
    on ``provisioningState`` stop waiting immediately. The host names follow Azure's naming; they
    describe where Azure would put the gateway and portals, not anything this server runs.
    """
    host = svc.ref.name.lower()
    consumption = svc.sku_name == "Consumption"
    props: dict[str, Any] = {
        "publisherEmail": svc.publisher_email,
        "publisherName": svc.publisher_name,
        "notificationSenderEmail": NOTIFICATION_SENDER,
        "provisioningState": "Succeeded",
        "targetProvisioningState": "",
        "createdAtUtc": dotnet_time(svc.created_at),
        "gatewayUrl": f"https://{host}.azure-api.net",
    }
    if not consumption:
        props.update({
            "gatewayRegionalUrl": f"https://{host}-{_region(svc.location)}-01.regional.azure-api.net",
            "portalUrl": f"https://{host}.portal.azure-api.net",
            "developerPortalUrl": f"https://{host}.developer.azure-api.net",
            "managementApiUrl": f"https://{host}.management.azure-api.net",
            "scmUrl": f"https://{host}.scm.azure-api.net",
        })
    props.update({
        "hostnameConfigurations": [{
            "type": "Proxy",
            "hostName": f"{host}.azure-api.net",
            "negotiateClientCertificate": False,
            "defaultSslBinding": True,
            "certificateSource": "BuiltIn",
        }],
        "customProperties": dict(DEFAULT_CUSTOM_PROPERTIES),
        "virtualNetworkType": "None",
        "disableGateway": False,
        "publicNetworkAccess": "Enabled",
    })
    if consumption:
        props["enableClientCertificate"] = False
    # Consumption runs on Azure's multi-tenant platform; every other tier is on stv2 since stv1's retirement.
    props["platformVersion"] = "mtv1" if consumption else "stv2"
    return {
        "id": svc.ref.resource_id,
        "name": svc.ref.name,
        "type": SERVICE_TYPE,
        "tags": dict(svc.tags),
        "location": svc.location,
        "etag": svc.etag,
        "properties": props,
        "sku": {"name": svc.sku_name, "capacity": svc.sku_capacity},
        "systemData": {"createdAt": dotnet_time(svc.created_at), "lastModifiedAt": dotnet_time(svc.updated_at)},
    }


# -- the three entry points ------------------------------------------------------------------------


def _etag(value: str) -> str:
    return f'"{value}"'


def _empty(status: int) -> Response:
    return Response(status, content_type=None)


def _before(served: str | None, version: str) -> bool:
    """Compare by date: a preview of a month sorts with that month's stable version."""
    return served is not None and served[:10] < version


def success_status(kind: str, ctx: Context) -> int:
    """The status of a success of ``kind`` on this request: what :func:`render` answers, and what
    the audit record of the change says was answered (regenerations are 204 in Azure)."""
    if kind == "rotation":
        return 204
    if kind == "access" and ctx.request.method == "PATCH":
        served = ctx.api_version.served if ctx.api_version is not None else None
        return 204 if _before(served, PATCH_RETURNS_BODY_FROM) else 200
    return 200


def render(outcome: Outcome, ctx: Context) -> Response:
    kind, value = outcome.kind, outcome.value
    if kind == "rotation":
        return _empty(success_status(kind, ctx))
    if kind == "access":
        if success_status(kind, ctx) == 204:
            return _empty(204).header("ETag", _etag(value.etag))
        return Response(200, _access_answer(value)).header("ETag", _etag(value.etag))
    if kind == "access_etag":
        return _empty(200).header("ETag", _etag(value.etag))
    if kind == "secrets":  # keys: no cache may keep a copy (RFC 9111 no-store)
        return (json_response(200, secrets_body(value)).header("ETag", _etag(value.config.etag))
                .header("Cache-Control", "no-store"))
    if kind == "access_list":
        return json_response(200, {
            "value": [access_body(c) for c in value],
            "count": value.total if isinstance(value, Page) else len(value),
            # The specification's example sends an empty string on the last page; clients stop on it.
            "nextLink": _next_link(value, ctx.request) or "",
        })
    if kind == "service":
        svc: Service = value
        return json_response(201 if outcome.created else 200, service_body(svc)).header("ETag", _etag(svc.etag))
    if kind == "service_list":
        body: dict[str, Any] = {"value": [service_body(s) for s in value]}
        link = _next_link(value, ctx.request)
        if link:
            body["nextLink"] = link
        return json_response(200, body)
    if kind == "service_deleted":
        _ref, deleted = value
        # Resource Manager: 200 when something was deleted, 204 when there was nothing to delete.
        return _empty(204 if deleted is None else 200)
    if kind == "audit_list":
        # Our extension, not an Azure operation: Resource Manager's list envelope around camelCase records.
        listing: dict[str, Any] = {"value": [extension_record(r) for r in value]}
        link = _next_link(value, ctx.request)
        if link:
            listing["nextLink"] = link
        return json_response(200, listing)
    if kind == "key_usage":
        return json_response(200, key_usage_body(value))
    if kind == "rotation_policy":  # Key Vault's own shape (its data plane has no resource envelope either)
        return json_response(200, value.describe())
    if kind == "rotation_policy_deleted":
        return _empty(200 if value else 204)
    if kind == "document":
        return json_response(200, value)
    if kind.startswith("event_subscription"):
        from tenant_access.http import events

        return events.render(outcome, "azure")
    raise AssertionError(f"no azure rendering for {kind}")


def key_usage_body(usage: KeyUsage) -> dict[str, Any]:
    """Our extension (issue 14) as a proxy resource under the access configuration, camelCase,
    round-trip UTC times."""
    config = usage.config
    return {
        "id": config.resource_id + "/keyUsage",
        "type": TENANT_TYPE + "/keyUsage",
        "name": "keyUsage",
        "properties": {
            "asOf": dotnet_time(usage.as_of),
            "flushIntervalSeconds": usage.flush_seconds,
            "keys": [{
                "slot": key.slot.value,
                "keyVersionId": key.version_id,
                "createdAt": dotnet_time(key.created_at),
                "lastUsedAt": dotnet_time(key.last_used) if key.last_used else None,
                "useCount": key.uses,
                "unusedFor": format_duration(key.unused_for(usage.as_of)),
                "expiresAt": dotnet_time(key.expires_at) if key.expires_at else None,
            } for key in usage.keys],
        },
    }


def extension_record(record: Any) -> dict[str, Any]:
    """A record of one of our own (non-Azure) resources, in Azure's conventions: camelCase keys,
    round-trip UTC times, services named by resource id."""
    out: dict[str, Any] = {}
    for item in dataclasses.fields(record):
        value = getattr(record, item.name)
        if isinstance(value, _dt.datetime):
            value = dotnet_time(value)
        elif isinstance(value, ServiceRef):
            value = value.resource_id
        head, *rest = item.name.split("_")
        out[head + "".join(word.capitalize() for word in rest)] = value
    return out


def _next_link(items: list[Any], request: Request) -> str | None:
    """An absolute URL to the next page, on the host the client used, so the SDK's pager (which
    sends its bearer token there) never leaves this server."""
    if not isinstance(items, Page) or items.next_skip is None:
        return None
    query = [(k, v) for k, v in parse_qsl(request.scope.get("query_string", b"").decode("latin-1"),
                                         keep_blank_values=True) if k != "$skip"]
    query.append(("$skip", str(items.next_skip)))
    return f"{origin(request)}{request.path}?{urlencode(query, safe='$-')}"


def origin(request: Request) -> str:
    scheme = request.scope.get("scheme", "http")
    host = request.headers.get("host", "")
    if not _HOST.match(host):
        server = request.scope.get("server") or ("127.0.0.1", 80)
        host = f"[{server[0]}]:{server[1]}" if ":" in str(server[0]) else f"{server[0]}:{server[1]}"
    return f"{scheme}://{host}"


def error(exc: TenantAccessError, request: Request | None, request_id: str) -> Response:
    """Resource Manager's error envelope, ``{"error": {"code", "message", "target"?, "details"?}}``.

    azure-core reads ``error.code`` into the exception it raises, so the code is the contract;
    ``details`` items carry ``code``/``target``/``message``, which satisfies both the common-types
    ``ErrorDetail`` (2024-05-01) and the older APIM ``ErrorFieldContract`` (2022-08-01).
    """
    body: dict[str, Any] = {"code": exc.azure_code, "message": exc.message}
    if exc.target:
        body["target"] = exc.target
    if exc.details:
        detail_code = "ValidationError" if isinstance(exc, ValidationFailed) else exc.azure_code
        body["details"] = [{"code": detail_code, "target": d.field, "message": d.message} for d in exc.details]
    response = json_response(exc.status, {"error": body})
    for name, value in exc.headers.items():
        # azure-core retries any error that carries Retry-After; only real back-pressure may send it.
        if name.lower() == "retry-after" and exc.status not in (429, 503):
            continue
        response.header(name, value)
    return response


def common_headers(response: Response, request: Request | None, request_id: str) -> None:
    """The request-tracking headers every Resource Manager answer carries.

    ``x-ms-correlation-request-id`` is the caller's when it sent one, else this request's id (as
    Resource Manager does when it starts a correlation); ``x-ms-client-request-id`` is echoed so
    a client can match answers to its own logs. ``nosniff`` goes on every answer, errors
    included: a browser must never run a JSON body as a script or a page.
    """
    response.header("X-Content-Type-Options", "nosniff")
    response.header("x-ms-request-id", request_id)
    headers = request.headers if request is not None else {}
    correlation = headers.get("x-ms-correlation-request-id", "")
    response.header("x-ms-correlation-request-id", correlation if _ECHOABLE.match(correlation) else request_id)
    client_id = headers.get("x-ms-client-request-id", "")
    if _ECHOABLE.match(client_id):
        response.header("x-ms-client-request-id", client_id)
