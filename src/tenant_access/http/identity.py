"""A minimal OAuth 2.0 authority, so unmodified Azure tooling can sign in to this server.

It serves the two requests ``azure-identity`` makes for a ``ClientSecretCredential`` whose
``authority`` is this server (with ``disable_instance_discovery=True``): the OpenID configuration
document and the client-credentials token endpoint (also the ADFS-shaped paths, so an
environment-only ``DefaultAzureCredential`` with tenant ``adfs`` works). Errors here use OAuth's
``{"error", "error_description"}`` shape rather than the API's, because that is what the clients
parse; it is the one documented exception to the wire formats.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from tenant_access.domain.audit import Actor
from tenant_access.http.context import Context, Outcome
from tenant_access.http.responses import Response, json_response
from tenant_access.http.routing import Route

if TYPE_CHECKING:
    from tenant_access.http.app import App


TOKEN_LIFETIME = 3600
#: A GUID, a domain name, "common", "adfs"...: it starts with a letter or digit (so "." and "..",
#: which clients collapse as dot-segments, are not tenants). Shared with the OpenAPI documents.
TENANT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9.-]{0,63}$"
_TENANT = re.compile(TENANT_PATTERN.rstrip("$"))
_RESOURCE_SCOPE = re.compile(r"^(https://[^\s/]+/?)(?:\.default)?$")


def _base_url(ctx: Context) -> str:
    scope = ctx.request.scope
    host = ctx.request.headers.get("host") or "{}:{}".format(*scope.get("server", ("127.0.0.1", 0)))
    return f"{scope.get('scheme', 'http')}://{host}"


def _oauth_error(status: int, error: str, description: str) -> Outcome:
    response = json_response(status, {"error": error, "error_description": description})
    response.header("Cache-Control", "no-store")
    return Outcome("raw", response)


def routes(app: App) -> list[Route]:
    async def openid_configuration(ctx: Context) -> Outcome:
        tenant = ctx.params["tenant"]
        if not _TENANT.fullmatch(tenant):
            return _oauth_error(400, "invalid_tenant", "The tenant id may contain only letters, digits, '.' and '-'.")
        base = f"{_base_url(ctx)}/{tenant}"
        return Outcome("raw", json_response(200, {
            "issuer": f"{base}/v2.0",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post"],
            "grant_types_supported": ["client_credentials"],
            "response_types_supported": ["token"],
            "scopes_supported": ["https://management.azure.com/.default"],
            "tenant_region_scope": None,
        }))

    async def token(ctx: Context) -> Outcome:
        from tenant_access.security.service_principals import verify_client_secret
        from tenant_access.security.tokens import issue_token, load_or_create_signing_key

        request = ctx.request
        tenant = ctx.params["tenant"]
        decision = app.auth.failures.check(request.client)
        if not decision.allowed:
            response = json_response(429, {"error": "temporarily_unavailable",
                                           "error_description": "Too many failed sign-ins; retry later."})
            return Outcome("raw", response.header("Retry-After", str(decision.retry_after)))
        content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            return _oauth_error(400, "invalid_request", "Send the token request as a form.")
        try:
            form = dict(parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True, strict_parsing=False))
        except UnicodeDecodeError:
            return _oauth_error(400, "invalid_request", "The form is not UTF-8.")
        if form.get("grant_type") != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type", "Only the client_credentials grant is supported.")
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        principal = await app.store.get_principal(client_id) if 0 < len(client_id) <= 64 else None
        stored = principal.secret_hash if principal is not None and principal.disabled_at is None else None
        # Verify even when there is no such principal (against no hash), so timing tells nothing.
        valid = await asyncio.to_thread(verify_client_secret, secret, stored)
        if not valid or principal is None:
            app.auth.failures.record_failure(request.client)
            actor = Actor("unauthenticated", "-", "-", "-", request.request_id, request.client)
            # Summarised per address and minute, like every other refusal of nobody in particular.
            await app.refusals.refused(actor, "identity.token", f"/{tenant[:64]}/oauth2/v2.0/token", 401, None,
                                       detail="invalid client id or secret")
            return _oauth_error(401, "invalid_client", "The client id or secret is not valid.")
        audience = "https://management.azure.com/"
        for requested in form.get("scope", "").split():
            match = _RESOURCE_SCOPE.match(requested)
            if match:
                audience = match[1] if match[1].endswith("/") else match[1] + "/"
                break
        access_token = issue_token(
            load_or_create_signing_key(app.settings.data_dir, create=False), principal.client_id, principal.role,
            principal.scope, TOKEN_LIFETIME, aud=audience,
        )
        response = Response(200, json.dumps({
            "token_type": "Bearer", "expires_in": TOKEN_LIFETIME, "ext_expires_in": TOKEN_LIFETIME,
            "access_token": access_token,
        }).encode())
        return Outcome("raw", response.header("Cache-Control", "no-store").header("Pragma", "no-cache"))

    return [
        Route("identity.openid_configuration", "GET", "/{tenant}/v2.0/.well-known/openid-configuration",
              openid_configuration, "OpenID configuration (what azure-identity reads first)",
              versioned=False, public=True),
        Route("identity.openid_configuration_adfs", "GET", "/{tenant}/.well-known/openid-configuration",
              openid_configuration, "OpenID configuration, ADFS-shaped path", versioned=False, public=True),
        Route("identity.token", "POST", "/{tenant}/oauth2/v2.0/token", token,
              "OAuth 2.0 client-credentials token endpoint", versioned=False, public=True),
    ]
