"""Retention and export of the audit trail, straight from the store: what the server runs every
few minutes and what ``tenant-access audit prune|export`` run on demand.

Pruning reads a batch of :data:`BATCH` due records (by primary key range: record ids begin with
their time), then deletes them by id, each batch its own short transaction, with a pause between
batches, so a prune of millions of records never holds the write lock for more than a few
milliseconds at a time and rotations keep their latency. It never touches a kind whose retention
is forever (by default: changes).

Export writes JSON Lines: one record a line, the fields of :func:`record_json` in that order. Audit
records hold no secrets (ids of key versions, never keys), so neither does an export.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as _dt
import json
import logging
import os
from collections.abc import Callable, Mapping
from typing import IO, Any

from tenant_access.domain.audit import AUDIT_KINDS, ID_BANDS, AuditEvent, AuditKind, AuditScan, kind_of
from tenant_access.domain.retention import Retention
from tenant_access.periodic import Periodic
from tenant_access.storage.base import Store

log = logging.getLogger("tenant_access.audit")

BATCH = 500
#: The server's own prune: first this long after start, then at this interval.
PRUNE_FIRST_SECONDS = 60.0
PRUNE_EVERY_SECONDS = 600.0
#: Between two batches of the server's prune, so requests' writes go first.
PRUNE_PAUSE_SECONDS = 0.02


def record_json(record: AuditEvent) -> dict[str, Any]:
    """The stable export form of one record (SIEMs key on these names; add, never rename)."""
    service = record.service
    return {
        "id": record.id,
        "time": record.at.astimezone(_dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "kind": kind_of(record),
        "operation": record.operation,
        "outcome": record.outcome,
        "status": record.status,
        "count": record.count,
        "principal": record.principal,
        "role": record.role,
        "scope": record.scope,
        "client": record.client,
        "request_id": record.request_id,
        "target": record.target,
        "subscription_id": service.subscription_id if service else None,
        "resource_group": service.resource_group if service else None,
        "service_name": service.name if service else None,
        "old_version_id": record.old_version_id,
        "new_version_id": record.new_version_id,
        "detail": record.detail,
    }


def write_lines(records: list[AuditEvent], out: IO[str]) -> None:
    for record in records:
        out.write(json.dumps(record_json(record), ensure_ascii=False, separators=(",", ":")) + "\n")


async def export(store: Store, scan: AuditScan, out: IO[str]) -> int:
    """Every record of ``scan`` to ``out``, page by page, oldest first; answers how many."""
    written = 0
    for band in ID_BANDS:  # records with random ids (builds before 2026-11-27) come last
        after = scan.after
        while True:
            page = await store.scan_audit(AuditScan(scan.kinds, scan.since, scan.until, after, scan.limit, band))
            write_lines(page, out)
            written += len(page)
            if len(page) < scan.limit:
                break
            after = page[-1].id
    return written


def _scans(kind: AuditKind, before: _dt.datetime, since: _dt.datetime | None = None) -> list[AuditScan]:
    """What retention removes of one kind: records before ``before`` (and from ``since``, where an
    earlier prune already removed everything older), in each band of ids: those that begin with
    their time, then those made at random by builds before 2026-11-27."""
    return [AuditScan((kind,), since=since, until=before, limit=BATCH, band=band) for band in ID_BANDS]


async def count_due(store: Store, retention: Retention, now: _dt.datetime) -> dict[AuditKind, int]:
    """What a prune would remove now, by kind (a dry run)."""
    return {kind: sum([await store.count_audit(scan) for scan in _scans(kind, before)])
            for kind, before in retention.cutoffs(now).items()}


async def prune(store: Store, retention: Retention, now: _dt.datetime, *, export_to: IO[str] | None = None,
                pause: float = 0.0, since: Mapping[AuditKind, _dt.datetime] | None = None,
                progress: Callable[[AuditKind, int], None] | None = None) -> dict[AuditKind, int]:
    """Remove what ``retention`` no longer keeps, batch by batch; answers how many went, by kind.

    Each batch is read (a page of the scan, continuing where the last one ended, so records that
    are kept are read once per prune, not once per batch), then deleted by id in a transaction of
    its own. ``since``: by kind, a time before which an earlier prune left nothing to remove.
    With ``export_to``, each batch is written there (and flushed to disk) before it is deleted, so
    an interrupted prune never loses a record it did not export (it may export one twice)."""
    removed: dict[AuditKind, int] = {}
    for kind, before in retention.cutoffs(now).items():
        removed[kind] = 0
        for first in _scans(kind, before, (since or {}).get(kind)):
            scan = first
            while True:
                page = await store.scan_audit(scan)
                if not page:
                    break
                if export_to is not None:
                    write_lines(page, export_to)
                    export_to.flush()
                    with contextlib.suppress(OSError, ValueError):  # not a file (a pipe, a test's buffer)
                        os.fsync(export_to.fileno())
                removed[kind] += await store.delete_audit([r.id for r in page])
                if progress is not None:
                    progress(kind, removed[kind])
                if len(page) < scan.limit:
                    break
                scan = dataclasses.replace(scan, after=page[-1].id)
                if pause:
                    await asyncio.sleep(pause)
    return removed


class RetentionTask:
    """The server's periodic prune (``--audit-retention``); not started at all when every kind is
    kept forever."""

    def __init__(self, store: Store, retention: Retention, *, first: float = PRUNE_FIRST_SECONDS,
                 every: float = PRUNE_EVERY_SECONDS) -> None:
        self.store = store
        self.retention = retention
        self.periodic = Periodic("audit retention", self.prune_once, every, first)
        #: By kind, the cut-off of the last complete prune: nothing older is left, so the next one
        #: reads only what aged since (a table of changes kept forever is not read every time).
        self._swept: dict[AuditKind, _dt.datetime] = {}

    def start(self) -> None:
        if any(self.retention.keep(kind) is not None for kind in AUDIT_KINDS):
            self.periodic.start()

    async def stop(self) -> None:
        await self.periodic.stop()

    async def prune_once(self) -> None:
        now = _dt.datetime.now(_dt.UTC)
        removed = await prune(self.store, self.retention, now, pause=PRUNE_PAUSE_SECONDS, since=self._swept)
        self._swept = self.retention.cutoffs(now)
        if any(removed.values()):
            log.info("audit retention removed %s", ", ".join(f"{n} {k}" for k, n in removed.items() if n))
