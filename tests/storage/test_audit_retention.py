"""Retention, export and summary counts of the audit trail, on real SQLite files and real PostgreSQL.

Old records are made the way the server makes any record (``event(..., at=...)`` through the store),
with timestamps in the past; nothing reaches into the tables.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as _dt
import io
import json
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tenant_access import audit_trail
from tenant_access.domain.audit import ID_BANDS, Actor, AuditEvent, AuditQuery, AuditScan, event
from tenant_access.domain.models import AccessName, KeySlot, ServiceRef, ServiceSpec
from tenant_access.domain.retention import Retention
from tenant_access.security.encryption import Keyring, MasterKey
from tenant_access.service import TenantAccess
from tenant_access.storage.base import Store
from tests import backends
from tests.pg import Cluster

ACTOR = Actor("tests", "owner", "/", "bearer", "retention-tests", "10.0.0.1")
ANONYMOUS = Actor("unauthenticated", "-", "-", "-", "retention-tests", "10.0.0.9")
REF = ServiceRef("sub", "rg", "kept")
SPEC = ServiceSpec("westeurope", "Developer", 1, "o@e.com", "O")
NOW = _dt.datetime.now(_dt.UTC)
DAY = _dt.timedelta(days=1)
TARGET = "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.ApiManagement/service/kept/tenant/access"
Scenario = Callable[[Store, TenantAccess], Awaitable[None]]


@pytest.fixture(params=backends.NAMES)
def run(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[Scenario], None]:
    """``run(scenario)`` on a new, empty store of the parametrised backend, with one service."""

    def go(scenario: Scenario) -> None:
        cipher = Keyring(MasterKey(secrets.token_bytes(32)))
        url = None
        store: Store
        if request.param == "postgres":
            from tenant_access.storage.postgres import PostgresStore

            cluster: Cluster = request.getfixturevalue("pg_cluster")
            url = cluster.create_database("retention")
            store = PostgresStore(url, cipher)
        else:
            from tenant_access.storage.sqlite import SqliteStore

            store = SqliteStore(tmp_path / "audit.db", cipher)

        async def main() -> None:
            await store.open()
            try:
                app = TenantAccess(store)
                await app.put_service(ACTOR, REF, SPEC)
                await scenario(store, app)
            finally:
                await store.close()

        try:
            asyncio.run(main())
        finally:
            if url is not None:
                request.getfixturevalue("pg_cluster").drop_database(url)

    return go


async def _old(store: Store, days: float, operation: str, *, outcome: str = "success", status: int = 200,
               service: ServiceRef | None = REF, actor: Actor = ACTOR, count: int = 1) -> AuditEvent:
    record = event(actor, operation, TARGET, outcome=outcome, status=status, service=service,
                   at=NOW - days * DAY, count=count)
    await store.record(record, durable=False)
    return record


async def _mixed(store: Store) -> dict[str, list[AuditEvent]]:
    """Rotations, reads and refusals, each 200 days old and 1 day old; plus an unfiled refusal."""
    made: dict[str, list[AuditEvent]] = {"changes": [], "reads": [], "refusals": []}
    for days in (200, 1):
        made["changes"].append(await _old(store, days, "access.regenerate_secondary_key"))
        made["reads"].append(await _old(store, days, "access.list_secrets"))
        made["refusals"].append(await _old(store, days, "access.get", outcome="denied", status=401,
                                           actor=ANONYMOUS, count=7))
        made["refusals"].append(await _old(store, days, "access.get", outcome="denied", status=429,
                                           service=None, actor=ANONYMOUS, count=3))
    return made


async def _ids(store: Store, **scan: object) -> list[str]:
    """Ids of the scan's records, in every band of ids."""
    return [r.id for band in ID_BANDS
            for r in await store.scan_audit(AuditScan(limit=100_000, band=band, **scan))]  # type: ignore[arg-type]


def test_prune_removes_old_reads_and_refusals_and_keeps_every_change(run: Callable[[Scenario], None]) -> None:
    async def scenario(store: Store, app: TenantAccess) -> None:
        made = await _mixed(store)
        rotation = await app.regenerate_key(ACTOR, "access.regenerate_primary_key", REF, AccessName.ACCESS,
                                            KeySlot.PRIMARY)
        removed = await audit_trail.prune(store, Retention(), NOW)
        assert removed == {"reads": 1, "refusals": 2}
        left = await _ids(store)
        assert made["changes"][0].id in left, "a 200-day-old rotation is kept: changes are kept forever"
        assert made["changes"][1].id in left and made["reads"][1].id in left
        assert {made["refusals"][2].id, made["refusals"][3].id} <= set(left)
        assert made["reads"][0].id not in left
        assert made["refusals"][0].id not in left and made["refusals"][1].id not in left
        listed = await store.list_audit(AuditQuery(REF, operation="access.regenerate_primary_key"))
        assert [r.new_version_id for r in listed] == [rotation.version.id]

    run(scenario)


