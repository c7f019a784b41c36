"""A real tenant-access server inside the test process: uvicorn on its own event loop in a thread.

In-process rather than a subprocess because start-up is what a per-test fixture pays for every
test: no interpreter to boot and no modules to import twice, so a server with a fresh store starts
in milliseconds. It is still a real server: a TCP socket on 127.0.0.1, the same ASGI app, protocol
class and store as ``tenant-access serve``, so clients (ours, curl, the Azure SDK) cannot tell.

Two shortcuts keep a start and a stop in the milliseconds, which is what a per-test fixture pays
for every test:

* a fresh temporary store is a copy of a migrated template made once per process (and a TLS
  certificate is made once per process), since creating one spends its time in fsyncs that buy
  nothing for data deleted at the end of the test;
* stopping does not use uvicorn's own shutdown, which sleeps a fixed 0.1 s and polls at 0.1 s: it
  closes the listener, lets requests in flight finish (polling every 5 ms), aborts the idle
  connections, then closes the store.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as _dt
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import socket

    from tenant_access.client import AsyncClient, Client
    from tenant_access.config import Settings
    from tenant_access.http.app import App
    from tenant_access.testing._controls import EmulatorControls

#: How long the server waits for requests in flight when it is stopped.
GRACE_SECONDS = 3.0
START_TIMEOUT = 30.0
_POLL = 0.005
_cert_lock = threading.Lock()
_cert_cache: dict[str, tuple[bytes, bytes]] = {}


class AccessToken(NamedTuple):
    """The shape azure-core reads from ``get_token`` (``azure.core.credentials.AccessToken``),
    defined here so that the helper does not need azure-core installed to be imported."""

    token: str
    expires_on: int


class StaticTokenCredential:
    """A ``TokenCredential`` for the official Azure SDK that always answers the same token: what
    azure-identity would hand the SDK, minus the identity provider."""

    def __init__(self, token: str, expires_on: int) -> None:
        self._token = AccessToken(token, expires_on)

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return self._token

    def close(self) -> None:
        return None

    def __enter__(self) -> StaticTokenCredential:
        return self

    def __exit__(self, *args: object) -> None:
        return None


class AsyncStaticTokenCredential:
    """The ``AsyncTokenCredential`` twin, for ``azure.mgmt.apimanagement.aio``."""

    def __init__(self, token: str, expires_on: int) -> None:
        self._token = AccessToken(token, expires_on)

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return self._token

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> AsyncStaticTokenCredential:
        return self

    async def __aexit__(self, *args: object) -> None:
        return None


@dataclass
class RunningServer:
    """A started server: where it is, how to call it, and how to steer it.

    ``client`` is a ready :class:`~tenant_access.client.Client` with an owner credential (made on
    first use and closed with the server); ``emulator`` resets, dumps, seeds and faults it.
    """

    url: str
    settings: Settings
    #: The server's certificate when it serves HTTPS (trust it: ``verify=``, ``--cacert``,
    #: ``connection_verify=``); None over plain HTTP.
    cacert: Path | None
    _app: App = field(repr=False)
    _runner: _Runner = field(repr=False)
    _tmp: tempfile.TemporaryDirectory[str] | None = field(repr=False)
    _stopped: bool = field(default=False, repr=False)

    @property
    def endpoint(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:53127`` (the client's ``endpoint``, the SDK's ``base_url``)."""
        return self.url

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    @property
    def api_style(self) -> str:
        return self.settings.api_style

    @property
    def auth(self) -> str:
        return self.settings.auth

    def token(self, role: str = "owner", scope: str = "/", *, expires_in: int = 3600, subject: str = "tests") -> str:
        """A bearer token signed by this server, as ``tenant-access token`` makes (any role/scope)."""
        from tenant_access.security.tokens import mint

        return mint(self.settings.data_dir, self.settings.base_url, subject, role, scope, expires_in,
                    max_lifetime=self.settings.max_token_lifetime, create=True)

    @cached_property
    def owner_token(self) -> str:
        """A root-scope owner token, valid for a day; what ``client`` sends."""
        return self.token(expires_in=24 * 3600)

    def headers(self, role: str = "owner", scope: str = "/") -> dict[str, str]:
        """``Authorization`` for hand-made requests (httpx, requests); empty with ``auth="none"``."""
        if self.settings.auth == "none":
            return {}
        token = self.owner_token if (role, scope) == ("owner", "/") else self.token(role, scope)
        return {"Authorization": f"Bearer {token}"}

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for :class:`~tenant_access.client.Client` or ``AsyncClient``."""
        from tenant_access.client import BearerToken

        options: dict[str, Any] = {"endpoint": self.url, "api_style": self.settings.api_style}
        if self.settings.auth != "none":
            options["credential"] = BearerToken(self.owner_token)
        if self.cacert is not None:
            options["verify"] = str(self.cacert)
        return options

    @cached_property
    def client(self) -> Client:
        from tenant_access.client import Client

        return Client(**self.client_options())

    def async_client(self) -> AsyncClient:
        """A new ``AsyncClient`` for this server; close it (``async with``) yourself."""
        from tenant_access.client import AsyncClient

        return AsyncClient(**self.client_options())

    @cached_property
    def emulator(self) -> EmulatorControls:
        from tenant_access.testing._controls import EmulatorControls

        return EmulatorControls(self.client)

    def advance(self, duration: str) -> dict[str, Any]:
        """Move the server's clock ahead (``advance("P90D")``) for policies, key expiry, key usage
        and SAS expiry; bearer tokens stay on real time. ``emulator.reset()`` returns to real time."""
        return self.emulator.advance(duration)

    def now(self) -> _dt.datetime:
        """The server's now, as moved by :meth:`advance` (sign shared access signatures against it)."""
        return _dt.datetime.fromisoformat(self.emulator.clock()["now"].replace("Z", "+00:00"))
    def events(self, last: int = 100) -> list[dict[str, Any]]:
        """The newest events the server committed, as CloudEvents (needs the emulator controls)."""
        return self.emulator.events(last)

    def azure_credential(self, role: str = "owner", scope: str = "/") -> StaticTokenCredential:
        """A credential for ``azure.mgmt.apimanagement.ApiManagementClient``."""
        return StaticTokenCredential(self.token(role, scope, expires_in=24 * 3600), int(time.time()) + 24 * 3600)

    def async_azure_credential(self, role: str = "owner", scope: str = "/") -> AsyncStaticTokenCredential:
        return AsyncStaticTokenCredential(self.token(role, scope, expires_in=24 * 3600), int(time.time()) + 24 * 3600)

    def stop(self) -> None:
        """Stop serving, close the store and the client, and delete a temporary data directory.
        Safe to call twice. Raises what went wrong while the server shut down, if anything did."""
        if self._stopped:
            return
        self._stopped = True
        try:
            if "client" in self.__dict__:
                self.client.close()
            self._runner.stop()
        finally:
            if self._tmp is not None:
                self._tmp.cleanup()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *args: object) -> None:
        self.stop()


