"""The ``tenant-access`` command."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from tenant_access import __version__
from tenant_access.cli_audit import COMMANDS as AUDIT_STORE_COMMANDS
from tenant_access.cli_client import COMMANDS as CLIENT_COMMANDS
from tenant_access.cli_client import audit as audit_group
from tenant_access.config import API_STYLES, AUTH_MODES, LOG_FORMATS, METRICS_ACCESS, Settings


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="tenant-access")
def main() -> None:
    """A self-hostable Azure API Management tenant access API: access configurations and key rotation."""


@main.command()
@click.option("--host", help="Address to listen on. [env TENANT_ACCESS_HOST; default 127.0.0.1]")
@click.option("--port", type=int, help="TCP port, 0 for any free one. [env TENANT_ACCESS_PORT; default 8700]")
@click.option("--data-dir", type=click.Path(path_type=Path),
              help="Where the store lives. [env TENANT_ACCESS_DATA_DIR; default ~/.local/share/tenant-access]")
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
@click.option("--token-issuer", help="Required iss of bearer tokens. [env TENANT_ACCESS_TOKEN_ISSUER]")
@click.option("--auth-failures-per-minute", type=click.IntRange(1),
              help="Failed authentications per client address a minute before 429. [default 20]")
@click.option("--rate-limit", type=click.FloatRange(0), help="Requests a second per principal; 0 is off. [default 0]")
@click.option("--regenerate-rate-limit", type=click.FloatRange(0),
              help="Key regenerations a second per principal; 0 is off. [default 0]")
@click.option("--header-timeout", type=click.FloatRange(0.1),
              help="Seconds a client may take to send request headers. [env TENANT_ACCESS_HEADER_TIMEOUT; default 10]")
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
@click.option("--demo", is_flag=True, help="Provision a demo service on an empty store and print curl commands.")
def serve(demo: bool, **options: object) -> None:
    """Run the server."""
    from tenant_access.server import serve as run

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
    try:
        return Settings.from_env(None, **options)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


@main.command()
@click.option("--data-dir", type=click.Path(path_type=Path),
              help="The server's data dir, whose signing secret signs the token. [env TENANT_ACCESS_DATA_DIR]")
@click.option("--role", type=click.Choice(["reader", "key-operator", "owner"]), default="owner", show_default=True)
@click.option("--scope", default="/", show_default=True,
              help="/, /subscriptions/ID, .../resourceGroups/RG or .../service/NAME")
@click.option("--expires-in", type=click.IntRange(1, 366 * 24 * 3600), default=3600, show_default=True,
              help="Lifetime in seconds.")
@click.option("--subject", default="cli", show_default=True, help="The sub claim: who the token speaks for.")
def token(data_dir: Path | None, role: str, scope: str, expires_in: int, subject: str) -> None:
    """Print a bearer token for the server that uses DATA_DIR."""
    from tenant_access.security.errors import KeyMaterialError
    from tenant_access.security.tokens import issue_token, load_or_create_signing_key

    settings = _settings({"data_dir": data_dir})
    try:
        secret = load_or_create_signing_key(settings.data_dir, create=False)
        click.echo(issue_token(secret, subject, role, scope, expires_in))
    except (KeyMaterialError, ValueError) as exc:
        raise click.UsageError(f"{exc} (start the server once with this --data-dir to create its signing secret)") \
            from None


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


@main.group()
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
            await store.add_principal(record)
        finally:
            await store.close()

    asyncio.run(save())
    click.echo(f"client id:     {created.client_id}")
    click.echo(f"client secret: {created.secret.reveal()}")
    click.echo(f"role:          {role}")
    click.echo(f"scope:         {scope}")
    click.echo("The secret is shown only now; store it safely.", err=True)


@main.command("rotate-master-key")
@click.option("--data-dir", type=click.Path(path_type=Path))
@click.option("--database-url")
def rotate_master_key(**options: object) -> None:
    """Make a new master key and re-encrypt every stored key under it, while servers keep running.

    The old key is kept as master.key.previous (decrypt-only) so that nothing becomes unreadable;
    running servers notice the new key file within a second.
    """
    import asyncio

    from tenant_access.runtime import begin_master_key_rotation, open_store_for

    settings = _settings(options)
    if settings.master_key:
        # Keys from the environment: the operator put the new key in TENANT_ACCESS_MASTER_KEY and the
        # old one in TENANT_ACCESS_PREVIOUS_MASTER_KEY (servers restarted with both); re-encrypt only.
        if not settings.previous_master_key:
            raise click.UsageError("with TENANT_ACCESS_MASTER_KEY set, put the new key there and the old one in "
                                   "TENANT_ACCESS_PREVIOUS_MASTER_KEY, then run this again")
    else:
        old_id, new_id = begin_master_key_rotation(settings.data_dir)
        click.echo(f"new master key {new_id} (previous {old_id} kept for decryption in master.key.previous)")
    store = open_store_for(settings)

    async def run() -> int:
        await store.open()
        try:
            err = sys.stderr

            def progress(done: int, total: int) -> None:
                err.write(f"\rre-encrypting keys: {done}/{total}")
                err.flush()

            try:
                return await store.reencrypt(progress)
            finally:
                err.write("\n")
        finally:
            await store.close()

    rewritten = asyncio.run(run())
    click.echo(f"re-encrypted {rewritten} stored key(s) under the current master key")


for _command in CLIENT_COMMANDS:  # services, access, keys, audit, emulator: the API over HTTP
    main.add_command(_command)
for _command in AUDIT_STORE_COMMANDS:  # audit export, audit prune: the store itself, like db upgrade
    audit_group.add_command(_command)