def test_finite_change_retention_is_applied_only_when_configured(run: Callable[[Scenario], None]) -> None:
    async def scenario(store: Store, app: TenantAccess) -> None:
        made = await _mixed(store)
        assert await audit_trail.prune(store, Retention.parse("changes=400d,reads=forever,refusals=forever"),
                                       NOW) == {"changes": 0}
        assert await audit_trail.prune(store, Retention.parse("changes=30d,reads=forever,refusals=forever"),
                                       NOW) == {"changes": 1}
        left = await _ids(store)
        assert made["changes"][0].id not in left
        assert all(r.id in left for r in made["reads"] + made["refusals"])

    run(scenario)


def test_a_dry_run_counts_and_changes_nothing(run: Callable[[Scenario], None]) -> None:
    async def scenario(store: Store, app: TenantAccess) -> None:
        await _mixed(store)
        before = await _ids(store)
        assert await audit_trail.count_due(store, Retention(), NOW) == {"reads": 1, "refusals": 2}
        assert await _ids(store) == before

    run(scenario)


def test_prune_with_export_writes_exactly_what_it_removes(run: Callable[[Scenario], None],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_trail, "BATCH", 3)  # several batches, and one that ends exactly full

    async def scenario(store: Store, app: TenantAccess) -> None:
        old = [await _old(store, 100 + i, "access.list_secrets") for i in range(6)]
        old += [await _old(store, 100, "access.get", outcome="denied", status=401, actor=ANONYMOUS, count=40)]
        young = await _old(store, 2, "access.list_secrets")
        everything = io.StringIO()
        assert await audit_trail.export(store, AuditScan(since=NOW - 1000 * DAY, limit=4), everything) == 9
        out = io.StringIO()
        removed = await audit_trail.prune(store, Retention(), NOW, export_to=out)
        assert removed == {"reads": 6, "refusals": 1}
        lines = [json.loads(line) for line in out.getvalue().splitlines()]
        assert sorted(line["id"] for line in lines) == sorted(r.id for r in old)
        assert young.id in await _ids(store)
        assert not {line["id"] for line in lines} & set(await _ids(store))
        # The export is the records as they were: same fields as a full export of them, counts included.
        full = {line["id"]: line for line in map(json.loads, everything.getvalue().splitlines())}
        assert all(full[line["id"]] == line for line in lines)
        refusal = next(line for line in lines if line["kind"] == "refusals")
        assert refusal["count"] == 40 and refusal["status"] == 401 and refusal["principal"] == "unauthenticated"
        assert list(refusal) == ["id", "time", "kind", "operation", "outcome", "status", "count", "principal",
                                 "role", "scope", "client", "request_id", "target", "subscription_id",
                                 "resource_group", "service_name", "old_version_id", "new_version_id", "detail"]

    run(scenario)


def test_export_selects_a_time_range_and_kinds_oldest_first(run: Callable[[Scenario], None]) -> None:
    async def scenario(store: Store, app: TenantAccess) -> None:
        made = await _mixed(store)
        recent = await _ids(store, since=NOW - 2 * DAY)
        assert made["changes"][1].id in recent and made["changes"][0].id not in recent
        assert recent == sorted(recent)
        older = await _ids(store, since=NOW - 300 * DAY, until=NOW - 100 * DAY)
        assert set(older) == {made[k][0].id for k in made} | {made["refusals"][1].id}
        only = await _ids(store, kinds=("changes",), since=NOW - 300 * DAY)
        assert set(only) >= {r.id for r in made["changes"]}
        assert not set(only) & {r.id for r in made["reads"] + made["refusals"]}

    run(scenario)