def _self_signed(data_dir: Path) -> Path:
    """The certificate pair in ``<data_dir>/tls`` as the server makes it, generated once per
    process and copied: key generation is most of a TLS start otherwise."""
    from tenant_access import tls

    with _cert_lock:
        if "pair" not in _cert_cache:
            _cert_cache["pair"] = tls.generate(_dt.datetime.now(_dt.UTC))
        cert_pem, key_pem = _cert_cache["pair"]
    directory = tls.tls_dir(data_dir)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    (directory / tls.KEY_FILE).touch(mode=0o600)
    (directory / tls.KEY_FILE).write_bytes(key_pem)
    (directory / tls.CERT_FILE).write_bytes(cert_pem)
    return directory / tls.CERT_FILE


_template_lock = threading.Lock()
_template: list[tempfile.TemporaryDirectory[str]] = []
_STORE_FILE = "tenant-access.db"


def _template_dir() -> Path:
    """A migrated, empty store and its master key, made once per process (in a thread of its own,
    so that a caller inside a running event loop can start servers too)."""
    with _template_lock:
        if not _template:
            from tenant_access.config import Settings
            from tenant_access.runtime import open_store_for

            made = tempfile.TemporaryDirectory(prefix="tenant-access-template-")
            store = open_store_for(Settings(data_dir=Path(made.name)))
            errors: list[BaseException] = []

            def build() -> None:
                async def cycle() -> None:
                    await store.open()
                    await store.close()

                try:
                    asyncio.run(cycle())
                except BaseException as exc:
                    errors.append(exc)

            worker = threading.Thread(target=build, name="tenant-access-template")
            worker.start()
            worker.join()
            if errors:
                made.cleanup()
                raise errors[0]
            _template.append(made)
        return Path(_template[0].name)


