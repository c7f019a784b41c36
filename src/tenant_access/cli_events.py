"""``tenant-access events dead-letters|redeliver|tail|deliver``: the outbox straight from the store.

They open the store as ``audit export`` does (``--data-dir`` / ``--database-url``), with the server
running or not. ``redeliver`` puts dead letters back in the queue with a fresh retry schedule; a
running server sends them within its next round (a second or less). ``deliver`` is the delivery
process ``serve`` runs as its child by default, for running it on its own (``--event-delivery off``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import json
import secrets
import signal
import time
from typing import TYPE_CHECKING

import click

from tenant_access.cli_help import HelpGroup
from tenant_access.cli_store import settings_from, store_options
from tenant_access.cli_store import with_store as _with_store
from tenant_access.domain import events as domain_events

if TYPE_CHECKING:
    from tenant_access.storage.base import Store


@click.group("events", cls=HelpGroup)
def events_group() -> None:
    """Event deliveries: dead letters, redelivery, a live tail of the outbox."""


@events_group.command("dead-letters")
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line.")
@store_options
def dead_letters(as_json: bool, **options: object) -> None:
    """[store] Deliveries that ran out of retries (or failed for good), with the reason."""
    found = _with_store(options, lambda store: store.run_outbox(store.outbox.dead_letters()))
    for item in found:
        if as_json:
            click.echo(json.dumps({"event": domain_events.cloudevent(item.event), "subscription": item.subscription_key,
                                   "attempts": item.attempts, "reason": item.reason}))
        else:
            click.echo(f"{item.event.id}  {item.event.type.removeprefix(domain_events.PREFIX)}  "
                       f"{item.subscription_key}  attempts={item.attempts}  {item.reason}")
    click.echo(f"{len(found)} dead letter(s)", err=True)


@events_group.command("redeliver")
@click.argument("event_ids", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Every dead letter.")
@store_options
def redeliver(event_ids: tuple[str, ...], every: bool, **options: object) -> None:
    """[store] Queue dead letters again (these EVENT_IDS, or --all), with a fresh retry schedule."""
    if not event_ids and not every:
        raise click.UsageError("name event ids, or give --all")
    now = _dt.datetime.now(_dt.UTC)
    count = _with_store(options, lambda store: store.run_outbox(
        store.outbox.redeliver(None if every else list(event_ids), now), write=True))
    click.echo(f"queued {count} delivery(ies) again")


@events_group.command("tail")
@click.option("--last", default=10, show_default=True, help="Events shown before following.")
@click.option("--follow/--no-follow", default=True, help="Keep printing new events as they are committed.")
@store_options
def tail(last: int, follow: bool, **options: object) -> None:
    """[store] The newest events as CloudEvents (JSON Lines), then new ones as they commit. While it
    follows, servers write every change's events, subscribed or not."""

    async def work(store: Store) -> None:
        from tenant_access.storage.outbox import TAIL_REFRESH  # lazily: --help loads no storage

        newest = await store.run_outbox(store.outbox.recent(max(last, 1)))
        for item in newest[len(newest) - last:] if last > 0 else []:
            click.echo(json.dumps(domain_events.cloudevent(item)))
        after = newest[-1].id if newest else ""  # with --last 0 too: only what commits from now on
        if not follow:
            return
        # While this row is fresh, servers write every change's events, subscribed or not.
        token = secrets.token_hex(8)
        await store.run_outbox(store.outbox.listen(token, _dt.datetime.now(_dt.UTC)), write=True)
        refreshed = time.monotonic()
        try:
            while True:
                await asyncio.sleep(0.25)
                if time.monotonic() - refreshed > TAIL_REFRESH:
                    refreshed = time.monotonic()
                    await store.run_outbox(store.outbox.listen(token, _dt.datetime.now(_dt.UTC)), write=True)
                for item in await store.run_outbox(store.outbox.recent(500, after)):
                    click.echo(json.dumps(domain_events.cloudevent(item)))
                    after = item.id
        finally:
            with contextlib.suppress(Exception):
                await store.run_outbox(store.outbox.unlisten(token), write=True)

    # Ctrl-C is how a tail ends; SIGTERM ends it the same way (its row removed, not left to expire).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with contextlib.suppress(KeyboardInterrupt):
        _with_store(options, work)


@events_group.command("deliver")
@store_options
def deliver(**options: object) -> None:
    """[store] Send event deliveries from this process until stopped (SIGTERM, Ctrl-C). `serve` runs one
    as its child by default; run it yourself beside servers started with --event-delivery off. The other
    event settings come from TENANT_ACCESS_EVENT_* and TENANT_ACCESS_ALLOW_PRIVATE_EVENT_DESTINATIONS."""
    from tenant_access import delivery_process, server

    settings = settings_from(options)
    server.configure_logging(settings.log_level, settings.log_format)
    delivery_process.run_standalone(settings)
