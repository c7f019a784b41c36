"""Routes outside the versioned resource API: the OpenAPI document and health checks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tenant_access.http.context import Context, Outcome
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
        return Outcome("document", {"status": "ready"})

    return [
        Route("meta.openapi", "GET", "/openapi.json", openapi, "This API's OpenAPI document",
              versioned=False, public=True),
        Route("meta.healthz", "GET", "/healthz", healthz, "Liveness: the process answers",
              versioned=False, public=True),
        Route("meta.readyz", "GET", "/readyz", readyz, "Readiness: the store answers", versioned=False, public=True),
    ]