def _fresh_store(data_dir: Path) -> None:
    """Copy the template store into ``data_dir`` and give it a signing key of its own.

    A throwaway store gains nothing from durability, and the fsyncs of creating one (a migration
    per transaction, two key files) are most of a start on a busy disk; copying skips them all.
    The master key is shared between the copies (it has to match the store's check value); the
    signing key is not, so a token of one test's server is refused by another's.
    """
    import base64
    import os
    import secrets
    import shutil

    from tenant_access.security.master_keys import KEYRING_DIR
    from tenant_access.security.tokens import SIGNING_KEY_BYTES, SIGNING_KEY_FILE

    template = _template_dir()
    for source in template.iterdir():
        if source.name.startswith(_STORE_FILE):
            shutil.copy2(source, data_dir / source.name)
        elif source.name == KEYRING_DIR:
            shutil.copytree(source, data_dir / source.name)
    fd = os.open(data_dir / SIGNING_KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(base64.b64encode(secrets.token_bytes(SIGNING_KEY_BYTES)) + b"\n")


def start_server(
    *,
    api_style: str = "seed",
    auth: str = "strict",
    tls: bool = False,
    seed: Mapping[str, Any] | str | Path | None = None,
    data_dir: str | Path | None = None,
    emulator_controls: bool | None = True,
    **settings: Any,
) -> RunningServer:
    """Start a server on a free port of 127.0.0.1 and answer once it accepts connections.

    ``api_style`` is ``seed`` or ``azure`` (which needs ``tls=True`` for the Azure SDK: azure-core
    sends bearer tokens only over HTTPS); ``auth`` is ``strict``, ``emulator`` or ``none``;
    ``seed`` a seed document (mapping or YAML/JSON file) provisioned before the first request;
    ``data_dir`` keeps the store somewhere you choose (default: a temporary directory, deleted at
    stop); ``emulator_controls=None`` leaves them to the server's default for the ``auth`` mode.
    Other keywords are :class:`~tenant_access.config.Settings` fields. ``TENANT_ACCESS_*``
    environment variables are ignored, so a developer's shell cannot change what a test sees.
    """
    from tenant_access import seeding
    from tenant_access.config import Settings
    from tenant_access.http.app import create_app
    from tenant_access.server import bind

    services = None
    if seed is not None:
        document = seeding.load_file(Path(seed)) if isinstance(seed, str | Path) else seed
        services = seeding.parse(document)
    tmp = None
    if data_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="tenant-access-")
        data_dir = tmp.name
    try:
        if tmp is not None and settings.get("database_url") is None and settings.get("master_key") is None:
            _fresh_store(Path(data_dir))
        # Delivery on the server's own loop, in the test's process: no child process to start per server.
        settings.setdefault("event_delivery", "inline")
        config = Settings(data_dir=Path(data_dir), host="127.0.0.1", port=0, api_style=api_style, auth=auth, tls=tls,
                          emulator_controls=emulator_controls, **settings)
        cacert = None
        if config.tls and config.tls_cert is None:
            cacert = _self_signed(config.data_dir)
        elif config.tls_cert is not None:
            cacert = config.tls_cert
        sock = bind("127.0.0.1", 0)
        port = sock.getsockname()[1]
        if config.public_url is None:
            # As ``serve`` does: the listening address, with the port it got, is the public URL.
            config = dataclasses.replace(config, public_url=f"{'https' if config.tls else 'http'}://127.0.0.1:{port}")
        try:
            app = create_app(config)
        except BaseException:
            sock.close()
            raise
        runner = _Runner(app, config, sock, cacert, services)
        runner.start()
    except BaseException:
        if tmp is not None:
            tmp.cleanup()
        raise
    scheme = "https" if config.tls else "http"
    return RunningServer(f"{scheme}://127.0.0.1:{port}", config, cacert, app, runner, tmp)


