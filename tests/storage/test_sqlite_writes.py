"""SQLite's two write paths: records committed on the event loop, and the writer thread.

Real stores on real files; the "other process" is a second SQLite connection to the same file.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tenant_access.domain.audit import Actor, AuditQuery, event
from tenant_access.domain.errors import NotFound
from tenant_access.domain.models import AccessName, KeySlot, ServiceRef, ServiceSpec
from tenant_access.security.encryption import Keyring, MasterKey
from tenant_access.service import TenantAccess
from tenant_access.storage.sqlite import SqliteStore

ACTOR = Actor("tests", "owner", "/", "system", "write-tests", "local")
REF = ServiceRef("sub", "rg", "writes")
SPEC = ServiceSpec("westeurope", "Developer", 1, "o@e.com", "O")


def _run(tmp_path: Path, scenario: Callable[[SqliteStore, TenantAccess], Awaitable[None]]) -> None:
    async def main() -> None:
        store = SqliteStore(tmp_path / "w.db", Keyring(MasterKey(secrets.token_bytes(32))))
        await store.open()
        try:
            app = TenantAccess(store)
            await app.put_service(ACTOR, REF, SPEC)
            await scenario(store, app)
        finally:
            await store.close()

    asyncio.run(main())


async def _reads(store: SqliteStore) -> list[Any]:
    return [e for e in await store.list_audit(AuditQuery(service=REF, operation="access.list_secrets", top=10_000))
            if e.operation == "access.list_secrets"]


def test_concurrent_secret_reads_are_each_recorded_once(tmp_path: Path) -> None:
    async def scenario(store: SqliteStore, app: TenantAccess) -> None:
        expected = await store.get_secrets(REF, AccessName.ACCESS)
        got = await asyncio.gather(*(app.list_secrets(ACTOR, REF, AccessName.ACCESS) for _ in range(300)))
        assert expected is not None
        assert {s.primary_key for s in got} == {expected.primary_key}
        records = await _reads(store)
        assert len(records) == 300
        assert len({r.id for r in records}) == 300

    _run(tmp_path, scenario)


def test_records_wait_for_a_busy_writer_thread_and_then_commit(tmp_path: Path) -> None:
    """While the writer thread is in a long transaction the loop neither blocks nor fails: its
    records wait for the writer's call-back, and meanwhile reads are still answered."""
    async def scenario(store: SqliteStore, app: TenantAccess) -> None:
        started = threading.Event()

        def slow(conn: sqlite3.Connection) -> None:
            started.set()
            time.sleep(0.3)

        slow_write = asyncio.ensure_future(store._write(slow))
        while not started.is_set():
            await asyncio.sleep(0.001)
        reads = asyncio.gather(*(app.list_secrets(ACTOR, REF, AccessName.ACCESS) for _ in range(20)))
        began = time.monotonic()
        assert await app.get_access(REF, AccessName.ACCESS) is not None  # the loop is not blocked
        assert time.monotonic() - began < 0.2
        assert len(await asyncio.wait_for(reads, 5)) == 20  # a lost call-back would leave them waiting
        await slow_write
        assert len(await _reads(store)) == 20

    _run(tmp_path, scenario)


