"""The advisory lock beside a SQLite file that our processes take before SQLite's write lock."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tenant_access.domain.audit import Actor
from tenant_access.domain.models import AccessName, KeySlot, ServiceRef, ServiceSpec
from tenant_access.security.encryption import Keyring, MasterKey
from tenant_access.service import TenantAccess
from tenant_access.storage import sqlite as sqlite_store
from tenant_access.storage import write_lock
from tenant_access.storage.sqlite import SqliteStore
from tenant_access.storage.write_lock import WriteLock

ACTOR = Actor("tests", "owner", "/", "system", "lock-tests", "local")
REF = ServiceRef("sub", "rg", "locks")


def test_one_holder_at_a_time_and_a_bounded_wait(tmp_path: Path) -> None:
    a, b = WriteLock(tmp_path / "x.db"), WriteLock(tmp_path / "x.db")
    a.open()
    b.open()
    try:
        assert (tmp_path / "x.db-lock").stat().st_mode & 0o777 == 0o600
        assert a.try_acquire()
        assert not b.try_acquire()
        began = time.monotonic()
        assert not b.acquire(0.05)  # gives up after its timeout: SQLite's own wait takes over
        assert time.monotonic() - began >= 0.05
        threading.Timer(0.05, a.release).start()
        assert b.acquire(5)  # taken as soon as it is let go
        assert not a.try_acquire()
        b.release()
        assert a.try_acquire()
        a.release()
    finally:
        a.close()
        b.close()


@contextlib.asynccontextmanager
async def _rotation_while_held(tmp_path: Path) -> AsyncIterator[tuple[SqliteStore, TenantAccess, WriteLock, Any]]:
    """A store with a service, another process's hold on the lock, and a rotation started under it."""
    store = SqliteStore(tmp_path / "w.db", Keyring(MasterKey(secrets.token_bytes(32))))
    await store.open()
    other = WriteLock(tmp_path / "w.db")
    other.open()
    try:
        app = TenantAccess(store)
        await app.put_service(ACTOR, REF, ServiceSpec("westeurope", "Developer", 1, "o@e.com", "O"))
        assert other.try_acquire()
        rotation = asyncio.ensure_future(
            app.regenerate_key(ACTOR, "access.regenerate_key", REF, AccessName.ACCESS, KeySlot.SECONDARY))
        yield store, app, other, rotation
    finally:
        other.close()
        await store.close()


def test_a_store_waits_for_another_holder_and_then_writes(tmp_path: Path) -> None:
    """A rotation while another process of ours holds the lock: the event loop does not wait
    (the lock's waiter thread does), and the rotation lands once the lock is free."""
    async def main() -> None:
        async with _rotation_while_held(tmp_path) as (store, _app, other, rotation):
            ticks = 0
            while ticks < 20:  # the loop keeps turning while the write waits
                await asyncio.sleep(0.005)
                ticks += 1
            assert not rotation.done()
            other.release()
            done = await asyncio.wait_for(rotation, 5)
            stored = await store.get_secrets(REF, AccessName.ACCESS)
            assert stored is not None and stored.config.secondary_version_id == done.version.id

    asyncio.run(main())


def test_a_waiter_goes_first(tmp_path: Path) -> None:
    """The holder that lets go and at once tries again must not pass a process already waiting
    (without the turnstile, two workers on one file saw p99s above 100 ms)."""
    a, b = WriteLock(tmp_path / "x.db"), WriteLock(tmp_path / "x.db")
    a.open()
    b.open()
    try:
        assert a.try_acquire()
        got: list[bool] = []
        waiter = threading.Thread(target=lambda: got.append(b.acquire(5)))
        waiter.start()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (tmp_path / "x.db-lock-turn").exists() and not _turnstile_taken(tmp_path):
            time.sleep(0.001)
        a.release()
        assert not a.try_acquire()  # b is at the turnstile, or already holds the lock
        waiter.join(5)
        assert got == [True]
        b.release()
        assert a.try_acquire()
        a.release()
    finally:
        a.close()
        b.close()