@contextmanager
def run_server(**options: Any) -> Iterator[RunningServer]:
    """:func:`start_server` as a context manager: the server stops (and its temporary data goes)
    when the block ends, however it ends."""
    server = start_server(**options)
    try:
        yield server
    finally:
        server.stop()


class _Runner:
    """The thread that owns the server's event loop, from start-up to the store's close."""

    def __init__(self, app: App, settings: Settings, sock: socket.socket, cacert: Path | None,
                 services: list[Any] | None) -> None:
        self.app = app
        self.settings = settings
        self.sock = sock
        self.cacert = cacert
        self.services = services
        self.loop = asyncio.new_event_loop()
        self.stop_event: asyncio.Event
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=f"tenant-access-{sock.getsockname()[1]}", daemon=True)

    def start(self) -> None:
        self.thread.start()
        if not self.ready.wait(START_TIMEOUT):
            raise RuntimeError("the tenant-access server did not start in time")
        if self.error is not None:
            self.thread.join(GRACE_SECONDS + 10)
            raise self.error

    def stop(self) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.stop_event.set)
            self.thread.join(GRACE_SECONDS + 10)
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        loop = self.loop
        try:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # handed to the starting thread, or logged by it after start
            self.error = exc
        finally:
            self.ready.set()
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                asyncio.set_event_loop(None)
                loop.close()
                self.sock.close()

    async def _serve(self) -> None:
        import uvicorn

        from tenant_access.server import uvicorn_options

        self.stop_event = asyncio.Event()
        app = self.app
        await app.startup()
        try:
            if self.services:
                from tenant_access import seeding

                await seeding.apply(app.use_cases, seeding.SYSTEM, self.services)
            ssl_key = self.settings.tls_key or (self.cacert.parent / "key.pem" if self.cacert else None)
            config = uvicorn.Config(
                app, lifespan="off", log_config=None, access_log=False, server_header=False,
                timeout_graceful_shutdown=int(GRACE_SECONDS), timeout_keep_alive=30,
                **uvicorn_options(self.settings),
                ssl_certfile=str(self.cacert) if self.cacert else None,
                ssl_keyfile=str(ssl_key) if ssl_key else None,
            )
            config.load()
            server = uvicorn.Server(config)
            server.lifespan = config.lifespan_class(config)
            await server.startup(sockets=[self.sock])
            await server.on_tick(0)  # the Date header
            ticker = asyncio.create_task(self._tick(server))
            self.ready.set()
            try:
                await self.stop_event.wait()
            finally:
                ticker.cancel()
                await self._shutdown(server)
        finally:
            await app.shutdown()

    @staticmethod
    async def _tick(server: Any) -> None:
        while True:
            await asyncio.sleep(1)
            await server.on_tick(0)

    @staticmethod
    async def _shutdown(server: Any) -> None:
        """Answer what is in flight, then drop every connection at once.

        Idle keep-alive connections are aborted rather than closed: closing a TLS connection waits
        for the client's close_notify, which an idle pooled client never sends, and the socket
        would outlive the loop (a ResourceWarning in the user's test run).
        """
        for listener in server.servers:
            listener.close()
        transports = [connection.transport for connection in server.server_state.connections]
        for connection in list(server.server_state.connections):
            connection.shutdown()  # idle: closed now; busy: closed after its response
        deadline = time.monotonic() + GRACE_SECONDS
        while server.server_state.connections and time.monotonic() < deadline:
            await asyncio.sleep(_POLL)
        for task in list(server.server_state.tasks):
            task.cancel()  # past the grace period: in-flight requests are cut off
        for transport in transports + [c.transport for c in server.server_state.connections]:
            transport.abort()
        for listener in server.servers:
            await listener.wait_closed()
        for _ in range(3):  # the aborts close their sockets on the next turns of the loop
            await asyncio.sleep(0)
