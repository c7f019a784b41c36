"""The ``tenant-access`` command."""

from __future__ import annotations

from pathlib import Path

import click

from tenant_access import __version__
from tenant_access.config import API_STYLES, Settings


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="tenant-access")
def main() -> None:
    """A self-hostable Azure API Management tenant access API: access configurations and key rotation."""


@main.command()
@click.option("--host", help="Address to listen on. [env TENANT_ACCESS_HOST; default 127.0.0.1]")
@click.option("--port", type=int, help="TCP port, 0 for any free one. [env TENANT_ACCESS_PORT; default 8700]")
@click.option("--data-dir", type=click.Path(path_type=Path),
              help="Where the store lives. [env TENANT_ACCESS_DATA_DIR; default ~/.local/share/tenant-access]")
@click.option("--database-url", help="Database URL; default the SQLite file in the data dir. "
              "[env TENANT_ACCESS_DATABASE_URL]")
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

    settings = _settings(options)
    store = open_store_for(settings)

    async def upgrade() -> None:
        await store.open()
        await store.close()

    asyncio.run(upgrade())
    click.echo(f"schema up to date: {store.describe()}")


def _settings(options: dict[str, object]) -> Settings:
    try:
        return Settings.from_env(None, **options)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
