"""Routes outside the versioned resource API: the OpenAPI document, health checks and metrics."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from tenant_access.http.context import Context, Outcome
from tenant_access.http.responses import Response
from tenant_access.http.routing import Route

if TYPE_CHECKING:
    from tenant_access.http.app import App


def routes(app: App) -> list[Route]:
    cache: dict[str, object] = {}

    async def openapi(ctx: Context) -> Outcome:
        if "doc" not in cache:
            from tenant_access.http import openapi as builder

            cache["doc"] = builder.build(app.routes, app.settings.api_style)
        return Outcome("document", cache["doc"])

    async def healthz(ctx: Context) -> Outcome:
        return Outcome("document", {"status": "ok"})

    async def readyz(ctx: Context) -> Outcome:
        await app.store.ping()
        return Outcome("document", {"status": "ready", "scheduler": app.scheduler.state.describe()})

    async def metrics(ctx: Context) -> Outcome:
        await _admit_scraper(app, ctx, metrics_route)
        body = app.metrics.exposition()
        from tenant_access.metrics import CONTENT_TYPE

        return Outcome("raw", Response(200, body, [("Cache-Control", "no-store")], CONTENT_TYPE))

    metrics_route = Route("meta.metrics", "GET", "/metrics", metrics, "Prometheus metrics of this process",
                          versioned=False, public=True)
    return [
        *([metrics_route] if app.settings.metrics != "off" else []),
        Route("meta.openapi", "GET", "/openapi.json", openapi, "This API's OpenAPI document",
              versioned=False, public=True),
        Route("meta.healthz", "GET", "/healthz", healthz, "Liveness: the process answers",
              versioned=False, public=True),
        Route("meta.readyz", "GET", "/readyz", readyz, "Readiness: the store answers", versioned=False, public=True),
    ]


async def _admit_scraper(app: App, ctx: Context, route: Route) -> None:
    """Who may read metrics is a setting of its own (``--metrics``), so the route is public to the
    generic pipeline and decides here: ``public`` admits anyone; ``loopback`` admits clients on this
    host without credentials (a sidecar or node agent scrapes over loopback) and asks others for one;
    ``auth`` always asks. A credential must have scope ``/``: the numbers describe the whole server,
    not one subscription's share of it. Refusals are audited like any other."""
    mode = app.settings.metrics
    if mode == "public" or (mode == "loopback" and _is_loopback(ctx.request.client)):
        return
    from tenant_access.domain.audit import Actor
    from tenant_access.domain.errors import TenantAccessError
    from tenant_access.http.app import UNAUTHENTICATED
    from tenant_access.http.auth import forbidden

    try:
        principal = await app.auth.authenticate(ctx.request, route, ctx.params)
    except TenantAccessError as exc:
        await app._record_refusal(UNAUTHENTICATED, ctx.request, route, ctx.params, exc)
        raise
    if principal.scope != "/":
        refusal = forbidden(principal, route.operation)
        actor = Actor(principal.sub, principal.role.value, principal.scope, principal.kind.value,
                      ctx.request.request_id, ctx.request.client)
        await app._record_refusal(actor, ctx.request, route, ctx.params, refusal)
        raise refusal


def _is_loopback(client: str) -> bool:
    try:
        return ipaddress.ip_address(client).is_loopback
    except ValueError:
        return False
