"""Stores full of keys for the master-key tests, built through the real store API (fast: concurrent
creations share the SQLite writer's commits), and the ways to look inside them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tenant_access.config import Settings
from tenant_access.domain.models import AccessName, ServiceRef, ServiceSpec
from tenant_access.runtime import open_store_for
from tenant_access.seeding import SYSTEM
from tenant_access.service import TenantAccess

if TYPE_CHECKING:
    from tenant_access.storage.census import KeyCensus

SUBSCRIPTION = "99999999-2222-3333-4444-555555555555"
SPEC = ServiceSpec("westeurope", "Developer", 1, "ops@example.com", "Ops")


def service_ref(i: int) -> ServiceRef:
    return ServiceRef(SUBSCRIPTION, "rg-keys", f"svc-{i:05d}")


def build(data_dir: Path, services: int, database_args: list[str] | None = None) -> None:
    """``services`` services (four key versions each) in a new store of ``data_dir``."""
    settings = _settings(data_dir, database_args or [])

    async def run() -> None:
        store = open_store_for(settings)
        await store.open()
        try:
            app = TenantAccess(store)
            for start in range(0, services, 200):
                await asyncio.gather(*(app.put_service(SYSTEM, service_ref(i), SPEC)
                                       for i in range(start, min(services, start + 200))))
        finally:
            await store.close()

    asyncio.run(run())


def all_keys(data_dir: Path, services: int) -> dict[tuple[int, str], tuple[str, str]]:
    """Every current key of the first ``services`` services, each decrypted and authenticated
    (through the store API of any version, so a test using it can run against older code too)."""
    settings = _settings(data_dir, [])

    async def run() -> dict[tuple[int, str], tuple[str, str]]:
        store = open_store_for(settings)
        await store.open()
        try:
            out = {}
            for i in range(services):
                for name in AccessName:
                    found = await store.get_secrets(service_ref(i), name)
                    assert found is not None, (i, name)
                    out[(i, name.value)] = (found.primary_key, found.secondary_key)
            return out
        finally:
            await store.close()

    return asyncio.run(run())


def census(data_dir: Path, database_args: list[str] | None = None) -> tuple[KeyCensus, str]:
    """Every stored value opened with the keyring on disk, and the current key id (reads only)."""
    from tenant_access.runtime import FileKeyring

    settings = _settings(data_dir, database_args or [])
    keyring = FileKeyring(settings.data_dir, None, create=False)

    async def run() -> KeyCensus:
        store = open_store_for(settings, keyring)
        await store.open()
        try:
            return await store.census()
        finally:
            await store.close()

    return asyncio.run(run()), keyring.current_id


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tenant_access", *args], capture_output=True, text=True,
                          timeout=120, env=clean_env(env), check=False)


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANT_ACCESS_")}
    env.update(extra or {})
    return env


def _settings(data_dir: Path, database_args: list[str]) -> Settings:
    url = database_args[1] if database_args else None
    return Settings(data_dir=data_dir, database_url=url)
