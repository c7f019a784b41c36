"""A key's expiry is read and cached with the key (issue 14): in both stores, the cached keys of
another process follow a rotation policy's expiryTime being set and removed, as they follow a
rotation, and only then (while nothing changes the cached entry is served as it is)."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tenant_access.domain.audit import Actor
from tenant_access.domain.models import AccessName, Secrets, ServiceRef, ServiceSpec
from tenant_access.security.encryption import Keyring, MasterKey
from tenant_access.service import TenantAccess
from tenant_access.storage.base import Store, open_store

ACTOR = Actor("tests", "owner", "/", "system", "expiry-cache-tests", "local")
REF = ServiceRef("sub", "rg", "expiring")
POLICY = {"lifetimeActions": [{"trigger": {"timeAfterCreate": "P30D"}, "action": {"type": "Rotate"}}],
          "attributes": {"expiryTime": "P45D"}}


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'expiry.db'}"
        return
    cluster = request.getfixturevalue("pg_cluster")
    made: str = cluster.create_database("expiry")
    yield made
    cluster.drop_database(made)


async def _eventually(store: Store, check: Callable[[Secrets], bool], deadline: float = 2.0) -> Secrets:
    """The cached read shows the change (at once on SQLite; on PostgreSQL when the notification
    arrives): a deadline to fail by, not a measurement."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while True:
        found = await store.get_secrets_cached(REF, AccessName.ACCESS)
        assert found is not None
        if check(found):
            return found
        assert loop.time() - start < deadline, "the cached keys kept an expiry that changed"
        await asyncio.sleep(0.01)


async def _cached(store: Store, deadline: float = 5.0) -> Secrets:
    """The keys once the cache serves them: the same object on two reads in later turns of the
    loop. (On PostgreSQL the notification of the service's creation may still be on its way when
    the first read fills the cache, and empties it on arrival.)"""
    loop = asyncio.get_running_loop()
    start = loop.time()
    found = await store.get_secrets_cached(REF, AccessName.ACCESS)
    while True:
        await asyncio.sleep(0.01)  # a later turn of the loop: SQLite checks the file again
        again = await store.get_secrets_cached(REF, AccessName.ACCESS)
        assert found is not None and again is not None
        if again is found:
            return found
        assert loop.time() - start < deadline, "the keys were never served from the cache"
        found = again


def test_cached_keys_of_another_process_follow_the_policy_expiry(url: str, tmp_path: Path) -> None:
    cipher = Keyring(MasterKey(secrets.token_bytes(32)))

    async def run() -> None:
        writer: Store = open_store(url, tmp_path, cipher)
        reader: Store = open_store(url, tmp_path, cipher)  # another process, as a replica is
        await writer.open()
        await reader.open()
        try:
            use_cases = TenantAccess(writer)
            await use_cases.put_service(ACTOR, REF, ServiceSpec("westeurope", "Developer", 1, "o@e.com", "O"))
            before = await _cached(reader)
            assert before.expires_at == (None, None)

            await use_cases.put_rotation_policy(ACTOR, REF, AccessName.ACCESS, POLICY)
            config = before.config
            expiring = await _eventually(reader, lambda s: s.expires_at != (None, None))
            assert expiring.expires_at == (config.primary_created_at + dt.timedelta(days=45),
                                           config.secondary_created_at + dt.timedelta(days=45))
            assert (expiring.primary_key, expiring.secondary_key) == (before.primary_key, before.secondary_key)
            # What the writer's own listSecrets shows comes from the same read.
            shown = await use_cases.list_secrets(ACTOR, REF, AccessName.ACCESS)
            assert shown.expires_at == expiring.expires_at

            assert await use_cases.delete_rotation_policy(ACTOR, REF, AccessName.ACCESS) is True
            await _eventually(reader, lambda s: s.expires_at == (None, None))
            assert (await use_cases.list_secrets(ACTOR, REF, AccessName.ACCESS)).expires_at == (None, None)
        finally:
            await reader.close()
            await writer.close()

    asyncio.run(run())
