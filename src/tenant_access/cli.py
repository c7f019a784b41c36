"""The ``tenant-access`` command."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from tenant_access import __version__
from tenant_access.cli_help import LazyGroup, ServeCommand, lazy
from tenant_access.cli_store import store_options
from tenant_access.config import API_STYLES, AUTH_MODES, LOG_FORMATS, METRICS_ACCESS, Settings

if TYPE_CHECKING:
    from tenant_access.service import TenantAccess

T = TypeVar("T")


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="tenant-access")
def main() -> None:
    """A self-hostable Azure API Management tenant access API: access configurations and key rotation."""


@main.command(cls=ServeCommand)
@click.option("--host", help="Address to listen on. [env TENANT_ACCESS_HOST; default 127.0.0.1]")
@click.option("--port", type=int, help="TCP port, 0 for any free one. [env TENANT_ACCESS_PORT; default 8700]")
@click.option("--data-dir", type=click.Path(path_type=Path),
              help="Where the store lives. [env TENANT_ACCESS_DATA_DIR; default ~/.local/share/tenant-access]")
@click.option("--workers", type=click.IntRange(1),
              help="Server processes sharing the port (one store); a supervising parent restarts any that dies. "
              "[env TENANT_ACCESS_WORKERS; default 1]")
@click.option("--database-url", help="Database URL: sqlite:///FILE or postgresql://USER@HOST/DB; default the "
              "SQLite file in the data dir. [env TENANT_ACCESS_DATABASE_URL]")
@click.option("--migrate/--no-migrate", default=None,
              help="Apply pending schema migrations at start (default), or refuse to start on an older schema. "
              "[env TENANT_ACCESS_MIGRATE]")
@click.option("--database-pool-size", type=click.IntRange(1),
              help="PostgreSQL connections per process. [env TENANT_ACCESS_DATABASE_POOL_SIZE; default 10]")
@click.option("--api-style", type=click.Choice(API_STYLES),
              help="Wire format. [env TENANT_ACCESS_API_STYLE; default seed]")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              help="[env TENANT_ACCESS_LOG_LEVEL; default info]")
@click.option("--tls", is_flag=True, default=None,
              help="Serve HTTPS; makes a self-signed certificate in <data-dir>/tls on first start "
              "unless --tls-cert/--tls-key are given. [env TENANT_ACCESS_TLS]")
@click.option("--tls-cert", type=click.Path(path_type=Path, dir_okay=False),
              help="PEM certificate to serve (implies --tls). [env TENANT_ACCESS_TLS_CERT]")
@click.option("--tls-key", type=click.Path(path_type=Path, dir_okay=False),
              help="PEM private key of --tls-cert. [env TENANT_ACCESS_TLS_KEY]")
@click.option("--auth", type=click.Choice(AUTH_MODES),
              help="strict: verify every credential; emulator: accept any well-formed unexpired bearer token; "
              "none: no authentication. [env TENANT_ACCESS_AUTH; default strict]")
@click.option("--token-keys", help="Comma-separated PEM or JWKS (.json) files of extra token verification keys. "
              "[env TENANT_ACCESS_TOKEN_KEYS]")
@click.option("--token-audience", help="Comma-separated accepted aud values. [env TENANT_ACCESS_TOKEN_AUDIENCE]")
@click.option("--token-issuer", help="Comma-separated accepted iss of tokens verified by --token-keys; the "
              "server's own tokens always need its own issuer (the public URL). [env TENANT_ACCESS_TOKEN_ISSUER]")
@click.option("--public-url", help="The URL clients reach this server at, e.g. https://keys.example.com: the issuer "
              "of its tokens, one of its audiences, the base of its OpenID document. [env TENANT_ACCESS_PUBLIC_URL; "
              "default the listening address]")
@click.option("--max-token-lifetime", type=click.IntRange(60, 366 * 24 * 3600),
              help="Seconds a bearer token may live; also how long a retired signing key keeps verifying. "
              "[env TENANT_ACCESS_MAX_TOKEN_LIFETIME; default 86400]")
@click.option("--max-sas-lifetime", type=click.IntRange(60, 366 * 24 * 3600),
              help="Seconds ahead a SharedAccessSignature's expiry may lie. [env TENANT_ACCESS_MAX_SAS_LIFETIME; "
              "default 2592000, 30 days]")
@click.option("--auth-failures-per-minute", type=click.IntRange(1),
              help="Failed authentications per client address a minute before 429. [default 20]")
@click.option("--rate-limit", type=click.FloatRange(0), help="Requests a second per principal; 0 is off. [default 0]")
@click.option("--regenerate-rate-limit", type=click.FloatRange(0),
              help="Key regenerations a second per principal; 0 is off. [default 0]")
@click.option("--header-timeout", type=click.FloatRange(0.1),
              help="Seconds a client may take to send request headers. [env TENANT_ACCESS_HEADER_TIMEOUT; default 10]")
@click.option("--request-timeout", type=click.FloatRange(0.1),
              help="Seconds a client may take to send a whole request, body included, before a 408. "
              "[env TENANT_ACCESS_REQUEST_TIMEOUT; default 30]")
@click.option("--max-connections-per-address", type=click.IntRange(1),
              help="Open connections one client address may hold; more are answered 429. "
              "[env TENANT_ACCESS_MAX_CONNECTIONS_PER_ADDRESS; default 128]")
@click.option("--forwarded-allow-ips",
              help="Comma-separated IPs/CIDRs of reverse proxies whose X-Forwarded-For and X-Forwarded-Proto "
              "are believed; '*' believes anyone (unsafe). [env TENANT_ACCESS_FORWARDED_ALLOW_IPS; default none: "
              "the headers are ignored]")
@click.option("--console/--no-console", default=None,
              help="Serve the web console at /console. [env TENANT_ACCESS_CONSOLE; default on]")
@click.option("--metrics", type=click.Choice(METRICS_ACCESS),
              help="Who may read /metrics: loopback clients without credentials (others with a root-scope "
              "credential), public, auth (root-scope credential), off. [env TENANT_ACCESS_METRICS; default loopback]")
@click.option("--log-format", type=click.Choice(LOG_FORMATS),
              help="auto: JSON lines unless stderr is a terminal. [env TENANT_ACCESS_LOG_FORMAT; default auto]")
@click.option("--emulator-controls/--no-emulator-controls", default=None,
              help="Serve the owner-only /_emulator/ endpoints (reset, state, seed, faults). "
              "[env TENANT_ACCESS_EMULATOR_CONTROLS; default on with --auth emulator or none, off with strict]")
@click.option("--seed", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="YAML or JSON file of services to provision at start; re-applying it is safe "
              "(docs/testing.md). [env TENANT_ACCESS_SEED]")
@click.option("--audit-retention",
              help="How long audit records are kept, by kind, e.g. reads=90d,refusals=30d,changes=forever; kinds "
              "not named keep their default. [env TENANT_ACCESS_AUDIT_RETENTION; default "
              "reads=90d,refusals=90d,changes=forever]")
@click.option("--scheduler", type=click.Choice(["on", "off"]),
              help="Run due rotation policy actions in this process (docs/rotation.md); off for replicas that "
              "should not. [env TENANT_ACCESS_SCHEDULER; default on]")
@click.option("--allow-private-event-destinations", is_flag=True, default=None,
              help="Let event subscriptions deliver to loopback, private, link-local and metadata addresses (tests, "
              "local use). [env TENANT_ACCESS_ALLOW_PRIVATE_EVENT_DESTINATIONS; default refused]")
@click.option("--event-retry-window", type=click.FloatRange(0),
              help="Seconds an event delivery is retried before it is dead-lettered. "
              "[env TENANT_ACCESS_EVENT_RETRY_WINDOW; default 86400]")
@click.option("--event-retry-delay", type=click.FloatRange(0.01),
              help="Seconds before the first retry of a failed delivery; doubling after (at most 10 minutes). "
              "[env TENANT_ACCESS_EVENT_RETRY_DELAY; default 2]")
@click.option("--event-attempt-timeout", type=click.FloatRange(0.1),
              help="Seconds one event delivery attempt may take. [env TENANT_ACCESS_EVENT_ATTEMPT_TIMEOUT; default 10]")
@click.option("--event-concurrency", type=click.IntRange(1),
              help="Event deliveries in flight at once per process. [env TENANT_ACCESS_EVENT_CONCURRENCY; default 16]")
@click.option("--event-delivery", type=click.Choice(["process", "inline", "off"]),
              help="Where event deliveries are sent from: process (a supervised child process, on another core), "
              "inline (the server's own event loop), off (another replica or a separate `tenant-access events "
              "deliver`). [env TENANT_ACCESS_EVENT_DELIVERY; default process]")
@click.option("--demo", is_flag=True, help="Provision a demo service on an empty store and print curl commands.")
def serve(demo: bool, **options: object) -> None:
    """Run the server."""
    from tenant_access.server import serve as run

    if options.get("scheduler") is not None:
        options["scheduler"] = options["scheduler"] == "on"

    run(_settings(options), demo=demo)


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
@click.option("--data-dir", type=click.Path(path_type=Path))
@click.option("--database-url")
def db_upgrade(**options: object) -> None:
    """Apply pending schema migrations (the server also does this at start)."""
    import asyncio

    from tenant_access.runtime import open_store_for

    settings = _settings({**options, "migrate": True})  # whatever TENANT_ACCESS_MIGRATE says: this is the upgrade
    store = open_store_for(settings)

    async def upgrade() -> None:
        await store.open()
        await store.close()

    with _migration_progress():
        asyncio.run(upgrade())
    click.echo(f"schema up to date: {store.describe()}")


@contextlib.contextmanager
def _migration_progress() -> Iterator[None]:
    """Each migration as it is applied, on standard error: the stores log them, whichever is in use."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(lambda record: record.getMessage().startswith("applied migration"))
    logger = logging.getLogger("tenant_access.storage")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _settings(options: dict[str, object]) -> Settings:
    from tenant_access.cli_store import settings_from

    return settings_from(options)


