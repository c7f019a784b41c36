"""How migrations are applied, on both stores: a new database gets its whole schema in one
transaction (one commit, so one fsync at a first start), an existing one each pending migration in
a transaction of its own; a failure leaves a database that the next start migrates. A new SQLite
file is built beside its name and linked into place whole."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tenant_access.storage import migrations, postgres, sqlite
from tests.backends import NAMES
from tests.pg import Cluster

BROKEN = migrations.Migration(9999, "broken", ("CREATE TABLE late_table (x INTEGER)", "THIS IS NOT SQL"))


class Target:
    """One empty database of either kind, with the store's own ``migrate`` and a count of commits."""

    def __init__(self, kind: str, tmp_path: Path, cluster: Cluster | None) -> None:
        self.kind = kind
        self.commits = 0
        if kind == "sqlite":
            self.lite = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
            self.lite.set_trace_callback(self._traced)
        else:
            assert cluster is not None
            self.cluster = cluster
            self.url = cluster.create_database("migrations")
            self.pg = cluster.connect(self.url)

    def _traced(self, statement: str) -> None:
        if statement.strip().upper() == "COMMIT":
            self.commits += 1

    def migrate(self) -> list[int]:
        """The store's own migration runner (commits are counted on SQLite, whose statements we see)."""
        if self.kind == "sqlite":
            return sqlite.migrate(self.lite)
        return postgres.migrate(self.pg)

    def tables(self) -> set[str]:
        if self.kind == "sqlite":
            rows = self.lite.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        else:
            rows = self.pg.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()").fetchall()
        return {str(r[0]) for r in rows}

    def versions(self) -> list[int]:
        return [int(r[0]) for r in self.query("SELECT version FROM schema_migrations ORDER BY version")]

    def query(self, sql: str) -> list[Any]:
        if self.kind == "sqlite":
            return self.lite.execute(sql).fetchall()
        return self.pg.execute(sql).fetchall()

    def close(self) -> None:
        if self.kind == "sqlite":
            self.lite.close()
        else:
            self.pg.close()
            self.cluster.drop_database(self.url)


@pytest.fixture(params=NAMES)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    cluster = request.getfixturevalue("pg_cluster") if request.param == "postgres" else None
    made = Target(request.param, tmp_path, cluster)
    yield made
    made.close()


def _only(monkeypatch: pytest.MonkeyPatch, make: Callable[[list[migrations.Migration]], list[migrations.Migration]]
          ) -> None:
    real = migrations.load()
    monkeypatch.setattr(migrations, "load", lambda: make(list(real)))


def test_a_new_database_gets_every_migration_in_one_commit(target: Target) -> None:
    everything = [m.version for m in migrations.load()]
    assert target.migrate() == everything
    assert target.versions() == everything
    if target.kind == "sqlite":
        assert target.commits == 1
    assert target.migrate() == []


def test_an_existing_database_gets_each_pending_migration_in_its_own_transaction(
        target: Target, monkeypatch: pytest.MonkeyPatch) -> None:
    everything = migrations.load()
    with monkeypatch.context() as patch:
        _only(patch, lambda found: found[:-2])
        target.migrate()
    assert target.versions() == [m.version for m in everything[:-2]]
    target.commits = 0
    assert target.migrate() == [m.version for m in everything[-2:]]
    assert target.versions() == [m.version for m in everything]
    if target.kind == "sqlite":  # one per migration, applied or found applied
        assert target.commits == len(everything) + 1


def test_a_failure_in_the_schema_of_a_new_database_leaves_no_schema(target: Target,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch:
        _only(patch, lambda found: [*found, BROKEN])
        with pytest.raises(Exception, match="syntax"):
            target.migrate()
    assert target.tables() == set()  # not even schema_migrations: the next start begins afresh
    assert target.migrate() == [m.version for m in migrations.load()]


def test_a_failure_on_an_existing_database_keeps_the_migrations_before_it(target: Target,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    everything = migrations.load()
    with monkeypatch.context() as patch:
        _only(patch, lambda found: found[:1])
        target.migrate()
    with monkeypatch.context() as patch:
        _only(patch, lambda found: [*found, BROKEN])
        with pytest.raises(Exception, match="syntax"):
            target.migrate()
    assert target.versions() == [m.version for m in everything]
    assert "late_table" not in target.tables()


# -- a new SQLite database: built beside its name, then linked into place -------------------------

def _store(path: Path) -> sqlite.SqliteStore:
    from tenant_access.security.encryption import Keyring, MasterKey

    return sqlite.SqliteStore(path, Keyring(MasterKey(bytes(32))))


def _open_and_close(path: Path) -> None:
    async def run() -> None:
        store = _store(path)
        await store.open()
        await store.close()

    asyncio.run(run())


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    return int(done.stdout)


def test_a_new_sqlite_database_appears_whole_private_and_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "data" / "tenant-access.db"
    _open_and_close(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
        assert versions == [m.version for m in migrations.load()]
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    assert sorted(p.name for p in path.parent.iterdir() if "building" in p.name) == []


def test_a_crashed_build_leaves_no_database_and_its_file_is_removed_by_the_next(tmp_path: Path) -> None:
    path = tmp_path / "tenant-access.db"
    crashed = tmp_path / f".tenant-access.db.{_dead_pid()}.0badf00d.building"
    crashed.write_bytes(b"half a schema")
    running = tmp_path / f".tenant-access.db.{os.getppid()}.0000beef.building"  # a build still going on
    running.write_bytes(b"")
    _open_and_close(path)
    assert not crashed.exists()
    assert running.exists()
    assert path.exists()


def test_servers_creating_the_same_database_together_share_one(tmp_path: Path) -> None:
    path = tmp_path / "tenant-access.db"
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: _open_and_close(path), range(4)))
    conn = sqlite3.connect(path)
    try:
        assert [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")] == \
            [m.version for m in migrations.load()]
    finally:
        conn.close()
    assert [p.name for p in tmp_path.iterdir() if "building" in p.name] == []


def test_an_empty_file_made_by_an_older_version_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "tenant-access.db"
    path.touch(mode=0o600)
    inode = path.stat().st_ino
    _open_and_close(path)
    assert path.stat().st_ino == inode
    conn = sqlite3.connect(path)
    try:
        assert len(conn.execute("SELECT version FROM schema_migrations").fetchall()) == len(migrations.load())
    finally:
        conn.close()