def test_summary_counts_add_up_and_the_listing_filters_by_kind(run: Callable[[Scenario], None]) -> None:
    async def scenario(store: Store, app: TenantAccess) -> None:
        summary = await _old(store, 0, "access.get", outcome="denied", status=401, actor=ANONYMOUS)
        await store.add_audit_counts([(summary.id, 5), ("0" * 24, 3)])  # a record that is gone is skipped
        await store.add_audit_counts([(summary.id, 2)])
        await app.list_secrets(ACTOR, REF, AccessName.ACCESS)
        refusals = await store.list_audit(AuditQuery(REF, kind="refusals"))
        assert [(r.id, r.count) for r in refusals] == [(summary.id, 8)]
        assert [r.operation for r in await store.list_audit(AuditQuery(REF, kind="reads"))] == ["access.list_secrets"]
        assert [r.operation for r in await store.list_audit(AuditQuery(REF, kind="changes"))] == \
            ["services.create_or_update"]

    run(scenario)


def test_the_servers_periodic_prune_removes_what_is_due_and_stops(run: Callable[[Scenario], None]) -> None:
    async def scenario(store: Store, app: TenantAccess) -> None:
        never = audit_trail.RetentionTask(store, Retention(None, None, None), first=0)
        never.start()
        assert not never.periodic.running, "nothing to prune: no task at all"
        made = await _mixed(store)
        task = audit_trail.RetentionTask(store, Retention(), first=0, every=0.05)
        task.start()
        assert task.periodic.running
        try:
            for _ in range(200):
                if made["reads"][0].id not in await _ids(store):
                    break
                await asyncio.sleep(0.02)
        finally:
            await task.stop()
        left = await _ids(store)
        assert made["reads"][0].id not in left and made["refusals"][0].id not in left
        assert all(r.id in left for r in made["changes"])

    run(scenario)


def test_records_with_random_ids_from_before_time_ordered_ids_are_pruned_and_exported_once(
    run: Callable[[Scenario], None],
) -> None:
    async def scenario(store: Store, app: TenantAccess) -> None:
        # Builds before 2026-11-27 made audit ids at random: they sort anywhere, mostly above every
        # time-ordered id. Retention and export find them by their time all the same.
        legacy = [dataclasses.replace(event(ACTOR, "access.list_secrets", TARGET, service=REF, at=NOW - days * DAY),
                                      id=prefix + secrets.token_hex(11))
                  for prefix, days in (("ff", 200), ("7c", 200), ("00", 200), ("ab", 1))]
        for record in legacy:
            await store.record(record)
        modern = await _old(store, 200, "access.list_secrets")
        out = io.StringIO()
        # Six: the four, the modern one and the service's creation.
        assert await audit_trail.export(store, AuditScan(since=NOW - 1000 * DAY), out) == 6
        exported = [json.loads(line)["id"] for line in out.getvalue().splitlines()]
        assert len(exported) == len(set(exported)) and {r.id for r in legacy} <= set(exported)
        assert await audit_trail.count_due(store, Retention(), NOW) == {"reads": 4, "refusals": 0}
        assert await audit_trail.prune(store, Retention(), NOW) == {"reads": 4, "refusals": 0}
        left = set(await _ids(store))
        assert legacy[3].id in left and modern.id not in left and not {r.id for r in legacy[:3]} & left

    run(scenario)


def test_a_prune_interrupted_after_its_export_loses_nothing_and_finishes_when_run_again(tmp_path: Path) -> None:
    """The deletion fails (a real fault in the real file: a trigger refuses it) after the batch was
    exported: the records stay, and the next prune exports them again and removes them."""
    import sqlite3

    from tenant_access.domain.errors import InternalError
    from tenant_access.storage.sqlite import SqliteStore

    path = tmp_path / "interrupted.db"

    async def main() -> None:
        store = SqliteStore(path, Keyring(MasterKey(secrets.token_bytes(32))))
        await store.open()
        try:
            old = [await _old(store, 100 + i, "access.list_secrets") for i in range(3)]
            fault = sqlite3.connect(path)
            fault.execute("CREATE TRIGGER no_delete BEFORE DELETE ON audit_events BEGIN SELECT RAISE(ABORT, 'no'); END")
            fault.commit()
            first = io.StringIO()
            with pytest.raises(InternalError):  # the store's answer to a refused statement
                await audit_trail.prune(store, Retention(), NOW, export_to=first)
            assert {json.loads(line)["id"] for line in first.getvalue().splitlines()} == {r.id for r in old}
            assert {r.id for r in old} <= set(await _ids(store))
            fault.execute("DROP TRIGGER no_delete")
            fault.commit()
            fault.close()
            again = io.StringIO()
            assert await audit_trail.prune(store, Retention(), NOW, export_to=again) == {"reads": 3, "refusals": 0}
            assert again.getvalue() == first.getvalue()
            assert not {r.id for r in old} & set(await _ids(store))
        finally:
            await store.close()

    asyncio.run(main())
