"""Service principals in both stores: listing, disabling, re-keying (the generation moves), deleting,
and the cached read tokens are checked through, which a change made elsewhere empties."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenant_access.domain.principals import ServicePrincipal
from tenant_access.security.encryption import Keyring, MasterKey
from tenant_access.storage.base import Store, open_store

NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)


def _principal(client_id: str) -> ServicePrincipal:
    return ServicePrincipal(client_id, "owner", "/", "test", NOW, "$scrypt$ln=1,r=1,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAA")


@pytest.fixture(params=["sqlite", "postgresql"])
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'principals.db'}"
        return
    cluster = request.getfixturevalue("pg_cluster")
    url: str = cluster.create_database("principals")
    yield url
    cluster.drop_database(url)


def test_principal_lifecycle_and_a_cache_that_follows_another_writer(urls: str, tmp_path: Path) -> None:
    cipher = Keyring(MasterKey(secrets.token_bytes(32)))

    async def run() -> None:
        reader: Store = open_store(urls, tmp_path, cipher)
        writer: Store = open_store(urls, tmp_path, cipher)  # another process, as the CLI is
        await reader.open()
        await writer.open()
        try:
            await writer.add_principal(_principal("b"))
            await writer.add_principal(_principal("a"))
            assert [p.client_id for p in await reader.list_principals()] == ["a", "b"]
            cached = await reader.get_principal_cached("a")
            assert cached is not None and cached.generation == 0 and cached.disabled_at is None

            assert await writer.set_principal_disabled("a", NOW) is True
            await _eventually(reader, "a", lambda p: p is not None and p.disabled_at == NOW)
            assert await writer.set_principal_disabled("a", None) is True
            await _eventually(reader, "a", lambda p: p is not None and p.disabled_at is None)

            rotated = await writer.replace_principal_secret("a", "$scrypt$new")
            assert rotated is not None and rotated.generation == 1 and rotated.secret_hash == "$scrypt$new"
            await _eventually(reader, "a", lambda p: p is not None and p.generation == 1)

            assert await writer.delete_principal("a") is True
            await _eventually(reader, "a", lambda p: p is None)
            assert await writer.delete_principal("a") is False
            assert await writer.set_principal_disabled("a", NOW) is False
            assert await writer.replace_principal_secret("a", "$scrypt$x") is None
            assert [p.client_id for p in await reader.list_principals()] == ["b"]
        finally:
            await writer.close()
            await reader.close()

    asyncio.run(run())


async def _eventually(store: Store, client_id: str, check: object, deadline: float = 1.0) -> None:
    """The cached read shows the change within ``deadline`` seconds (at once on SQLite; on
    PostgreSQL as soon as the notification arrives)."""
    assert callable(check)
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not check(await store.get_principal_cached(client_id)):
        assert loop.time() - start < deadline, "the cache kept a changed principal"
        await asyncio.sleep(0.01)
