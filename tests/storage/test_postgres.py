"""The PostgreSQL adapter on its own: timeouts, migrations, notifications, the key cache's bounds."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
import pytest

from tenant_access.domain.audit import Actor
from tenant_access.domain.models import AccessName, KeySlot, ServiceRef, ServiceSpec
from tenant_access.security.encryption import Keyring, MasterKey
from tenant_access.service import TenantAccess
from tenant_access.storage import postgres
from tenant_access.storage.postgres import CHANNEL, PostgresStore, connection_params, describe_url
from tests.conftest import API, SERVICE_BODY, service_path
from tests.pg import Cluster
from tests.serverproc import ServerProcess

ACTOR = Actor("tests", "owner", "/", "system", "storage-tests", "local")
SPEC = ServiceSpec("westeurope", "Developer", 1, "ops@example.com", "Ops")


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> Iterator[str]:
    url = pg_cluster.create_database("store")
    yield url
    pg_cluster.drop_database(url)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tenant_access", *args], capture_output=True, text=True,
                          timeout=60, check=False)


def test_the_description_never_shows_a_password() -> None:
    text = describe_url("postgresql://app:s3cr3t-pw@db.internal:6432/keys?sslmode=require")
    assert text == "postgresql app@db.internal:6432/keys"
    assert "s3cr3t" not in PostgresStore("postgres://app:s3cr3t-pw@db/keys", Keyring(MasterKey(bytes(32)))).describe()


def test_our_timeouts_come_first_so_the_url_can_override_them() -> None:
    params = connection_params("postgresql://u@h/db?options=-c%20lock_timeout%3D250&application_name=svc", "listener")
    assert params["options"].startswith(postgres.DEFAULT_OPTIONS)
    assert params["options"].endswith("-c lock_timeout=250")
    assert params["application_name"].startswith("svc-listener/")


def test_the_unsafe_switch_needs_its_acknowledgement() -> None:
    assert postgres.unsafe_row_locks_disabled({}) is False
    with pytest.raises(ValueError, match=postgres.UNSAFE_ACK):
        postgres.unsafe_row_locks_disabled({postgres.UNSAFE_NO_ROW_LOCK: "1"})
    assert postgres.unsafe_row_locks_disabled({postgres.UNSAFE_NO_ROW_LOCK: "1",
                                               postgres.UNSAFE_ACK: postgres.UNSAFE_ACK_VALUE}) is True


def test_a_held_row_lock_answers_503_with_retry_after_instead_of_hanging(pg_cluster: Cluster, pg_url: str,
                                                                         tmp_path: Path) -> None:
    url = pg_url + ("&" if "?" in pg_url else "?") + "options=-c%20lock_timeout%3D300"
    server = ServerProcess(tmp_path, ["--database-url", url]).start()
    path = service_path("locked")
    try:
        with httpx.Client(base_url=server.url, headers=server.auth(), timeout=30) as http:
            assert http.put(f"{path}?{API}", json=SERVICE_BODY).status_code == 201
            with pg_cluster.connect(pg_url) as holder:
                holder.execute("BEGIN")
                holder.execute("SELECT 1 FROM access_configs WHERE name = 'access' FOR UPDATE")
                started = time.monotonic()
                refused = http.post(f"{path}/tenant/access/regenerateSecondaryKey?{API}")
                waited = time.monotonic() - started
                holder.execute("ROLLBACK")
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
            assert refused.headers["retry-after"] == "1"
            assert 0.25 < waited < 3
            assert http.post(f"{path}/tenant/access/regenerateSecondaryKey?{API}").status_code == 200
            # Nothing of the refused rotation was written: one rotation on record.
            audit = http.get(f"{path}/auditEvents?{API}&operation=access.regenerate_secondary_key").json()["data"]
            assert len(audit) == 1
    finally:
        server.stop()


def test_replicas_starting_together_apply_each_migration_once(pg_cluster: Cluster, pg_url: str,
                                                              tmp_path: Path) -> None:
    master = {"TENANT_ACCESS_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode()}
    servers = [ServerProcess(tmp_path / f"r{i}", ["--database-url", pg_url], env=master) for i in range(3)]
    try:
        with ThreadPoolExecutor(3) as pool:
            list(pool.map(lambda s: s.start(), servers))
        logs = [s.log() for s in servers]
    finally:
        for server in servers:
            server.stop()
    with pg_cluster.connect(pg_url) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
    from tenant_access.storage import migrations

    assert versions == [m.version for m in migrations.load()]
    assert sum("applied migration 0001_initial" in log for log in logs) == 1


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_no_migrate_refuses_an_old_schema_until_db_upgrade(kind: str, pg_cluster: Cluster, tmp_path: Path) -> None:
    url = pg_cluster.create_database("nomigrate") if kind == "postgres" else f"sqlite:///{tmp_path / 'x.db'}"
    try:
        refused = ServerProcess(tmp_path / "a", ["--database-url", url, "--no-migrate"])
        with pytest.raises(RuntimeError, match="db upgrade"):
            refused.start(timeout=15)
        upgraded = _cli("db", "upgrade", "--data-dir", str(tmp_path / "a"), "--database-url", url)
        assert upgraded.returncode == 0, upgraded.stderr
        assert "schema up to date" in upgraded.stdout
        assert "applied migration 0001_initial" in upgraded.stderr
        assert "password" not in upgraded.stdout
        ServerProcess(tmp_path / "a", ["--database-url", url, "--no-migrate"]).start().stop()
    finally:
        if kind == "postgres":
            pg_cluster.drop_database(url)


def test_change_notifications_carry_versions_never_keys(pg_cluster: Cluster, pg_url: str, tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, ["--database-url", pg_url]).start()
    path = service_path("notified")
    try:
        with httpx.Client(base_url=server.url, headers=server.auth(), timeout=30) as http, \
                pg_cluster.connect(pg_url) as listener:
            assert http.put(f"{path}?{API}", json=SERVICE_BODY).status_code == 201
            listener.execute(f"LISTEN {CHANNEL}")
            rotated = http.post(f"{path}/tenant/access/regenerateSecondaryKey?{API}").json()["data"]
            patched = http.patch(f"{path}/tenant/access?{API}", json={"properties": {"enabled": True}},
                                 headers={"If-Match": "*"})
            assert patched.status_code == 200
            keys = http.post(f"{path}/tenant/access/listSecrets?{API}").json()["data"]
            payloads = [n.payload for n in listener.notifies(timeout=2, stop_after=2)]
    finally:
        server.stop()
    assert len(payloads) == 2
    first = json.loads(payloads[0])
    assert first["k"] == ["11111111-2222-3333-4444-555555555555", "rg1", "notified"]
    assert first["a"] == "access"
    assert rotated["id"] in first["v"]
    for payload in payloads:
        assert keys["primary_key"] not in payload
        assert keys["secondary_key"] not in payload
        assert set(json.loads(payload)) == {"k", "a", "v", "e"}


async def _store(url: str, cipher: Keyring) -> PostgresStore:
    store = PostgresStore(url, cipher)
    await store.open()
    return store


def test_a_replica_without_its_listener_uses_a_cached_key_for_at_most_a_second(pg_url: str) -> None:
    cipher = Keyring(MasterKey(secrets.token_bytes(32)))
    ref = ServiceRef("sub", "rg", "ttl")

    async def scenario() -> tuple[float, int]:
        a, b = await _store(pg_url, cipher), await _store(pg_url, cipher)
        try:
            await TenantAccess(a).put_service(ACTOR, ref, SPEC)
            # B loses its listener and cannot get it back (its task is gone): only the TTL bounds staleness.
            assert b._listener is not None
            b._listener.cancel()
            await asyncio.sleep(0.05)
            assert not b._listening.is_set()
            cached = await b.get_secrets_cached(ref, AccessName.ACCESS)
            assert cached is not None
            rotation = await TenantAccess(a).regenerate_key(ACTOR, "access.regenerate_secondary_key", ref,
                                                            AccessName.ACCESS, KeySlot.SECONDARY)
            changed = time.monotonic()
            stale_reads = 0
            while True:
                seen = await b.get_secrets_cached(ref, AccessName.ACCESS)
                assert seen is not None
                if seen.config.secondary_version_id == rotation.version.id:
                    return time.monotonic() - changed, stale_reads
                stale_reads += 1
                await asyncio.sleep(0.01)
        finally:
            await a.close()
            await b.close()

    staleness, stale_reads = asyncio.run(scenario())
    assert stale_reads > 0  # the cache was really in use
    assert staleness <= postgres.STALE_TTL + 0.1


def test_with_its_listener_a_replica_learns_of_a_change_at_once(pg_url: str) -> None:
    cipher = Keyring(MasterKey(secrets.token_bytes(32)))
    ref = ServiceRef("sub", "rg", "pushed")

    async def scenario() -> float:
        a, b = await _store(pg_url, cipher), await _store(pg_url, cipher)
        try:
            await TenantAccess(a).put_service(ACTOR, ref, SPEC)
            assert await b.get_secrets_cached(ref, AccessName.ACCESS) is not None
            rotation = await TenantAccess(a).regenerate_key(ACTOR, "access.regenerate_secondary_key", ref,
                                                            AccessName.ACCESS, KeySlot.SECONDARY)
            changed = time.monotonic()
            while True:
                seen = await b.get_secrets_cached(ref, AccessName.ACCESS)
                assert seen is not None
                if seen.config.secondary_version_id == rotation.version.id:
                    return time.monotonic() - changed
                await asyncio.sleep(0.001)
        finally:
            await a.close()
            await b.close()

    assert asyncio.run(scenario()) < 0.2


def test_the_store_reports_an_unreachable_database_as_unavailable(tmp_path: Path) -> None:
    from tenant_access.domain.errors import ServiceUnavailable

    cipher = Keyring(MasterKey(secrets.token_bytes(32)))
    store = PostgresStore(f"postgresql://nobody@/none?host={tmp_path}&connect_timeout=1", cipher)
    with pytest.raises(RuntimeError, match="cannot use the database"):
        asyncio.run(store.open())

    async def ping_closed() -> None:
        await store.ping()

    with pytest.raises(ServiceUnavailable):
        asyncio.run(ping_closed())


def test_psycopg_errors_map_to_the_right_answers() -> None:
    from tenant_access.domain.errors import InternalError, ServiceUnavailable

    assert isinstance(postgres._storage_error(psycopg.errors.LockNotAvailable()), ServiceUnavailable)
    assert isinstance(postgres._storage_error(psycopg.errors.QueryCanceled()), ServiceUnavailable)
    assert isinstance(postgres._storage_error(psycopg.errors.AdminShutdown()), ServiceUnavailable)
    assert isinstance(postgres._storage_error(psycopg.OperationalError("connection lost")), ServiceUnavailable)
    assert isinstance(postgres._storage_error(psycopg.errors.RaiseException()), InternalError)
    assert isinstance(postgres._storage_error(psycopg.errors.UniqueViolation()), InternalError)


def test_notifications_arriving_during_the_listeners_heartbeat_are_not_lost(pg_url: str) -> None:
    """The listener checks its connection with a query between waits for notifications; one that
    arrives meanwhile must be handed over by the next wait (psycopg >= 3.3 keeps a backlog)."""

    async def scenario() -> list[str]:
        listener = await psycopg.AsyncConnection.connect(pg_url, autocommit=True)
        sender = await psycopg.AsyncConnection.connect(pg_url, autocommit=True)
        try:
            await listener.execute("LISTEN heartbeat_backlog")
            async for _ in listener.notifies(timeout=0.05):
                pass
            await sender.execute("NOTIFY heartbeat_backlog, 'during'")
            await listener.execute("SELECT pg_sleep(0.1)")  # the heartbeat: the notification arrives here
            return [n.payload async for n in listener.notifies(timeout=1, stop_after=1)]
        finally:
            await listener.close()
            await sender.close()

    assert asyncio.run(scenario()) == ["during"]


def test_concurrent_changes_of_one_configuration_commit_together_and_refuse_alone(pg_url: str) -> None:
    """Rotations of one configuration that arrive together share a transaction (each in a
    savepoint); a refusal among them (a stale If-Match) undoes only its own change."""
    cipher = Keyring(MasterKey(secrets.token_bytes(32)))
    ref = ServiceRef("sub", "rg", "together")

    async def scenario() -> None:
        store = await _store(pg_url, cipher)
        try:
            app = TenantAccess(store)
            await app.put_service(ACTOR, ref, SPEC)
            before = await app.get_access(ref, AccessName.ACCESS)
            rotate = [app.regenerate_key(ACTOR, "access.regenerate_secondary_key", ref, AccessName.ACCESS,
                                         KeySlot.SECONDARY) for _ in range(24)]
            stale = [app.update_access(ACTOR, ref, AccessName.ACCESS, '"not-the-tag"', {"enabled": True})
                     for _ in range(4)]
            results = await asyncio.gather(*rotate, *stale, return_exceptions=True)
            rotations, refusals = results[:24], results[24:]
            assert all(not isinstance(r, BaseException) for r in rotations), rotations
            assert all(isinstance(r, BaseException) and getattr(r, "status", None) == 412 for r in refusals)
            # One chain: each rotation replaced the version the one before it made.
            previous = {r.previous_version_id for r in rotations}  # type: ignore[union-attr]
            made = [r.version.id for r in rotations]  # type: ignore[union-attr]
            assert len(set(made)) == 24
            assert previous == {before.secondary_version_id, *made} - {(await app.get_access(
                ref, AccessName.ACCESS)).secondary_version_id}
            assert not (await app.get_access(ref, AccessName.ACCESS)).enabled
        finally:
            await store.close()

    asyncio.run(scenario())