def test_a_request_is_granted_on_release_and_a_withdrawn_one_lets_go(tmp_path: Path) -> None:
    """The event loop's way to wait (WriteLock.request): blocked in the kernel on the waiter thread,
    granted as soon as the holder lets go; withdrawn before that, the lock is let go again."""
    a, b = WriteLock(tmp_path / "x.db"), WriteLock(tmp_path / "x.db")
    a.open()
    b.open()
    try:
        granted = threading.Event()
        assert b.request(lambda request: granted.set())  # free: granted at once
        assert granted.wait(5)
        assert not a.try_acquire()
        b.release()

        assert a.try_acquire()
        granted.clear()
        request = b.request(lambda request: granted.set())
        assert not granted.wait(0.1)  # held by a
        assert _turnstile_taken(tmp_path)  # and b waits at the turnstile, so a cannot pass it again
        let_go = time.monotonic()
        a.release()
        assert granted.wait(5)
        assert time.monotonic() - let_go < 0.05  # woken by the kernel, not at a poll
        assert not request.withdraw()  # already granted: the caller owns the lock
        assert not a.try_acquire()
        b.release()

        assert a.try_acquire()
        request = b.request(lambda request: granted.set())
        assert request.withdraw()  # given up while waiting ...
        a.release()
        deadline = time.monotonic() + 5
        while not a.try_acquire():  # ... so b takes the lock and lets it go at once
            assert time.monotonic() < deadline
            time.sleep(0.001)
        a.release()
    finally:
        a.close()
        b.close()


def test_a_polite_waiter_leaves_the_turnstile_free_for_a_while(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The delivery process's writes wait without the turnstile at first (the request path of the
    holder is not sent to wait behind them), then queue at it, so they are never starved."""
    monkeypatch.setattr(write_lock, "POLITE_WAIT", 0.5)  # a margin for a slow machine
    a, b = WriteLock(tmp_path / "x.db"), WriteLock(tmp_path / "x.db")
    a.open()
    b.open()
    try:
        assert a.try_acquire()
        got: list[bool] = []
        waiter = threading.Thread(target=lambda: got.append(b.acquire(5, polite=True)))
        waiter.start()
        time.sleep(0.05)  # well within POLITE_WAIT
        assert not _turnstile_taken(tmp_path)
        deadline = time.monotonic() + 5
        while not _turnstile_taken(tmp_path):  # after POLITE_WAIT it queues at the turnstile
            assert time.monotonic() < deadline
            time.sleep(0.001)
        a.release()
        waiter.join(5)
        assert got == [True]
        b.release()
    finally:
        a.close()
        b.close()


def test_a_lock_held_past_the_busy_timeout_goes_to_the_writer_thread(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop's wait is bounded: after the busy timeout its group goes to the writer thread
    (which waits, then reports a lock held too long); the withdrawn wait lets the lock go when
    it comes, and the store goes on writing."""
    monkeypatch.setattr(sqlite_store, "BUSY_TIMEOUT_MS", 300)

    async def main() -> None:
        async with _rotation_while_held(tmp_path) as (store, app, other, rotation):
            await asyncio.sleep(0.4)  # past the loop's wait: now the writer thread's
            assert store._lock_wait is None and not rotation.done()
            other.release()
            done = await asyncio.wait_for(rotation, 5)
            stored = await store.get_secrets(REF, AccessName.ACCESS)
            assert stored is not None and stored.config.secondary_version_id == done.version.id
            again = await app.regenerate_key(ACTOR, "access.regenerate_key", REF, AccessName.ACCESS, KeySlot.SECONDARY)
            assert again.version.id != done.version.id

    asyncio.run(main())


def _turnstile_taken(tmp_path: Path) -> bool:
    probe = WriteLock(tmp_path / "x.db")
    probe.open()
    try:
        import fcntl

        assert probe._turn is not None
        try:
            fcntl.flock(probe._turn, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(probe._turn, fcntl.LOCK_UN)
        return False
    finally:
        probe.close()
