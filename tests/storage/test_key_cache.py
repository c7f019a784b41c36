"""The key cache: a load that raced with a change is never kept; SQLite sees other processes' changes."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from tenant_access.domain.audit import Actor
from tenant_access.domain.models import AccessConfig, AccessName, KeySlot, Secrets, ServiceRef, ServiceSpec
from tenant_access.security.encryption import Keyring, MasterKey
from tenant_access.service import TenantAccess
from tenant_access.storage.cache import KeyCache
from tenant_access.storage.sqlite import SqliteStore

KEY = ("sub", "rg", "svc", "access")
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _secrets(version: str, etag: str = "e") -> Secrets:
    ref = ServiceRef("sub", "rg", "svc")
    config = AccessConfig(ref, AccessName.ACCESS, "integration", True, etag, NOW, NOW, "p", NOW, version, NOW)
    return Secrets(config, "primary-key", f"secondary-{version}")


def test_a_load_that_raced_with_an_invalidation_is_not_stored() -> None:
    cache = KeyCache()
    ticket = cache.ticket(KEY)
    cache.invalidate(KEY)  # a change arrived while the load was reading the database
    assert cache.put(ticket, _secrets("old")) is False
    assert cache.get(KEY, 60) is None
    fresh = cache.ticket(KEY)
    assert cache.put(fresh, _secrets("new")) is True
    assert cache.get(KEY, 60) is not None


def test_a_clear_voids_every_outstanding_ticket() -> None:
    cache = KeyCache()
    ticket = cache.ticket(KEY)
    cache.clear()
    assert cache.put(ticket, _secrets("old")) is False


def test_entries_expire_and_the_cache_is_bounded() -> None:
    cache = KeyCache(max_entries=2)
    cache.put(cache.ticket(KEY), _secrets("v"))
    assert cache.get(KEY, 60) is not None
    time.sleep(0.02)
    assert cache.get(KEY, 0.01) is None
    for n in range(3):
        key = ("sub", "rg", f"s{n}", "access")
        cache.put(cache.ticket(key), _secrets(str(n)))
    assert len(cache) == 2


def test_holds_compares_versions_and_entity_tag() -> None:
    cache = KeyCache()
    cache.put(cache.ticket(KEY), _secrets("v1", "tag"))
    assert cache.holds(KEY, ("p", "v1"), "tag")
    assert not cache.holds(KEY, ("p", "v2"), "tag")
    assert not cache.holds(KEY, ("p", "v1"), "other")


ACTOR = Actor("tests", "owner", "/", "system", "cache-tests", "local")
SHARED = ServiceRef("sub", "rg", "shared")


def _two_stores(tmp_path: Path, scenario: Callable[[SqliteStore, SqliteStore], Awaitable[None]]) -> None:
    """Two stores on one file stand for two processes: data_version moves with the other's commits.
    The first has created the service."""
    cipher = Keyring(MasterKey(secrets.token_bytes(32)))

    async def main() -> None:
        a, b = SqliteStore(tmp_path / "s.db", cipher), SqliteStore(tmp_path / "s.db", cipher)
        await a.open()
        await b.open()
        try:
            await TenantAccess(a).put_service(ACTOR, SHARED, ServiceSpec("westeurope", "Developer", 1, "o@e.com", "O"))
            await scenario(a, b)
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())


async def _rotate(store: SqliteStore) -> str:
    rotation = await TenantAccess(store).regenerate_key(ACTOR, "access.regenerate_secondary_key", SHARED,
                                                        AccessName.ACCESS, KeySlot.SECONDARY)
    return rotation.version.id


def test_sqlite_cache_sees_a_change_made_through_another_connection(tmp_path: Path) -> None:
    async def scenario(a: SqliteStore, b: SqliteStore) -> None:
        before = await b.get_secrets_cached(SHARED, AccessName.ACCESS)
        assert before is not None
        assert await b.get_secrets_cached(SHARED, AccessName.ACCESS) is before  # served from the cache
        version = await _rotate(a)
        after = await b.get_secrets_cached(SHARED, AccessName.ACCESS)
        assert after is not None
        assert after.config.secondary_version_id == version

    _two_stores(tmp_path, scenario)


def test_sqlite_configuration_cache_sees_a_change_made_through_another_connection(tmp_path: Path) -> None:
    """GET answers from a cache of configurations; a rotation by another process shows at once."""
    async def scenario(a: SqliteStore, b: SqliteStore) -> None:
        before = await b.get_access(SHARED, AccessName.ACCESS)
        assert before is not None
        await asyncio.sleep(0)  # a later turn of the loop checks the file again
        assert await b.get_access(SHARED, AccessName.ACCESS) is before  # served from the cache
        version = await _rotate(a)
        after = await b.get_access(SHARED, AccessName.ACCESS)
        assert after is not None
        assert after.secondary_version_id == version
        assert after.etag != before.etag

    _two_stores(tmp_path, scenario)
