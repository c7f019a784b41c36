"""The honest limit for a durable write: what the database itself does per second with nothing of ours.

A rotation must, on disk: take the write lock, replace one encrypted key (a small blob), append one
audit row, and commit durably. This module does exactly that in a plain loop, one transaction after
another, on the same file system (SQLite: WAL, ``synchronous=FULL``, ``BEGIN IMMEDIATE``) or the same
PostgreSQL server as the store under test. No encryption, no HTTP, no Python of ours beyond the loop.

It replaces nothing in the harness: the "storage ceiling" (our own store driven by one caller) is
still reported, but it already contains our per-rotation costs and so moves when we get slower; this
figure does not. Group commit lets the server go *past* this sequential loop, because several
rotations share one fsync; a ratio below 1.0 means our per-rotation work, not the disk, is the limit.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import tempfile
import time
from pathlib import Path

_SCHEMA = (
    "CREATE TABLE keys (id INTEGER PRIMARY KEY, material BLOB NOT NULL)",
    "CREATE TABLE audit (id INTEGER PRIMARY KEY, at TEXT NOT NULL, operation TEXT NOT NULL, "
    "target TEXT NOT NULL, old_version TEXT, new_version TEXT)",
)
_ROW = ("2026-01-01T00:00:00.000000Z", "access.regenerate_secondary_key",
        "/subscriptions/x/resourceGroups/y/providers/Microsoft.ApiManagement/service/z/tenant/access")


def sqlite_commits_per_second(directory: Path, seconds: float) -> float:
    """Sequential durable rotations per second on a fresh SQLite file in ``directory``."""
    fd, name = tempfile.mkstemp(prefix="disk-limit-", suffix=".db", dir=directory)
    os.close(fd)
    path = Path(name)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        for statement in _SCHEMA:
            conn.execute(statement)
        conn.execute("INSERT INTO keys (id, material) VALUES (1, ?)", (secrets.token_bytes(64),))
        done = 0
        began = time.perf_counter()
        deadline = began + seconds
        while time.perf_counter() < deadline:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("UPDATE keys SET material = ? WHERE id = 1", (secrets.token_bytes(64),))
            conn.execute("INSERT INTO audit (at, operation, target, old_version, new_version) VALUES (?, ?, ?, ?, ?)",
                         (*_ROW, secrets.token_hex(12), secrets.token_hex(12)))
            conn.execute("COMMIT")
            done += 1
        return done / (time.perf_counter() - began)
    finally:
        conn.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def postgres_commits_per_second(url: str, seconds: float) -> float:
    """Sequential durable rotations per second in temporary tables of the PostgreSQL at ``url``
    (``synchronous_commit`` as the server has it, which is what our rotations use)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        # Ordinary (logged) tables: a TEMP table skips the WAL and would measure nothing durable.
        conn.execute("DROP TABLE IF EXISTS bench_disk_limit_keys, bench_disk_limit_audit")
        conn.execute("CREATE TABLE bench_disk_limit_keys (id INTEGER PRIMARY KEY, material BYTEA NOT NULL)")
        conn.execute("CREATE TABLE bench_disk_limit_audit (id BIGSERIAL PRIMARY KEY, at TEXT NOT NULL, "
                     "operation TEXT NOT NULL, target TEXT NOT NULL, old_version TEXT, new_version TEXT)")
        try:
            conn.execute("INSERT INTO bench_disk_limit_keys (id, material) VALUES (1, %s)", (secrets.token_bytes(64),))
            done = 0
            began = time.perf_counter()
            deadline = began + seconds
            while time.perf_counter() < deadline:
                with conn.transaction():
                    conn.execute("UPDATE bench_disk_limit_keys SET material = %s WHERE id = 1",
                                 (secrets.token_bytes(64),))
                    conn.execute("INSERT INTO bench_disk_limit_audit (at, operation, target, old_version, "
                                 "new_version) VALUES (%s, %s, %s, %s, %s)",
                                 (*_ROW, secrets.token_hex(12), secrets.token_hex(12)))
                done += 1
            return done / (time.perf_counter() - began)
        finally:
            conn.execute("DROP TABLE bench_disk_limit_keys, bench_disk_limit_audit")


def commits_per_second(data_dir: Path, database_url: str | None, seconds: float) -> float:
    """The limit for the store the benchmark runs against (a PostgreSQL URL, else SQLite in ``data_dir``)."""
    if database_url and database_url.startswith("postgres"):
        return postgres_commits_per_second(database_url, seconds)
    return sqlite_commits_per_second(data_dir, seconds)
