"""``tenant-access audit export|prune``: the audit trail straight from the store, no server needed.

They open the store as ``db upgrade`` does (``--data-dir`` / ``--database-url``), so they work with
the server stopped or running (SQLite's WAL and PostgreSQL both let them share the database).
"""

from __future__ import annotations

import datetime as _dt
import sys
from pathlib import Path
from typing import IO, TypeVar, cast

import click

from tenant_access.cli_store import store_options
from tenant_access.cli_store import with_store as _with_store
from tenant_access.domain.retention import Retention, parse_duration

T = TypeVar("T")


def parse_when(text: str, now: _dt.datetime) -> _dt.datetime:
    """An ISO 8601 time (UTC unless it says otherwise; a date is its midnight) or a duration back
    from now (``7d``, ``12h``)."""
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        when = _dt.datetime.fromisoformat(text.strip().replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is neither an ISO time (2026-11-01T12:00:00Z) nor a duration (7d)") \
            from None
    return when if when.tzinfo is not None else when.replace(tzinfo=_dt.UTC)




@click.command("export")
@click.option("--since", required=True, help="ISO time (UTC unless given) or a duration back from now, e.g. 7d.")
@click.option("--until", help="ISO time or duration back from now; default now.")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(["changes", "reads", "refusals"]),
              help="Only these kinds (repeatable); default all.")
@click.option("--output", type=click.Path(path_type=Path, dir_okay=False), help="Write here; default stdout.")
@store_options
def export(since: str, until: str | None, kinds: tuple[str, ...], output: Path | None, **options: object) -> None:
    """[store] Every record of every service in [SINCE, UNTIL) as JSON Lines, oldest first (for a SIEM)."""
    from tenant_access.audit_trail import export as run_export
    from tenant_access.domain.audit import AUDIT_KINDS, AuditKind, AuditScan

    now = _dt.datetime.now(_dt.UTC)
    chosen = cast("tuple[AuditKind, ...]", tuple(kinds)) or AUDIT_KINDS
    scan = AuditScan(chosen, parse_when(since, now), parse_when(until, now) if until else None)

    def write(out: IO[str]) -> int:
        return _with_store(options, lambda store: run_export(store, scan, out))

    if output is None:
        written = write(sys.stdout)
    else:
        with output.open("w", encoding="utf-8") as out:
            written = write(out)
    click.echo(f"exported {written} record(s)", err=True)


@click.command("prune")
@click.option("--audit-retention", help="What to keep, e.g. reads=30d,refusals=7d,changes=forever; default the "
              "server's setting. [env TENANT_ACCESS_AUDIT_RETENTION]")
@click.option("--dry-run", is_flag=True, help="Only count what would be removed.")
@click.option("--export", "export_to", type=click.Path(path_type=Path, dir_okay=False),
              help="Append what is removed to this file (JSON Lines) first.")
@store_options
def prune(dry_run: bool, export_to: Path | None, **options: object) -> None:
    """[store] Remove the records that the retention no longer keeps (changes never, unless it
    gives them a finite retention)."""
    from tenant_access import audit_trail
    from tenant_access.cli import _settings

    retention: Retention = _settings(options).retention
    now = _dt.datetime.now(_dt.UTC)
    click.echo(f"retention: {retention.describe()}", err=True)
    if dry_run:
        counts = _with_store(options, lambda store: audit_trail.count_due(store, retention, now))
        for kind, n in counts.items():
            click.echo(f"would remove {n} {kind} record(s)")
        return
    def progress(kind: str, done: int) -> None:
        sys.stderr.write(f"\rremoving {kind} records: {done}")
        sys.stderr.flush()

    if export_to is None:
        removed = _with_store(options, lambda store: audit_trail.prune(store, retention, now, progress=progress))
    else:
        with export_to.open("a", encoding="utf-8") as out:
            removed = _with_store(options, lambda store: audit_trail.prune(store, retention, now, export_to=out,
                                                                           progress=progress))
    sys.stderr.write("\n")
    for kind, n in removed.items():
        click.echo(f"removed {n} {kind} record(s)")


COMMANDS: tuple[click.Command, ...] = (export, prune)
