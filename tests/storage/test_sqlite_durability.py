"""SQLite group commit on the event loop: commits with ``synchronous=NORMAL``, then one fdatasync
of the log covers them. What must hold is what ``synchronous=FULL`` promised: nobody is answered a
change (nor a read that saw it) before an fdatasync that began after its commit has ended.

The fdatasync here is the real one, held back by a gate: the test lets it go when it has seen
that the answers waited for it.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from pathlib import Path

import pytest

from tenant_access.domain.audit import Actor
from tenant_access.domain.errors import ServiceUnavailable
from tenant_access.domain.models import AccessName, KeySlot, ServiceRef, ServiceSpec
from tenant_access.security.encryption import Keyring, MasterKey
from tenant_access.service import TenantAccess
from tenant_access.storage.sqlite import SqliteStore

ACTOR = Actor("tests", "owner", "/", "system", "durability-tests", "local")
REF = ServiceRef("sub", "rg", "durable")
SPEC = ServiceSpec("westeurope", "Developer", 1, "o@e.com", "O")


class HeldSync:
    """``os.fdatasync`` that waits for :meth:`release` before syncing, and counts its calls."""

    def __init__(self) -> None:
        self.real = os.fdatasync
        self.gate = threading.Event()
        self.started = 0
        self.fail = False

    def __call__(self, fd: int) -> None:
        self.started += 1
        self.gate.wait(10)
        if self.fail:
            raise OSError(5, "Input/output error")
        self.real(fd)

    def release(self) -> None:
        self.gate.set()


async def _until(condition: object, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():  # type: ignore[operator]
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.005)


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scenario: object) -> None:
    async def main() -> None:
        store = SqliteStore(tmp_path / "d.db", Keyring(MasterKey(secrets.token_bytes(32))))
        await store.open()
        try:
            app = TenantAccess(store)
            await app.put_service(ACTOR, REF, SPEC)  # (synced for real: nothing is held yet)
            held = HeldSync()
            monkeypatch.setattr(os, "fdatasync", held)
            try:
                await scenario(app, held)  # type: ignore[operator]
            finally:
                held.release()
        finally:
            await store.close()

    asyncio.run(main())


def test_a_rotation_and_a_read_of_it_are_answered_only_after_the_log_is_synced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario(app: TenantAccess, held: HeldSync) -> None:
        rotation = asyncio.create_task(app.regenerate_key(ACTOR, "access.regenerate_secondary_key", REF,
                                                          AccessName.ACCESS, KeySlot.SECONDARY))
        await _until(lambda: held.started == 1)  # committed; its fdatasync began and is held
        await asyncio.sleep(0.05)
        assert not rotation.done()
        # A read now sees the committed key: it must not be answered before that key is on disk either.
        read = asyncio.create_task(app.list_secrets(ACTOR, REF, AccessName.ACCESS))
        await asyncio.sleep(0.05)
        assert not read.done()
        held.release()
        rotated = await rotation
        listed = await read
        assert listed.config.secondary_version_id == rotated.version.id
        assert listed.secondary_key == rotated.version.secret

    _run(tmp_path, monkeypatch, scenario)


def test_a_read_with_no_change_pending_needs_no_sync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario(app: TenantAccess, held: HeldSync) -> None:
        listed = await asyncio.wait_for(app.list_secrets(ACTOR, REF, AccessName.ACCESS), 5)
        assert listed.primary_key
        assert held.started == 0

    _run(tmp_path, monkeypatch, scenario)


def test_concurrent_rotations_share_fsyncs_and_each_is_answered_after_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario(app: TenantAccess, held: HeldSync) -> None:
        first = asyncio.create_task(app.regenerate_key(ACTOR, "access.regenerate_secondary_key", REF,
                                                       AccessName.ACCESS, KeySlot.SECONDARY))
        await _until(lambda: held.started == 1)
        # Committed while the first fdatasync runs: they need the next one, which covers them all.
        more = [asyncio.create_task(app.regenerate_key(ACTOR, "access.regenerate_primary_key", REF,
                                                       AccessName.GIT, KeySlot.PRIMARY)) for _ in range(20)]
        await asyncio.sleep(0.05)
        assert not first.done() and not any(t.done() for t in more)
        held.release()
        await first
        rotations = await asyncio.gather(*more)
        assert len({r.version.id for r in rotations}) == 20
        assert held.started < 21  # shared: far fewer fsyncs than rotations

    _run(tmp_path, monkeypatch, scenario)


def test_a_failed_sync_answers_no_success(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario(app: TenantAccess, held: HeldSync) -> None:
        held.fail = True
        rotation = asyncio.create_task(app.regenerate_key(ACTOR, "access.regenerate_secondary_key", REF,
                                                          AccessName.ACCESS, KeySlot.SECONDARY))
        await _until(lambda: held.started == 1)
        held.release()
        with pytest.raises(ServiceUnavailable):
            await rotation

    _run(tmp_path, monkeypatch, scenario)