@main.command()
@click.option("--data-dir", type=click.Path(path_type=Path),
              help="The server's data dir, whose signing secret signs the token. [env TENANT_ACCESS_DATA_DIR]")
@click.option("--public-url", help="The server's public URL, the token's issuer; default what the server derives "
              "from --host/--port. [env TENANT_ACCESS_PUBLIC_URL]")
@click.option("--port", type=int, help="The server's port, when it has no --public-url. [env TENANT_ACCESS_PORT]")
@click.option("--role", type=click.Choice(["reader", "key-operator", "owner"]), default="owner", show_default=True)
@click.option("--scope", default="/", show_default=True,
              help="/, /subscriptions/ID, .../resourceGroups/RG or .../service/NAME")
@click.option("--expires-in", type=click.IntRange(1), default=3600, show_default=True,
              help="Lifetime in seconds, at most the server's maximum token lifetime "
              "(TENANT_ACCESS_MAX_TOKEN_LIFETIME, default 86400).")
@click.option("--subject", default="cli", show_default=True, help="The sub claim: who the token speaks for.")
def token(data_dir: Path | None, public_url: str | None, port: int | None, role: str, scope: str, expires_in: int,
          subject: str) -> None:
    """Print a bearer token for the server that uses DATA_DIR, issued by its public URL."""
    from tenant_access.security.errors import KeyMaterialError
    from tenant_access.security.signing_keys import load_current
    from tenant_access.security.tokens import issue_token, own_audiences

    settings = _settings({"data_dir": data_dir, "public_url": public_url, "port": port})
    if settings.public_url is None and port is None:
        # No URL given: the running server of this data dir says what it is (its --port 0 port included).
        from tenant_access import served

        found = served.last(settings.data_dir)
        if found is not None and found.issuer and found.running:
            settings = _settings({"data_dir": data_dir, "public_url": found.issuer})
    if expires_in > settings.max_token_lifetime:
        raise click.UsageError(f"--expires-in may be at most {settings.max_token_lifetime} seconds, the maximum "
                               "token lifetime (TENANT_ACCESS_MAX_TOKEN_LIFETIME)")
    audience = (settings.token_audience or "").split(",")[0] or own_audiences(settings.base_url)[0]
    try:
        secret = load_current(settings.data_dir, create=False)
        click.echo(issue_token(secret, subject, role, scope, expires_in, aud=audience, iss=settings.base_url,
                               max_lifetime=settings.max_token_lifetime))
        _warn_if_unserved(settings.data_dir)
    except KeyMaterialError as exc:
        raise click.UsageError(f"{exc} (start the server once with this --data-dir to create its signing secret)") \
            from None
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def _warn_if_unserved(data_dir: Path) -> None:
    from tenant_access.served import warning

    message = warning(data_dir)
    if message is not None:
        click.echo(message, err=True)