def test_records_go_to_the_writer_thread_while_another_process_holds_the_lock(tmp_path: Path) -> None:
    async def scenario(store: SqliteStore, app: TenantAccess) -> None:
        other = sqlite3.connect(tmp_path / "w.db", isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
        released = threading.Timer(0.3, other.execute, ("COMMIT",))
        released.start()
        try:
            began = time.monotonic()
            reads = asyncio.gather(*(app.list_secrets(ACTOR, REF, AccessName.ACCESS) for _ in range(5)))
            assert await app.get_access(REF, AccessName.ACCESS) is not None  # the loop is not blocked
            assert time.monotonic() - began < 0.2
            assert len(await asyncio.wait_for(reads, 5)) == 5
            assert time.monotonic() - began >= 0.25  # they really waited for the other process
        finally:
            released.join()
            other.close()
        assert len(await _reads(store)) == 5

    _run(tmp_path, scenario)


def test_the_log_is_checkpointed_when_only_the_loop_writes(tmp_path: Path) -> None:
    """Commits on the event loop run SQLite's automatic checkpoint too. Without one the
    write-ahead log would grow by ~12 KiB a record forever."""
    async def scenario(store: SqliteStore, app: TenantAccess) -> None:
        for _ in range(3000):
            await store.record(event(ACTOR, "access.list_secrets", "/x", service=REF), durable=False)
        wal = Path(f"{tmp_path / 'w.db'}-wal").stat().st_size
        assert wal < 12 * 1024 * 1024, wal  # 3,000 unchecked commits would be over 30 MiB

    _run(tmp_path, scenario)


def test_a_record_that_fails_fails_alone(tmp_path: Path) -> None:
    """One bad record in a batch committed on the loop takes no other record with it."""
    async def scenario(store: SqliteStore, app: TenantAccess) -> None:
        good = event(ACTOR, "access.list_secrets", "/x", service=REF)
        duplicate = event(ACTOR, "access.list_secrets", "/x", service=REF)
        await store.record(duplicate, durable=False)
        results = await asyncio.gather(store.record(good, durable=False), store.record(duplicate, durable=False),
                                       return_exceptions=True)
        assert results[0] is None
        assert isinstance(results[1], Exception)
        ids = {r.id for r in await _reads(store)}
        assert {good.id, duplicate.id} <= ids

    _run(tmp_path, scenario)


def test_a_rotation_after_loop_records_is_durable_and_seen(tmp_path: Path) -> None:
    async def scenario(store: SqliteStore, app: TenantAccess) -> None:
        await asyncio.gather(*(app.list_secrets(ACTOR, REF, AccessName.ACCESS) for _ in range(10)))
        rotation = await app.regenerate_key(ACTOR, "access.regenerate_secondary_key", REF, AccessName.ACCESS,
                                            KeySlot.SECONDARY)
        config = await app.get_access(REF, AccessName.ACCESS)
        assert config.secondary_version_id == rotation.version.id
        keys = await app.list_secrets(ACTOR, REF, AccessName.ACCESS)
        assert keys.config.secondary_version_id == rotation.version.id

    _run(tmp_path, scenario)


def test_secret_reads_see_another_process_rotation_at_once(tmp_path: Path) -> None:
    """listSecrets reads on the write connection, which remembers keys between our own records of
    reads; a rotation by another process sharing the file must show in the very next read."""
    async def main() -> None:
        cipher = Keyring(MasterKey(secrets.token_bytes(32)))
        a, b = SqliteStore(tmp_path / "w.db", cipher), SqliteStore(tmp_path / "w.db", cipher)
        await a.open()
        await b.open()
        try:
            await TenantAccess(a).put_service(ACTOR, REF, SPEC)
            for _ in range(3):
                await TenantAccess(b).list_secrets(ACTOR, REF, AccessName.ACCESS)
            for slot in (KeySlot.SECONDARY, KeySlot.PRIMARY):
                rotation = await TenantAccess(a).regenerate_key(ACTOR, "access.regenerate_key", REF,
                                                                AccessName.ACCESS, slot)
                keys = await TenantAccess(b).list_secrets(ACTOR, REF, AccessName.ACCESS)
                assert keys.config.version_id(slot) == rotation.version.id
                assert rotation.version.secret in (keys.primary_key, keys.secondary_key)
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())


def test_rotations_build_on_another_process_rotation(tmp_path: Path) -> None:
    """A rotation starts from the state the write connection last wrote, without reading it;
    when another process sharing the file rotated in between, it must start from that one."""
    async def main() -> None:
        cipher = Keyring(MasterKey(secrets.token_bytes(32)))
        a, b = SqliteStore(tmp_path / "w.db", cipher), SqliteStore(tmp_path / "w.db", cipher)
        await a.open()
        await b.open()
        try:
            here, there = TenantAccess(a), TenantAccess(b)
            await here.put_service(ACTOR, REF, SPEC)
            previous = None
            for n in range(6):
                app = here if n % 3 else there  # two rotations here, then one there
                rotation = await app.regenerate_key(ACTOR, "access.regenerate_key", REF, AccessName.ACCESS,
                                                    KeySlot.SECONDARY)
                if previous is not None:
                    assert rotation.previous_version_id == previous.version.id
                    assert rotation.config.primary_version_id == previous.config.primary_version_id
                previous = rotation
            stored = await a.get_secrets(REF, AccessName.ACCESS)
            assert stored is not None and previous is not None
            assert stored.config == previous.config
            assert stored.secondary_key == previous.version.secret
            with sqlite3.connect(tmp_path / "w.db") as conn:
                live = conn.execute("SELECT COUNT(*) FROM key_versions WHERE secret IS NOT NULL").fetchone()[0]
            assert live == 4  # two per configuration (access, gitAccess): every replaced key was wiped
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())


