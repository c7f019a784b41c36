"""Clients wired to real servers: in-process through httpx's ASGI transport, and over TCP to a
server process, in each wire style the server has.

The sync client cannot use ``httpx.ASGITransport`` (it is async-only), so in-process sync tests go
through :class:`PortalTransport`, which runs the app on an event loop in a helper thread.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio.from_thread
import httpx
import pytest

from tenant_access.client import AsyncClient, BearerToken, Client, ServiceRef
from tenant_access.config import Settings
from tenant_access.http.app import App, create_app
from tests.conftest import SUBSCRIPTION
from tests.serverproc import ServerProcess

STYLES = [pytest.param(style, id=style) for style in ("seed", "azure")]
BACKENDS = [pytest.param((where, style), id=f"{where}-{style}")
            for where in ("inproc", "live") for style in ("seed", "azure")]
SERVICE_FIELDS: dict[str, Any] = {
    "location": "West Europe", "publisher_email": "ops@example.com", "publisher_name": "Ops",
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class PortalTransport(httpx.BaseTransport):
    """A sync transport that hands each request to ``httpx.ASGITransport`` on a portal's loop."""

    def __init__(self, portal: anyio.from_thread.BlockingPortal, app: App) -> None:
        self._portal = portal
        self._inner = httpx.ASGITransport(app=app)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        content = request.read()

        async def forward() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
            inner = httpx.Request(request.method, request.url, headers=request.headers, content=content)
            response = await self._inner.handle_async_request(inner)
            body = await response.aread()
            return response.status_code, response.headers.raw, body

        status, headers, body = self._portal.call(forward)
        return httpx.Response(status, headers=headers, content=body, request=request)


def make_app(data_dir: Path, style: str) -> App:
    return create_app(Settings(data_dir=data_dir, api_style=style))


def bearer_for(data_dir: Path, role: str = "owner", scope: str = "/", *, issuer: str | None = None) -> BearerToken:
    """A token signed with the server's own signing key, as ``tenant-access token`` issues it, issued
    by ``issuer`` (a live server's URL) or by default by what an in-process app (``make_app``) is."""
    from tenant_access.security.tokens import issue_token, load_or_create_signing_key

    data_dir.mkdir(parents=True, exist_ok=True)
    issuer = issuer or Settings(data_dir=data_dir).base_url  # what make_app's server issues and accepts
    return BearerToken(issue_token(load_or_create_signing_key(data_dir), "client-tests", role, scope, 3600, iss=issuer))


@pytest.fixture(scope="session")
def azure_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("azure-server"), ["--api-style", "azure"]).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def portal() -> Iterator[anyio.from_thread.BlockingPortal]:
    with anyio.from_thread.start_blocking_portal() as running:
        yield running


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(where, style): the four ways a client can meet a server."""
    value: tuple[str, str] = request.param
    return value


@pytest.fixture
def style(backend: tuple[str, str]) -> str:
    return backend[1]


class ClientFactory:
    """Makes clients (any options) bound to one test's server, with an owner token by default."""

    def __init__(self, endpoint: str, transport: httpx.BaseTransport | None, data_dir: Path,
                 issuer: str | None = None) -> None:
        self.endpoint = endpoint
        self.transport = transport
        self.data_dir = data_dir
        self.issuer = issuer
        self.credential = bearer_for(data_dir, issuer=issuer)
        self.made: list[Client] = []

    def __call__(self, **options: Any) -> Client:
        options.setdefault("credential", self.credential)
        self.made.append(Client(endpoint=self.endpoint, transport=self.transport, **options))
        return self.made[-1]

    def close(self) -> None:
        for made in self.made:
            made.close()


@pytest.fixture
def make_client(
    backend: tuple[str, str], request: pytest.FixtureRequest, tmp_path: Path,
) -> Iterator[ClientFactory]:
    where, wire_style = backend
    if where == "live":
        server: ServerProcess = request.getfixturevalue("seed_server" if wire_style == "seed" else "azure_server")
        factory = ClientFactory(server.url, None, server.data_dir, server.issuer)
        yield factory
        factory.close()
        return
    portal: anyio.from_thread.BlockingPortal = request.getfixturevalue("portal")
    data_dir = tmp_path / "data"
    app = make_app(data_dir, wire_style)
    portal.call(app.startup)
    factory = ClientFactory("http://testserver", PortalTransport(portal, app), data_dir)
    try:
        yield factory
    finally:
        factory.close()
        portal.call(app.shutdown)


@pytest.fixture
def client(make_client: ClientFactory) -> Client:
    return make_client()


def new_service_ref() -> ServiceRef:
    return ServiceRef(SUBSCRIPTION, "rg-client", "svc-" + uuid.uuid4().hex[:10])


@pytest.fixture
def service(client: Client) -> ServiceRef:
    """A fresh service (and so two fresh access configurations) on the test's server."""
    ref = new_service_ref()
    client.create_or_update_service(ref, **SERVICE_FIELDS)
    return ref


@asynccontextmanager
async def inproc_async_client(data_dir: Path, style: str, **options: Any) -> AsyncIterator[AsyncClient]:
    """An AsyncClient on an in-process app, started and stopped on the test's own loop (httpx's
    ASGITransport does not run the lifespan protocol)."""
    app = make_app(data_dir, style)
    await app.startup()
    options.setdefault("credential", bearer_for(data_dir))
    try:
        async with AsyncClient(endpoint="http://testserver", transport=httpx.ASGITransport(app=app),
                               **options) as client:
            yield client
    finally:
        await app.shutdown()
