"""The web console at ``/console``: static files only, served from the package.

The page and its scripts hold no data, so they are public; everything the console shows comes from
the ordinary API, called by the browser with the bearer token the user pasted (kept in the tab's
``sessionStorage``). The server therefore needs no session, cookie or CSRF machinery for it, and the
console can do exactly what the token allows, nothing more.

Because that token sits in the page, script injection is the threat to design against: the policy
below allows only this origin's own script files (no inline script, no ``eval``), the scripts build
the page with ``textContent`` and never ``innerHTML``, and no asset comes from anywhere else.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

from tenant_access.domain.errors import NotFound
from tenant_access.http.context import Context, Outcome
from tenant_access.http.responses import Response, json_response
from tenant_access.http.routing import Route
from tenant_access.security.authorization import covers

if TYPE_CHECKING:
    from tenant_access.http.app import App

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
#: Sent with every console answer, page or asset (``X-Content-Type-Options: nosniff`` too, as on
#: every answer of the server: the wire formats' ``common_headers`` add it).
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
    ("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()"),
)
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
PAGE = "index.html"
#: The most resource groups the sign-in check names (the console offers the first).
MAX_PLACES = 50


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


def load_assets() -> dict[str, Asset]:
    """Every file of ``http/static`` with a known type, read once: they are a few tens of KiB, and
    a fixed table means a request can name only a file that shipped (no path is ever joined)."""
    assets: dict[str, Asset] = {}
    folder = resources.files("tenant_access.http") / "static"
    if not folder.is_dir():
        return assets
    for entry in folder.iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
        if entry.is_file() and suffix in MEDIA_TYPES:
            body = entry.read_bytes()
            assets[entry.name] = Asset(body, MEDIA_TYPES[suffix], '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
    return assets


def _answer(asset: Asset, ctx: Context, cache_control: str) -> Response:
    headers = [*SECURITY_HEADERS, ("Cache-Control", cache_control), ("ETag", asset.etag)]
    if asset.etag in (ctx.request.headers.get("if-none-match") or ""):
        return Response(304, b"", headers, None)
    return Response(200, asset.body, headers, asset.media_type)


def routes(app: App) -> list[Route]:
    loaded: list[dict[str, Asset]] = []

    def files() -> dict[str, Asset]:
        """Read at the console's first request, not at start (where they would delay the first answer)."""
        if not loaded:
            loaded.append(load_assets())
        return loaded[0]

    async def page(ctx: Context) -> Outcome:
        """``no-store``: the page is the console's entry point, so an upgrade must show at once, and
        nothing of a session should linger in a shared machine's cache."""
        assets = files()
        if PAGE not in assets:
            raise NotFound("The console's files are not installed.")
        return Outcome("raw", _answer(assets[PAGE], ctx, "no-store"))

    async def asset(ctx: Context) -> Outcome:
        name = ctx.params["asset"]
        if name in ("", PAGE):
            # "/console/" and "/console/index.html": the page lives at "/console", where its relative
            # asset URLs ("console/app.js") resolve; a relative Location keeps any proxy prefix.
            return Outcome("raw", Response(308, b"", [*SECURITY_HEADERS, ("Location", "../console")], None))
        found = files().get(name)
        if found is None:
            raise NotFound("No console file has that name.")
        # Revalidated on every use (cheap: a 304 by ETag), so a new version is never mixed with an old one.
        return Outcome("raw", _answer(found, ctx, "no-cache"))

    async def session(ctx: Context) -> Outcome:
        """Checks the pasted token at sign-in, so garbage is refused there with the reason (not on
        the first call), and names the resource groups with services the caller may see, so the
        console can fill its boxes with real values. Authenticated here rather than by the router
        so that a SAS, which is valid only on routes of its own service, gets the same 401 as
        anywhere else; everything listed lies under the caller's own scope, which it could list
        anyway."""
        principal = await app.auth.authenticate(ctx.request, session_route, ctx.params)
        services = await app.store.list_all_services()
        places = sorted({(svc.ref.subscription_id, svc.ref.resource_group) for svc in services
                         if covers(principal.scope, svc.ref.resource_id)})
        return Outcome("raw", json_response(200, {
            "sub": principal.sub, "role": principal.role.value, "scope": principal.scope,
            "resource_groups": [{"subscription": sub, "resource_group": rg} for sub, rg in places[:MAX_PLACES]],
        }))

    session_route = Route("console.session", "GET", "/console/session", session,
                          "The console's sign-in check: who the credential is, and where its services are",
                          versioned=False, public=True)
    return [
        Route("console.page", "GET", "/console", page, "The web console (HTML; public, holds no data)",
              versioned=False, public=True),
        session_route,
        Route("console.asset", "GET", "/console/{asset}", asset, "A file of the web console (script, style, icon)",
              versioned=False, public=True),
    ]
