"""Refusal summaries on a real SQLite store, with a clock the test moves: one record per address,
minute and service, whose count is exact, and a bounded number of records whatever the caller does."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tenant_access import refusals
from tenant_access.domain.audit import Actor, AuditEvent, AuditScan
from tenant_access.domain.models import ServiceRef, ServiceSpec
from tenant_access.refusals import RefusalSummaries
from tenant_access.security.encryption import Keyring, MasterKey
from tenant_access.service import TenantAccess
from tenant_access.storage.sqlite import SqliteStore

OWNER = Actor("tests", "owner", "/", "bearer", "summary-tests", "local")
REF = ServiceRef("sub", "rg", "exists")
SPEC = ServiceSpec("westeurope", "Developer", 1, "o@e.com", "O")


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0  # the start of a minute

    def __call__(self) -> float:
        return self.now


def _who(client: str, request: int = 0) -> Actor:
    return Actor("unauthenticated", "-", "-", "-", f"req-{request}", client)


def _run(tmp_path: Path, scenario: Callable[[SqliteStore, RefusalSummaries, Clock], Awaitable[None]]) -> None:
    async def main() -> None:
        store = SqliteStore(tmp_path / "s.db", Keyring(MasterKey(secrets.token_bytes(32))))
        await store.open()
        try:
            await TenantAccess(store).put_service(OWNER, REF, SPEC)
            clock = Clock()
            await scenario(store, RefusalSummaries(store, clock=clock), clock)
        finally:
            await store.close()

    asyncio.run(main())


async def _refusals(store: SqliteStore) -> list[AuditEvent]:
    return await store.scan_audit(AuditScan(kinds=("refusals",), limit=100_000))


def test_a_burst_is_one_record_whose_count_is_exact(tmp_path: Path) -> None:
    async def scenario(store: SqliteStore, summaries: RefusalSummaries, clock: Clock) -> None:
        await summaries.refused(_who("10.0.0.1"), "access.get", "/x", 401, REF, "sas: expired")
        first = await _refusals(store)
        assert [(r.count, r.service, r.detail) for r in first] == [(1, REF, "sas: expired")]  # visible at once
        await asyncio.gather(*(summaries.refused(_who("10.0.0.1", i), "access.get", "/x", 401, REF)
                               for i in range(1, 1000)))
        assert len(await _refusals(store)) == 1  # no write per request
        await summaries.flush()
        assert [r.count for r in await _refusals(store)] == [1000]
        clock.now += 59
        for i in range(234):
            await summaries.refused(_who("10.0.0.1", i), "access.get", "/x", 401, REF)
        await summaries.stop()  # what shutdown does: the last counts are written
        assert [r.count for r in await _refusals(store)] == [1234]

    _run(tmp_path, scenario)


def test_each_minute_address_service_and_status_has_its_own_summary(tmp_path: Path) -> None:
    async def scenario(store: SqliteStore, summaries: RefusalSummaries, clock: Clock) -> None:
        missing = ServiceRef("sub", "rg", "never-created")
        sent = 0
        for _minute in range(3):
            for client in ("10.0.0.1", "10.0.0.2"):
                for status, service in ((401, REF), (401, missing), (429, REF), (401, None)):
                    for _ in range(5):
                        await summaries.refused(_who(client), "access.get", "/x", status, service)
                        sent += 1
            clock.now += 60
        await summaries.flush()
        records = await _refusals(store)
        # Per minute and address: REF/401, REF/429, and "no service"/401 shared by the missing service
        # and the route without one: a service that does not exist files nothing under its name.
        assert len(records) == 3 * 2 * 3
        assert sum(r.count for r in records) == sent
        assert {r.service for r in records} == {REF, None}

    _run(tmp_path, scenario)


def test_a_flood_of_names_and_addresses_writes_a_bounded_number_of_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(refusals, "MAX_SUMMARIES", 20)
    checked: list[ServiceRef] = []

    async def scenario(store: SqliteStore, summaries: RefusalSummaries, clock: Clock) -> None:
        real_exists = summaries._exists

        async def counting(ref: ServiceRef) -> bool:
            checked.append(ref)
            return await real_exists(ref)

        summaries._exists = counting
        sent = 0
        for i in range(2000):
            # A new address every 10 requests, a new service name every request: the worst case.
            await summaries.refused(_who(f"10.1.{i // 10 // 250}.{i // 10 % 250}"), "access.get", "/x", 401,
                                    ServiceRef("sub", "rg", f"name-{i}"))
            sent += 1
        await summaries.flush()
        records = await _refusals(store)
        assert len(records) == 21  # 20 addresses, then one summary for all the others
        assert all(r.service is None for r in records)
        assert sum(r.count for r in records) == sent
        overflow = [r for r in records if r.client == "*"]
        assert len(overflow) == 1 and overflow[0].count == sent - 20 * 10
        # Existence is checked at most SERVICES_PER_WINDOW times per window, not per request.
        assert len(checked) <= 21 * refusals.SERVICES_PER_WINDOW

    _run(tmp_path, scenario)


def test_one_address_that_wants_more_summaries_than_are_left_shares_the_overflow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(refusals, "MAX_SUMMARIES", 2)

    async def scenario(store: SqliteStore, summaries: RefusalSummaries, clock: Clock) -> None:
        for status, service in ((401, REF), (401, None), (429, REF), (429, None), (401, REF), (429, REF)):
            await summaries.refused(_who("10.0.0.1"), "access.get", "/x", status, service)
        await summaries.flush()
        found = sorted((r.client, r.status, r.count, r.service is not None) for r in await _refusals(store))
        assert found == [("*", 429, 3, False), ("10.0.0.1", 401, 1, False), ("10.0.0.1", 401, 2, True)]
        clock.now += 60  # a new minute: summaries of its own again
        await summaries.refused(_who("10.0.0.1"), "access.get", "/x", 429, REF)
        assert ("10.0.0.1", 429) in {(r.client, r.status) for r in await _refusals(store)}

    _run(tmp_path, scenario)


def test_counts_of_a_summary_still_being_written_when_its_minute_ends_are_not_lost(tmp_path: Path) -> None:
    async def scenario(store: SqliteStore, summaries: RefusalSummaries, clock: Clock) -> None:
        clock.now += 59.999
        first = asyncio.create_task(summaries.refused(_who("10.0.0.1"), "access.get", "/x", 401, None))
        await asyncio.sleep(0)  # its record is being written
        for i in range(5):
            await summaries.refused(_who("10.0.0.1", i), "access.get", "/x", 401, None)
        clock.now += 0.002  # the next minute, before that write has finished
        await summaries.flush()
        await first
        await summaries.flush()
        assert [r.count for r in await _refusals(store)] == [6]

    _run(tmp_path, scenario)


def test_a_refusal_whose_service_lookup_outlives_its_minute_is_counted_in_the_next(tmp_path: Path) -> None:
    async def scenario(store: SqliteStore, summaries: RefusalSummaries, clock: Clock) -> None:
        looked_up = asyncio.Event()
        go_on = asyncio.Event()
        real_exists = summaries._exists

        async def slow(ref: ServiceRef) -> bool:
            looked_up.set()
            await go_on.wait()
            return await real_exists(ref)

        summaries._exists = slow
        pending = [asyncio.create_task(summaries.refused(_who("10.0.0.1", i), "access.get", "/x", 401, REF))
                   for i in range(3)]
        await looked_up.wait()
        clock.now += 60
        await summaries.refused(_who("10.0.0.1", 9), "access.get", "/x", 401, None)  # the new minute begins
        summaries._exists = real_exists
        go_on.set()
        await asyncio.gather(*pending)
        await summaries.flush()
        assert sum(r.count for r in await _refusals(store)) == 4

    _run(tmp_path, scenario)
