"""The two storage backends the API tests run against, behind one interface.

A :class:`Backend` makes databases (a fresh one per server) and servers on them; a :class:`Database`
lets a test reach into the real database behind a server (to plant a fault, or to tamper with a
stored value) with the same ``?``-style SQL on either backend.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.pg import Cluster
from tests.serverproc import ServerProcess

#: Which backends the parametrised fixtures use; ``TEST_BACKENDS=sqlite`` runs only SQLite.
NAMES = tuple(n.strip() for n in os.environ.get("TEST_BACKENDS", "sqlite,postgres").split(",") if n.strip())


class Database:
    kind = ""

    def args(self) -> list[str]:
        """Flags that point ``tenant-access`` (server or CLI) at this database."""
        raise NotImplementedError

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """One statement with ``?`` placeholders, committed; answers its rows (if any)."""
        raise NotImplementedError

    def refuse_inserts(self, table: str) -> None:
        """From now on every INSERT into ``table`` fails inside the database (a real fault)."""
        raise NotImplementedError

    def allow_inserts(self, table: str) -> None:
        raise NotImplementedError

    def dump(self) -> bytes:
        """Everything the database holds, as bytes to search (for leaked keys)."""
        raise NotImplementedError

    def drop(self) -> None:
        pass


class SqliteDatabase(Database):
    kind = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path

    def args(self) -> list[str]:
        return []  # the default: tenant-access.db in the data directory

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        db = sqlite3.connect(self.path, timeout=10)
        try:
            rows = db.execute(sql, params).fetchall()
            db.commit()
            return rows
        finally:
            db.close()

    def dump(self) -> bytes:
        """The raw files: the database, its write-ahead log and shared memory index."""
        return b"\n".join(p.read_bytes() for p in sorted(self.path.parent.glob(self.path.name + "*")))

    def refuse_inserts(self, table: str) -> None:
        self.execute(f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} BEGIN SELECT RAISE(ABORT, 'no'); END")

    def allow_inserts(self, table: str) -> None:
        self.execute(f"DROP TRIGGER refuse_{table}")


class PostgresDatabase(Database):
    kind = "postgres"

    def __init__(self, cluster: Cluster, url: str) -> None:
        self.cluster = cluster
        self.url = url

    def args(self) -> list[str]:
        return ["--database-url", self.url]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.cluster.connect(self.url) as conn:
            cur = conn.execute(sql.replace("?", "%s"), params or None)
            return cur.fetchall() if cur.description else []

    def dump(self) -> bytes:
        """Every row of every table, as text (the files of a shared server are not ours to read)."""
        tables = [r[0] for r in self.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        assert tables
        return b"\n".join(str(row[0]).encode() for table in tables
                          for row in self.execute(f'SELECT t::text FROM "{table}" t'))

    def refuse_inserts(self, table: str) -> None:
        self.execute("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                     "$$ BEGIN RAISE EXCEPTION 'no'; END $$")
        self.execute(f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION refuse()")

    def allow_inserts(self, table: str) -> None:
        self.execute(f"DROP TRIGGER refuse_{table} ON {table}")
        self.execute("DROP FUNCTION refuse()")

    def drop(self) -> None:
        self.cluster.drop_database(self.url)


class DbServer(ServerProcess):
    """A server process that knows its database."""

    def __init__(self, data_dir: Path, database: Database, args: Sequence[str] = (),
                 env: dict[str, str] | None = None) -> None:
        super().__init__(data_dir, [*database.args(), *args], env)
        self.database = database


class Backend:
    def __init__(self, name: str, cluster: Cluster | None = None) -> None:
        self.name = name
        self.cluster = cluster
        self._made: list[Database] = []

    def __repr__(self) -> str:
        return self.name

    def database(self, data_dir: Path) -> Database:
        """A new, empty database for a server whose data directory is ``data_dir``."""
        if self.name == "sqlite":
            made: Database = SqliteDatabase(data_dir / "tenant-access.db")
        else:
            assert self.cluster is not None
            made = PostgresDatabase(self.cluster, self.cluster.create_database())
        self._made.append(made)
        return made

    def server(self, data_dir: Path, args: Sequence[str] = (), env: dict[str, str] | None = None) -> DbServer:
        """A server (not started) on a new database of this backend."""
        return DbServer(data_dir, self.database(data_dir), args, env)

    def close(self) -> None:
        for made in self._made:
            made.drop()
        self._made.clear()
