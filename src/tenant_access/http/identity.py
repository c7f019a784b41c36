"""A minimal OAuth 2.0 authority, so unmodified Azure tooling can sign in to this server.

It serves the two requests ``azure-identity`` makes for a ``ClientSecretCredential`` whose
``authority`` is this server (with ``disable_instance_discovery=True``): the OpenID configuration
document and the client-credentials token endpoint (also the ADFS-shaped paths, so an
environment-only ``DefaultAzureCredential`` with tenant ``adfs`` works). Errors here use OAuth's
``{"error", "error_description"}`` shape rather than the API's, because that is what the clients
parse; it is the one documented exception to the wire formats.

Every URL here is built from the configured public URL (``--public-url``, or the listening
address), never from the request's ``Host`` header: the document is the same for every caller, so
no cache in front can be poisoned with someone else's host. The token endpoint and the verifier
agree on audiences: a scope naming an audience the server would refuse is answered
``invalid_scope`` rather than with a token that cannot be used.
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
    from tenant_access.http.request import Request


TOKEN_LIFETIME = 3600
#: A GUID, a domain name, "common", "adfs"...: it starts with a letter or digit (so "." and "..",
#: which clients collapse as dot-segments, are not tenants). Shared with the OpenAPI documents.
TENANT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9.-]{0,63}$"
_TENANT = re.compile(TENANT_PATTERN.rstrip("$"))
DEFAULT_SUFFIX = "/.default"
#: Scopes OpenID Connect clients may add to any request; they name no resource.
_RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access", "email"})


def audience_for(scope: str, audiences: tuple[str, ...]) -> str | None:
    """The ``aud`` of a token for the OAuth ``scope`` (``<resource>/.default``), if the server
    accepts that audience: the resource as given, or with one slash added (ARM's own audience is
    ``https://management.azure.com/`` while clients ask for ``https://management.azure.com/.default``).
    ``None``: no single acceptable resource is named, and the request gets ``invalid_scope``."""
    requested = [s for s in scope.split() if s not in _RESERVED_SCOPES]
    if not requested:
        return audiences[0]
    if len(requested) != 1 or not requested[0].endswith(DEFAULT_SUFFIX):
        return None
    resource = requested[0].removesuffix(DEFAULT_SUFFIX)
    for candidate in (resource + "/", resource):
        if resource and candidate in audiences:
            return candidate
    return None


def _oauth_error(status: int, error: str, description: str) -> Outcome:
    response = json_response(status, {"error": error, "error_description": description})
    response.header("Cache-Control", "no-store")
    return Outcome("raw", response)


def _openid_document(base_url: str, tenant: str, audiences: tuple[str, ...]) -> dict[str, object]:
    """Built from the configured public URL only, never from the request's ``Host``: a shared cache
    in front of the server must not be able to keep a document that names another host."""
    base = f"{base_url}/{tenant}"
    return {
        "issuer": base_url,
        "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
        "token_endpoint": f"{base}/oauth2/v2.0/token",
        "jwks_uri": f"{base}/discovery/v2.0/keys",
        "token_endpoint_auth_methods_supported": ["client_secret_post"],
        "grant_types_supported": ["client_credentials"],
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["HS256"],
        "scopes_supported": [a.rstrip("/") + DEFAULT_SUFFIX for a in dict.fromkeys(audiences)],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "jti", "role", "scope", "azp", "idtyp"],
        "tenant_region_scope": None,
    }


async def _keys(ctx: Context) -> Outcome:
    """The server's public signing keys: none. Its tokens are HS256 under a secret only the
    server holds (and only it verifies them), so there is no public key to publish; an empty
    set is the honest answer, and it satisfies clients that require ``jwks_uri`` to exist."""
    if not _TENANT.fullmatch(ctx.params["tenant"]):
        return _oauth_error(400, "invalid_tenant", "The tenant id may contain only letters, digits, '.' and '-'.")
    return Outcome("raw", json_response(200, {"keys": []}))


async def _record_refused_sign_in(app: App, request: Request, tenant: str) -> None:
    """Summarised per address and minute, like every other refusal of nobody in particular. The
    failure itself was counted when the attempt took its slot (:meth:`FailureLimiter.reserve`)."""
    actor = Actor("unauthenticated", "-", "-", "-", request.request_id, request.client)
    await app.refusals.refused(actor, "identity.token", f"/{tenant[:64]}/oauth2/v2.0/token", 401, None,
                               detail="invalid client id or secret")


def routes(app: App) -> list[Route]:
    base_url = app.settings.base_url

    def audiences() -> tuple[str, ...]:
        from tenant_access.security.tokens import own_audiences

        verifier = app.auth.verifier
        return verifier.audiences if verifier is not None and verifier.audiences else own_audiences(base_url)

    async def openid_configuration(ctx: Context) -> Outcome:
        tenant = ctx.params["tenant"]
        if not _TENANT.fullmatch(tenant):
            return _oauth_error(400, "invalid_tenant", "The tenant id may contain only letters, digits, '.' and '-'.")
        return Outcome("raw", json_response(200, _openid_document(base_url, tenant, audiences())))

    async def token(ctx: Context) -> Outcome:
        """The attempt takes its slot in the address's failure window before anything is awaited
        (see :meth:`FailureLimiter.reserve`): a burst of concurrent bad secrets gets at most the
        limit of 401s, the rest 429, and only attempts that present a wrong secret keep the slot."""
        request = ctx.request
        decision = app.auth.failures.reserve(request.client)
        if not decision.allowed:
            throttled = _oauth_error(429, "temporarily_unavailable", "Too many failed sign-ins; retry later.")
            throttled.value.header("Retry-After", str(decision.retry_after))
            return throttled
        failed = False
        try:
            outcome, failed = await exchange(ctx)
        finally:
            if not failed:
                app.auth.failures.release(request.client, decision)
        return outcome

    async def exchange(ctx: Context) -> tuple[Outcome, bool]:
        """The token request's answer, and whether it was a failed sign-in (a wrong secret)."""
        from tenant_access.security.service_principals import verify_client_secret
        from tenant_access.security.signing_keys import SigningKeyring
        from tenant_access.security.tokens import issue_token

        request = ctx.request
        tenant = ctx.params["tenant"]
        content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            return _oauth_error(400, "invalid_request", "Send the token request as a form."), False
        try:
            form = dict(parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True, strict_parsing=False))
        except UnicodeDecodeError:
            return _oauth_error(400, "invalid_request", "The form is not UTF-8."), False
        if form.get("grant_type") != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type", "Only the client_credentials grant is supported."), False
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        principal = await app.store.get_principal(client_id) if 0 < len(client_id) <= 64 else None
        stored = principal.secret_hash if principal is not None and principal.disabled_at is None else None
        # Verify even when there is no such principal (against no hash), so timing tells nothing;
        # one scrypt at a time per address, so a burst cannot queue ahead of other callers.
        async with app.auth.sign_ins.slot(request.client):
            valid = await asyncio.to_thread(verify_client_secret, secret, stored)
        if not valid or principal is None:
            await _record_refused_sign_in(app, request, tenant)
            return _oauth_error(401, "invalid_client", "The client id or secret is not valid."), True
        audience = audience_for(form.get("scope", ""), audiences())
        if audience is None:
            scope_hint = f"such as '{base_url}/.default' or 'https://management.azure.com/.default'"
            return _oauth_error(400, "invalid_scope", "The scope must be one '<resource>/.default' naming a "
                                f"resource this server accepts tokens for, {scope_hint}."), False
        signing = app.auth.signing or SigningKeyring(app.settings.data_dir, app.settings.max_token_lifetime)
        lifetime = min(TOKEN_LIFETIME, app.settings.max_token_lifetime)
        access_token = issue_token(
            signing.current(), principal.client_id, principal.role, principal.scope, lifetime, aud=audience,
            iss=base_url, max_lifetime=app.settings.max_token_lifetime, app=(principal.client_id, principal.generation),
        )
        response = Response(200, json.dumps({
            "token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime,
            "access_token": access_token,
        }).encode())
        return Outcome("raw", response.header("Cache-Control", "no-store").header("Pragma", "no-cache")), False

    return [
        Route("identity.openid_configuration", "GET", "/{tenant}/v2.0/.well-known/openid-configuration",
              openid_configuration, "OpenID configuration (what azure-identity reads first)",
              versioned=False, public=True),
        Route("identity.openid_configuration_adfs", "GET", "/{tenant}/.well-known/openid-configuration",
              openid_configuration, "OpenID configuration, ADFS-shaped path", versioned=False, public=True),
        Route("identity.keys", "GET", "/{tenant}/discovery/v2.0/keys", _keys,
              "The server's public token signing keys (JWKS): an empty set, its tokens being HS256",
              versioned=False, public=True),
        Route("identity.token", "POST", "/{tenant}/oauth2/v2.0/token", token,
              "OAuth 2.0 client-credentials token endpoint", versioned=False, public=True),
    ]