@main.command()
@click.option("--key", envvar="TENANT_ACCESS_SAS_KEY", help="The primary or secondary key. [env TENANT_ACCESS_SAS_KEY]")
@click.option("--key-file", type=click.File("r"), help="Read the key from a file ('-' for standard input).")
@click.option("--uid", default="integration", show_default=True, help="The configuration's principal id.")
@click.option("--expires-in", type=click.IntRange(1), default=3600, show_default=True, help="Seconds from now.")
@click.option("--expiry", type=click.DateTime(["%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S"]),
              help="An absolute UTC expiry instead of --expires-in.")
@click.option("--short", is_flag=True, help="The portal's short form: uid&yyyyMMddHHmm&signature.")
def sas(key: str | None, key_file: object, uid: str, expires_in: int, expiry: object, short: bool) -> None:
    """Print an Authorization header value (SharedAccessSignature ...) signed with KEY, as the portal makes."""
    import datetime as dt
    from typing import TextIO, cast

    from tenant_access.security import sas as sas_tokens

    if key_file is not None:
        key = cast("TextIO", key_file).read().strip()
    if not key:
        raise click.UsageError("give the key with --key, --key-file or TENANT_ACCESS_SAS_KEY")
    when = (cast("dt.datetime", expiry).replace(tzinfo=dt.UTC) if expiry is not None
            else dt.datetime.now(dt.UTC) + dt.timedelta(seconds=expires_in))
    click.echo(sas_tokens.make_sas(uid, key, when, short=short))


