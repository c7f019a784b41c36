"""``tenant-access principals ...`` (beyond ``create``) and ``tenant-access signing-key ...``: local
commands on the store and the data directory, run beside (or without) a running server.

Revocation takes effect on running servers without a restart: a disabled, deleted or re-keyed
principal's tokens are refused by every replica within a second (the store's change detection),
and a rotated signing key is picked up within a second (its file's modification time).

Every change is in the audit trail (``audit export``), by ``cli:<os user>``: a principal's in the
same transaction as the change; a signing key's (a file, not a row) right after the new key file
is in place, in the store the server uses (``--data-dir`` / ``--database-url``).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from tenant_access.cli_help import HelpGroup
from tenant_access.cli_store import audit_record, store_options
from tenant_access.cli_store import settings_from as _settings
from tenant_access.cli_store import with_store as _run

if TYPE_CHECKING:  # the store is loaded only by the commands that use it: `--help` stays fast
    from tenant_access.domain.principals import ServicePrincipal
    from tenant_access.storage.base import Store

T = TypeVar("T")



def _describe(principal: ServicePrincipal) -> list[str]:
    state = "enabled" if principal.disabled_at is None else f"disabled since {principal.disabled_at.isoformat()}"
    return [
        f"client id:     {principal.client_id}",
        f"role:          {principal.role}",
        f"scope:         {principal.scope}",
        f"description:   {principal.description}",
        f"created:       {principal.created_at.isoformat()}",
        f"state:         {state}",
        f"secret:        generation {principal.generation}",
    ]


def _target(client_id: str) -> str:
    """What the audit trail names as a principal's change's target."""
    return f"servicePrincipals/{client_id}"


def _missing(client_id: str) -> click.ClickException:
    return click.ClickException(f"no service principal {client_id!r}")


@click.command("list")
@store_options
def principals_list(**options: object) -> None:
    """Every service principal: client id, role, scope, state (never a secret)."""
    found = _run(options, lambda store: store.list_principals())
    for p in found:
        state = "enabled" if p.disabled_at is None else "disabled"
        click.echo(f"{p.client_id}  {state:8}  {p.role:12}  {p.scope}  {p.description}".rstrip())
    if not found:
        click.echo("no service principals", err=True)


@click.command("show")
@click.argument("client_id")
@store_options
def principals_show(client_id: str, **options: object) -> None:
    """One service principal's details (never its secret)."""
    found = _run(options, lambda store: store.get_principal(client_id))
    if found is None:
        raise _missing(client_id)
    click.echo("\n".join(_describe(found)))


@click.command("disable")
@click.argument("client_id")
@store_options
def principals_disable(client_id: str, **options: object) -> None:
    """Stop a principal signing in; its tokens already issued are refused by every server within a second."""
    from tenant_access.domain.keys import utcnow

    record = audit_record("principals.disable", _target(client_id))
    if not _run(options, lambda store: store.set_principal_disabled(client_id, utcnow(), record)):
        raise _missing(client_id)
    click.echo(f"disabled {client_id}; its tokens are refused from now on")


@click.command("enable")
@click.argument("client_id")
@store_options
def principals_enable(client_id: str, **options: object) -> None:
    """Let a disabled principal sign in again (tokens issued before it was disabled work again until they expire)."""
    record = audit_record("principals.enable", _target(client_id))
    if not _run(options, lambda store: store.set_principal_disabled(client_id, None, record)):
        raise _missing(client_id)
    click.echo(f"enabled {client_id}")


@click.command("delete")
@click.argument("client_id")
@store_options
def principals_delete(client_id: str, **options: object) -> None:
    """Delete a principal; its tokens are refused by every server within a second."""
    record = audit_record("principals.delete", _target(client_id))
    if not _run(options, lambda store: store.delete_principal(client_id, record)):
        raise _missing(client_id)
    click.echo(f"deleted {client_id}")


@click.command("rotate-secret")
@click.argument("client_id")
@store_options
def principals_rotate_secret(client_id: str, **options: object) -> None:
    """Replace a principal's secret (printed once). The old secret stops working at once, and so do
    the tokens issued with it: whoever holds the new secret signs in again."""
    from tenant_access.security.service_principals import hash_client_secret, new_client_secret

    secret = new_client_secret()
    secret_hash = hash_client_secret(secret)
    record = audit_record("principals.rotate_secret", _target(client_id),
                          "new secret; tokens issued with the old one are refused")
    if _run(options, lambda store: store.replace_principal_secret(client_id, secret_hash, record)) is None:
        raise _missing(client_id)
    click.echo(f"client id:     {client_id}")
    click.echo(f"client secret: {secret.reveal()}")
    click.echo("The secret is shown only now; store it safely. Tokens issued with the old one are refused.",
               err=True)


PRINCIPAL_COMMANDS = (principals_list, principals_show, principals_disable, principals_enable, principals_delete,
                      principals_rotate_secret)


@click.group("signing-key", cls=HelpGroup)
def signing_key() -> None:
    """The server's own token signing key (in the data dir): rotate it, see which keys still verify."""


@signing_key.command("rotate")
@store_options
def signing_key_rotate(**options: object) -> None:
    """Make a new signing key. Running servers sign with it within a second; the old key keeps
    verifying for the maximum token lifetime (TENANT_ACCESS_MAX_TOKEN_LIFETIME) plus a minute, so
    no token in flight breaks, and is dropped after that. Recorded in the audit trail of the store
    (--data-dir's SQLite file, or --database-url)."""
    from tenant_access.security import signing_keys
    from tenant_access.security.errors import KeyMaterialError

    settings = _settings(options)

    async def rotate(store: Store) -> tuple[str, str]:
        # The store is open before the key changes: a store that cannot record the change
        # refuses it, rather than leaving a rotation the audit trail does not know.
        try:
            old, new = signing_keys.rotate(settings.data_dir, settings.max_token_lifetime)
        except KeyMaterialError as exc:
            raise click.ClickException(str(exc)) from None
        await store.record(audit_record("signing_key.rotate", "signingKey", f"new key {new}; previous key {old}"))
        return old, new

    old, new = _run(options, rotate)
    until = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=settings.max_token_lifetime + signing_keys.OVERLAP_MARGIN)
    click.echo(f"new signing key {new}; the previous key {old} verifies until {until.isoformat(timespec='seconds')}")


@signing_key.command("status")
@click.option("--data-dir", type=click.Path(path_type=Path))
def signing_key_status(data_dir: Path | None) -> None:
    """The key ids on disk: the current key, and each retired key with the end of its overlap window."""
    from tenant_access.security import signing_keys
    from tenant_access.security.errors import KeyMaterialError

    settings = _settings({"data_dir": data_dir})
    try:
        rows = signing_keys.status(settings.data_dir, settings.max_token_lifetime)
    except KeyMaterialError as exc:
        raise click.ClickException(str(exc)) from None
    for kid, state, until in rows:
        when = "" if until is None else " until " + dt.datetime.fromtimestamp(until, dt.UTC).isoformat(
            timespec="seconds")
        click.echo(f"{kid}  {state}{when}")
