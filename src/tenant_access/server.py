"""Running the server: bind, provision the demo if asked, serve until told to stop.

The socket is bound before the application starts, so ``--port 0`` can report the port it got
and the process is reachable as soon as the "listening" line is printed.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from tenant_access.config import Settings

log = logging.getLogger("tenant_access")

DEMO_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
DEMO_RESOURCE_GROUP = "demo-rg"
DEMO_SERVICE = "demo-apim"
#: The interpreter lock's switch interval while serving (see run_uvicorn).
SWITCH_INTERVAL = 0.0001


@dataclass(frozen=True)
class Listening:
    host: str
    port: int
    scheme: str = "http"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def configure_logging(level: str, log_format: str = "auto", stream: TextIO | None = None) -> None:
    """JSON lines when stderr is not a terminal (or ``--log-format json``); see :mod:`tenant_access.logs`."""
    from tenant_access import logs

    logs.configure(level, log_format, stream if stream is not None else sys.stderr)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket; an address already taken stops the start with one line naming it and
    the way out (exit code 2, as for any usage error), instead of a traceback."""
    try:
        return _bind(host, port)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        shown = Listening(host, port).url.removeprefix("http://")
        print(f"tenant-access: {shown} is already in use (another server running?); choose another port "
              "with --port N, or --port 0 for any free one", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to its hard limit: every connection holds a file
    descriptor, and a soft limit of 1,024 (a common default) would refuse the thousandth client
    with EMFILE however little it asks. Answers the limit now in force."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard and (hard == resource.RLIM_INFINITY or soft < hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):  # e.g. an infinite hard limit the kernel will not grant as soft
            return soft
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and
    # without it every answer written in two parts waits ~40 ms for a delayed ACK (uvloop hid this).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def provision(settings: Settings, *, demo: bool, seed: Path | None) -> list[str]:
    """Provision the demo service (on a store without it) and the seed file, as the system, in one
    opening of the store before the server takes requests; answers the lines to print.

    A bad seed file stops the start with every problem named: a test rig that silently lacks a
    service fails later and further from the cause.
    """
    import dataclasses

    from tenant_access import seeding
    from tenant_access.domain.errors import TenantAccessError
    from tenant_access.domain.models import ServiceRef, ServiceSpec
    from tenant_access.runtime import open_store_for
    from tenant_access.service import TenantAccess

    services = None
    if seed is not None:
        try:
            services = seeding.parse(seeding.load_file(seed))
        except seeding.SeedError as exc:
            raise SystemExit(f"tenant-access: {seed}: {exc}") from None
    store = open_store_for(settings)
    await store.open()
    lines = []
    try:
        app = TenantAccess(store)
        if demo and not await store.list_services(DEMO_SUBSCRIPTION, DEMO_RESOURCE_GROUP):
            ref = ServiceRef(DEMO_SUBSCRIPTION, DEMO_RESOURCE_GROUP, DEMO_SERVICE)
            spec = ServiceSpec("westeurope", "Developer", 1, "admin@example.com", "Demo")
            await app.put_service(dataclasses.replace(seeding.SYSTEM, request_id="demo"), ref, spec)
        if services is not None:
            try:
                results = await seeding.apply(app, seeding.SYSTEM, services)
            except TenantAccessError as exc:
                raise SystemExit(f"tenant-access: {seed}: {exc.message}") from None
            counts = {name: sum(r.result == name for r in results) for name in ("created", "updated", "unchanged")}
            lines.append(f"seeded {len(results)} service(s) from {seed}: "
                         + ", ".join(f"{n} {name}" for name, n in counts.items()))
    finally:
        await store.close()
    return lines


DEMO_TOKEN_LIFETIME = 3600


def demo_token(settings: Settings) -> str | None:
    """A short-lived owner token for the demo's curl commands; none when authentication is off."""
    if settings.auth == "none":
        return None
    from tenant_access.security.signing_keys import load_current
    from tenant_access.security.tokens import issue_token, own_audiences

    return issue_token(load_current(settings.data_dir), "demo", "owner", "/",
                       min(DEMO_TOKEN_LIFETIME, settings.max_token_lifetime),
                       aud=(settings.token_audience or "").split(",")[0] or own_audiences(settings.base_url)[0],
                       iss=settings.base_url, max_lifetime=settings.max_token_lifetime)


def demo_commands(url: str, cacert: Path | None = None, token: str | None = None) -> str:
    curl = f"curl -s --cacert '{cacert}'" if cacert else "curl -s"
    if token is not None:
        curl += ' -H "Authorization: Bearer $TOKEN"'
    base = (f"{url}/subscriptions/{DEMO_SUBSCRIPTION}/resourceGroups/{DEMO_RESOURCE_GROUP}"
            f"/providers/Microsoft.ApiManagement/service/{DEMO_SERVICE}")
    v = "api-version=2024-05-01"
    intro = [] if token is None else [
        f"An owner token, valid for {DEMO_TOKEN_LIFETIME // 60} minutes (make more with `tenant-access token`):",
        f"  export TOKEN={token}",
        "",
    ]
    return "\n".join([
        *intro,
        "Try it (the seed call first):",
        f"  {curl} -X POST '{base}/tenant/access/regenerateSecondaryKey?{v}'",
        f"  {curl} -X POST '{base}/tenant/access/listSecrets?{v}'",
        f"  {curl} '{base}/tenant/access?{v}'",
        f"  {curl} '{base}/tenant?{v}'",
        f"  {curl} -X POST '{base}/tenant/access/regeneratePrimaryKey?{v}'",
        "",
    ])


def tls_files(settings: Settings) -> tuple[Path, Path] | None:
    """The certificate and key to serve, or None for plain HTTP; prints where the certificate is,
    because a client has to be told to trust a self-signed one."""
    if not settings.tls:
        return None
    from tenant_access import tls

    if settings.tls_cert is not None and settings.tls_key is not None:
        try:
            tls.check_pair(settings.tls_cert, settings.tls_key)
        except ValueError as exc:
            raise SystemExit(f"tenant-access: {exc}") from None
        cert, key = settings.tls_cert, settings.tls_key
        print(f"TLS certificate: {cert} (given with --tls-cert)", flush=True)
    else:
        pair = tls.ensure_self_signed(settings.data_dir)
        cert, key = pair.cert, pair.key
        made = "generated now" if pair.generated else "self-signed"
        print(f"TLS certificate: {cert} ({made}; trust it with curl --cacert {cert}, "
              f"REQUESTS_CA_BUNDLE={cert} or connection_verify='{cert}')", flush=True)
    return cert, key


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """What every uvicorn this package runs is configured with (the server and the in-process
    test server alike): the guarded protocol, and proxy headers believed only from the proxies
    ``--forwarded-allow-ips`` names. uvicorn's own default believes any loopback peer, so a local
    forwarder (ssh -L, a sidecar) would let its clients pick their address: escape the failure
    limiter and forge the client of audit records."""
    from tenant_access.http.protocol import protocol_class

    proxies = settings.forwarded_allow_ips
    if proxies is not None and "*" in proxies.split(","):
        log.warning("--forwarded-allow-ips '*': any client may set its own address with X-Forwarded-For; "
                    "use only when every connection comes through a proxy")
    return {
        "http": protocol_class(settings.header_timeout, settings.api_style, request_timeout=settings.request_timeout,
                               max_connections_per_address=settings.max_connections_per_address),
        "proxy_headers": proxies is not None,
        "forwarded_allow_ips": proxies or "",
    }


def serve(settings: Settings, *, demo: bool = False) -> None:
    configure_logging(settings.log_level, settings.log_format)
    ssl_files = tls_files(settings)
    if settings.auth == "emulator":
        log.warning("auth mode 'emulator': bearer token signatures are NOT checked; use only on a test rig")
    elif settings.auth == "none":
        log.warning("auth mode 'none': every request is served without authentication; use only on a test rig")
    raise_fd_limit()  # inherited by --workers' workers
    sock = bind(settings.host, settings.port)
    listening = Listening(settings.host, sock.getsockname()[1], "https" if ssl_files else "http")
    if settings.public_url is None:
        # The listening address (with the port actually bound, for --port 0) is the default public
        # URL: the issuer of the server's tokens and the base of its OpenID document.
        import dataclasses

        settings = dataclasses.replace(settings, public_url=listening.url)
    if settings.workers > 1:
        from tenant_access import workers as supervisor

        supervisor.supervise(settings, sock, listening, ssl_files, demo=demo)
        return
    if demo or settings.seed is not None:
        for line in asyncio.run(provision(settings, demo=demo, seed=settings.seed)):
            print(line, flush=True)
    from tenant_access.http.app import create_app

    app = create_app(settings)
    if app.emulator is not None:
        log.warning("emulator controls are on at /_emulator/ (owner only): reset, state, seed, faults")

    def announce() -> None:
        """The "listening" line comes last: a script that waits for it finds everything start-up
        had to say (batched log lines included) already written."""
        announce_listening(settings, listening, ssl_files, app.store.describe(), demo=demo)

    app.on_started = announce
    run_uvicorn(app, settings, sock, ssl_files)


def announce_listening(settings: Settings, listening: Listening, ssl_files: tuple[Path, Path] | None,
                       store: str, *, demo: bool, workers: int = 1) -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()
    if demo:
        print(demo_commands(listening.url, ssl_files[0] if ssl_files else None, demo_token(settings)), flush=True)
    from tenant_access import served

    served.record(settings.data_dir, listening.url, settings.base_url)
    shown = f", workers: {workers}" if workers > 1 else ""
    print(f"tenant-access listening on {listening.url} (api style: {settings.api_style}, "
          f"store: {store}{shown})", flush=True)


def run_uvicorn(app: Any, settings: Settings, sock: socket.socket, ssl_files: tuple[Path, Path] | None,
                *, worker: bool = False) -> None:
    """Serve ``app`` on the bound ``sock`` until a signal; a worker of ``--workers`` says nothing
    at its stop (its supervisor does)."""
    import uvicorn

    # A durable write hands the interpreter lock to the SQLite committer thread twice (to start its
    # COMMIT, and to answer once it is on disk); CPython's default 5 ms switch interval lets a
    # busy event loop keep the lock that long each time, so a group commit waited for the loop
    # rather than for the disk. 0.1 ms measured +11 to +13 % rotations at 8 connections, with no
    # more CPU per rotation (docs/performance.md); it only matters when a thread waits for the lock.
    sys.setswitchinterval(SWITCH_INTERVAL)
    server_class = _stopping_server(quiet=worker)
    config = uvicorn.Config(
        app,
        log_config=None,
        log_level="debug" if settings.log_level == "debug" else "warning",
        access_log=False,
        lifespan="on",
        server_header=False,
        timeout_graceful_shutdown=3,
        timeout_keep_alive=30,
        **uvicorn_options(settings),
        ssl_certfile=str(ssl_files[0]) if ssl_files else None,
        ssl_keyfile=str(ssl_files[1]) if ssl_files else None,
    )
    try:
        server_class(config).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled; it has been answered already
        raise SystemExit(130) from None


def _stopping_server(*, quiet: bool = False) -> type[Any]:
    import uvicorn

    class StoppingServer(uvicorn.Server):
        """Says "stopping" at the first Ctrl-C or SIGTERM: a silent pause reads as a hang."""

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if not self.should_exit and not quiet:
                print("tenant-access: stopping…", flush=True)
            super().handle_exit(sig, frame)

    return StoppingServer
