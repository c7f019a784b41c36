"""What the commands that work on the store itself (not through a server) share: settings from
flags and environment, and one opening of the store around one piece of work.

``db upgrade``, ``principals``, ``subscriptions``, ``audit export|prune`` and ``master-key`` run
beside live servers; each opens the store for just its own work and closes it, so it holds no
connection (or SQLite write lock) longer than it must.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from tenant_access.config import Settings

if TYPE_CHECKING:
    from tenant_access.domain.audit import Actor, AuditEvent
    from tenant_access.storage.base import Store

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., object])

_STORE_OPTIONS = (
    click.option("--data-dir", type=click.Path(path_type=Path),
                 help="The server's data dir (its SQLite file, master key). [env TENANT_ACCESS_DATA_DIR]"),
    click.option("--database-url", help="The server's database URL. [env TENANT_ACCESS_DATABASE_URL]"),
)


def store_options(command: F) -> F:
    """``--data-dir`` and ``--database-url``: which store a command opens, as ``serve`` names it."""
    for option in reversed(_STORE_OPTIONS):
        command = option(command)
    return command


def settings_from(options: dict[str, object]) -> Settings:
    """Defaults, ``TENANT_ACCESS_*`` variables, then the given flags; a bad value is a usage error."""
    try:
        return Settings.from_env(None, **options)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def with_store(options: dict[str, object], work: Callable[[Store], Awaitable[T]]) -> T:
    """Run ``work`` on the store the options (and environment) name, opened for just that."""
    from tenant_access.runtime import open_store_for

    store = open_store_for(settings_from(options))

    async def run() -> T:
        await store.open()
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


def operator() -> Actor:
    """Who the audit trail names for a change made by a command on the store: ``cli:<os user>``
    on this host (the commands need the data dir or the database URL, so the OS account is the
    identity that had them). Role ``owner`` and scope ``/``: the store gives them everything."""
    import getpass
    import os
    import secrets
    import socket

    from tenant_access.domain.audit import Actor

    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no name for this uid (a bare container)
        user = f"uid-{os.getuid()}"
    return Actor(f"cli:{user}", "owner", "/", "cli", "cli-" + secrets.token_hex(8), socket.gethostname() or "local")


def audit_record(operation: str, target: str, detail: str | None = None) -> AuditEvent:
    """The audit record of one change a command makes, by :func:`operator`."""
    from tenant_access.domain.audit import event

    return event(operator(), operation, target, detail=detail)