@main.group(cls=LazyGroup)
def principals() -> None:
    """Service principals that sign in at the token endpoint (client id + secret)."""


@principals.command("create")
@click.option("--role", type=click.Choice(["reader", "key-operator", "owner"]), required=True)
@click.option("--scope", required=True, help="/, /subscriptions/ID, .../resourceGroups/RG or .../service/NAME")
@click.option("--description", default="", help="Free text, shown in listings.")
@click.option("--data-dir", type=click.Path(path_type=Path))
@click.option("--database-url")
def principals_create(role: str, scope: str, description: str, **options: object) -> None:
    """Create a service principal; its secret is printed once and stored only as a hash."""
    import asyncio

    from tenant_access.cli_store import audit_record
    from tenant_access.domain.keys import utcnow
    from tenant_access.domain.principals import ServicePrincipal
    from tenant_access.runtime import open_store_for
    from tenant_access.security.authorization import normalize_scope
    from tenant_access.security.service_principals import create_service_principal

    try:
        scope = normalize_scope(scope)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    settings = _settings(options)
    created = create_service_principal()
    record = ServicePrincipal(created.client_id, role, scope, description, utcnow(), created.secret_hash)
    store = open_store_for(settings)

    async def save() -> None:
        await store.open()
        try:
            await store.add_principal(record, audit_record(
                "principals.create", f"servicePrincipals/{created.client_id}", f"role={role}; scope={scope}"))
        finally:
            await store.close()

    asyncio.run(save())
    click.echo(f"client id:     {created.client_id}")
    click.echo(f"client secret: {created.secret.reveal()}")
    click.echo(f"role:          {role}")
    click.echo(f"scope:         {scope}")
    click.echo("The secret is shown only now; store it safely.", err=True)


@main.group()
def subscriptions() -> None:
    """Subscriptions that Resource Manager clients (az login) see before they hold a service (Azure mode)."""


@subscriptions.command("add")
@click.argument("subscription_id")
@click.option("--name", required=True, help="The display name (az account list shows it).")
@click.option("--data-dir", type=click.Path(path_type=Path))
@click.option("--database-url")
def subscriptions_add(subscription_id: str, name: str, **options: object) -> None:
    """Declare subscription SUBSCRIPTION_ID (a GUID), or rename a declared one."""
    from tenant_access.domain.rules import is_guid
    from tenant_access.domain.subscriptions import Subscription

    if not is_guid(subscription_id):
        raise click.UsageError("a subscription id is a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")
    name = name.strip()
    if not name or len(name) > 256 or not name.isprintable():
        raise click.UsageError("--name must be 1 to 256 printable characters")
    _with_store(options, lambda app: app.declare_subscription(Subscription(subscription_id, name)))
    click.echo(f"subscription {subscription_id} ({name}) declared")