def test_a_rotation_after_the_service_is_deleted_finds_nothing(tmp_path: Path) -> None:
    """Deleting a service is a change the rotation path does not keep track of: the state it
    remembers from its last rotation must be forgotten."""
    async def scenario(store: SqliteStore, app: TenantAccess) -> None:
        await app.regenerate_key(ACTOR, "access.regenerate_key", REF, AccessName.ACCESS, KeySlot.PRIMARY)
        await app.delete_service(ACTOR, REF)
        with pytest.raises(NotFound):
            await app.regenerate_key(ACTOR, "access.regenerate_key", REF, AccessName.ACCESS, KeySlot.PRIMARY)
        assert await store.get_secrets(REF, AccessName.ACCESS) is None
        await app.put_service(ACTOR, REF, SPEC)  # created anew: new keys, which the next rotation starts from
        fresh = await store.get_secrets(REF, AccessName.ACCESS)
        assert fresh is not None
        rotation = await app.regenerate_key(ACTOR, "access.regenerate_key", REF, AccessName.ACCESS, KeySlot.PRIMARY)
        assert rotation.previous_version_id == fresh.config.primary_version_id

    _run(tmp_path, scenario)


def test_rotations_in_one_group_commit_build_on_each_other(tmp_path: Path) -> None:
    async def scenario(store: SqliteStore, app: TenantAccess) -> None:
        rotations = await asyncio.gather(*(
            app.regenerate_key(ACTOR, "access.regenerate_key", REF, AccessName.ACCESS, KeySlot.SECONDARY)
            for _ in range(20)))
        chain = {r.previous_version_id: r.version.id for r in rotations}
        assert len(chain) == 20  # each replaced a different version: a single history, no fork
        stored = await store.get_secrets(REF, AccessName.ACCESS)
        assert stored is not None
        assert stored.config.secondary_version_id in chain.values()
        assert stored.config.secondary_version_id not in chain

    _run(tmp_path, scenario)


def test_the_expiry_of_a_rotated_key_is_known_without_reading_it_back(tmp_path: Path) -> None:
    """listSecrets after a rotation answers from the state the rotation wrote: under a policy
    with an expiryTime, the new key must carry its expiry exactly as a fresh read gives it."""
    async def scenario(store: SqliteStore, app: TenantAccess) -> None:
        await app.put_rotation_policy(ACTOR, REF, AccessName.ACCESS, {
            "lifetimeActions": [], "attributes": {"expiryTime": "P30D"}, "gracePeriod": "PT1H"})
        before = await app.list_secrets(ACTOR, REF, AccessName.ACCESS)
        assert before.expires_at[1] is not None
        rotation = await app.regenerate_key(ACTOR, "access.regenerate_key", REF, AccessName.ACCESS,
                                            KeySlot.SECONDARY)
        remembered = await app.list_secrets(ACTOR, REF, AccessName.ACCESS)
        fresh = await store.get_secrets(REF, AccessName.ACCESS)
        assert fresh is not None
        assert remembered.expires_at == fresh.expires_at
        assert remembered.expires_at[1] == rotation.version.created_at + dt.timedelta(days=30)
        assert remembered.expires_at[0] == before.expires_at[0]

    _run(tmp_path, scenario)


def test_a_subscription_made_after_rotations_gets_the_next_rotation_event(tmp_path: Path) -> None:
    """Whether a change's events are wanted is remembered by the write connection: a subscription
    made by another process (a second store on the same file) or by this one must be seen by the
    very next rotation, which then writes its event to the outbox."""
    from tenant_access.domain import events
    from tenant_access.domain.event_subscriptions import EventSubscription

    def outbox_rows() -> int:
        with sqlite3.connect(tmp_path / "w.db") as conn:
            count: int = conn.execute("SELECT COUNT(*) FROM event_outbox WHERE service_key != '~tail'").fetchone()[0]
        return count

    async def rotate(app: TenantAccess) -> None:
        await app.regenerate_key(ACTOR, "access.regenerate_key", REF, AccessName.ACCESS, KeySlot.SECONDARY)

    async def subscribe(store: SqliteStore, name: str) -> None:
        sub = EventSubscription(REF, name, "http://example.com/hook", (), events.SCHEMA_CLOUDEVENTS, None,
                                dt.datetime.now(dt.UTC))
        await store.run_outbox(store.outbox.put_subscription(sub), write=True, durable=True)

    async def scenario(store: SqliteStore, app: TenantAccess) -> None:
        store.all_events = False  # as a server without emulator controls runs
        before = outbox_rows()  # the service's creation, made while every event was kept
        for _ in range(3):
            await rotate(app)
        assert outbox_rows() == before  # nobody listens: no event written
        other = SqliteStore(tmp_path / "w.db", store.cipher)
        await other.open()
        try:
            await subscribe(other, "from-another-process")
        finally:
            await other.close()
        await rotate(app)
        assert outbox_rows() == before + 1
        await store.run_outbox(store.outbox.delete_subscription(REF, "from-another-process"), write=True, durable=True)
        await rotate(app)
        assert outbox_rows() == before + 1  # unsubscribed (by this process): no more events
        await subscribe(store, "from-this-process")
        await rotate(app)
        assert outbox_rows() == before + 2

    _run(tmp_path, scenario)