@subscriptions.command("list")
@click.option("--data-dir", type=click.Path(path_type=Path))
@click.option("--database-url")
def subscriptions_list(**options: object) -> None:
    """Every subscription Resource Manager clients may see: declared ones and those holding services."""
    for sub in _with_store(options, lambda app: app.list_subscriptions()):
        click.echo(f"{sub.id}  {sub.display_name}")


def _with_store(options: dict[str, object], work: Callable[[TenantAccess], Awaitable[T]]) -> T:
    """Run one use case on the store the options (and environment) name, opened for just that."""
    from tenant_access.cli_store import with_store
    from tenant_access.service import TenantAccess

    return with_store(options, lambda store: work(TenantAccess(store)))


@main.group("master-key")
def master_key() -> None:
    """The master keyring that encrypts stored keys: rotate, status, retire."""


@master_key.command("rotate")
@store_options
@click.option("--resume", is_flag=True, help="Only finish an unfinished rotation; never make a new key.")
def master_key_rotate(resume: bool, **options: object) -> None:
    """Move every stored key under a new master key while servers keep running.

    First proves every stored value opens; an interrupted rotation is finished (to the same new
    key) rather than started again. Old keys stay in <data-dir>/master-keys/ until retired.
    """
    from tenant_access import master_key_admin as admin

    _admin(admin.rotate(_settings(options), resume_only=resume, say=click.echo, note=_note))


@main.command("rotate-master-key")
@store_options
def rotate_master_key(**options: object) -> None:
    """Same as `master-key rotate` (kept for existing scripts)."""
    from tenant_access import master_key_admin as admin

    _admin(admin.rotate(_settings(options), resume_only=False, say=click.echo, note=_note))


@master_key.command("status")
@store_options
def master_key_status(**options: object) -> None:
    """Key ids, how many stored values each encrypts, the current one, and any unfinished rotation.
    Exits 1 when some stored value does not open."""
    from tenant_access import master_key_admin as admin

    if not _admin(admin.status(_settings(options), say=click.echo, note=_note)):
        sys.exit(1)


@master_key.command("retire")
@click.argument("key_id")
@store_options
def master_key_retire(key_id: str, **options: object) -> None:
    """Delete master key KEY_ID, refused while any stored value is under it."""
    from tenant_access import master_key_admin as admin

    _admin(admin.retire(_settings(options), key_id, say=click.echo, note=_note))


def _admin(work: Coroutine[Any, Any, T]) -> T:
    import asyncio

    from tenant_access.master_key_admin import AdminError

    try:
        return asyncio.run(work)
    except AdminError as exc:
        raise click.ClickException(str(exc)) from None


def _note(line: str) -> None:
    """Progress on standard error, a line per step or batch: a script (or a test) can follow it."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _audit_group() -> click.Command:
    """``audit list`` asks a server; ``audit export`` and ``audit prune`` open the store itself."""
    from tenant_access.cli_audit import COMMANDS as STORE_COMMANDS
    from tenant_access.cli_client import audit

    for command in STORE_COMMANDS:
        audit.add_command(command)
    return audit


# The commands of other modules, imported when named (see LazyGroup): the API over HTTP, the
# store's audit export and prune, the signing key, events, and the Azure CLI wrapper.
main.lazy.update({
    "services": lazy("cli_client", "services"),
    "access": lazy("cli_client", "access"),
    "keys": lazy("cli_client", "keys"),
    "emulator": lazy("cli_client", "emulator"),
    "audit": _audit_group,
    "signing-key": lazy("cli_identity", "signing_key"),
    "events": lazy("cli_events", "events_group"),
    "azure-cli": lazy("cli_azure", "azure_cli"),
})
assert isinstance(principals, LazyGroup)
principals.lazy.update({name: lazy("cli_identity", f"principals_{name.replace('-', '_')}")
                        for name in ("list", "show", "disable", "enable", "delete", "rotate-secret")})
