"""What must hold in a store's database after any sequence of requests, faults and crashes.

Read straight from the SQLite file (read-only), so a bug in the server's own reading code cannot
hide a bug in its writing code.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

#: Operations whose audit record names the key versions they created.
CHANGES = ("access.regenerate_primary_key", "access.regenerate_secondary_key", "access.git_regenerate_primary_key",
           "access.git_regenerate_secondary_key", "access.create", "access.update")


def connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)


def problems(path: Path) -> list[str]:
    """Everything wrong with the database at ``path``; an empty list when it is consistent."""
    found: list[str] = []
    with connect(path) as conn:
        integrity = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        if integrity != ["ok"]:
            return [f"integrity_check: {integrity[:5]}"]
        found += [f"foreign key: {row}" for row in conn.execute("PRAGMA foreign_key_check")]
        versions = {row[0]: row[1:] for row in conn.execute(
            "SELECT id, service_id, access_name, slot, secret IS NOT NULL, origin, created_at, superseded_at "
            "FROM key_versions")}
        current: set[str] = set()
        for service_id, name, primary, secondary in conn.execute(
                "SELECT service_id, name, primary_version_id, secondary_version_id FROM access_configs"):
            for slot, version_id in (("primary", primary), ("secondary", secondary)):
                current.add(version_id)
                row = versions.get(version_id)
                if row is None:
                    found.append(f"{name} {slot}: current version {version_id} does not exist")
                elif row[:3] != (service_id, name, slot) or not row[3] or row[6] is not None:
                    found.append(f"{name} {slot}: current version {version_id} is {row}")
        for version_id, row in versions.items():
            if version_id not in current and (row[6] is None or row[3]):
                found.append(f"version {version_id} is neither current nor superseded and erased: {row}")
        found += _audit_matches_versions(conn, versions)
        found += _idempotency_rows(conn, versions)
    return found


def _audit_matches_versions(conn: sqlite3.Connection, versions: dict[str, tuple[object, ...]]) -> list[str]:
    """Every key version a change created has exactly one audit record, and that record names the
    version it replaced, which was superseded at the new one's creation: the chain is unbroken."""
    found: list[str] = []
    named: Counter[str] = Counter()
    marks = ",".join("?" * len(CHANGES))
    for record_id, old, new in conn.execute(
            f"SELECT id, old_version_id, new_version_id FROM audit_events WHERE outcome = 'success' "
            f"AND operation IN ({marks}) AND new_version_id IS NOT NULL", CHANGES):
        olds, news = old.split(","), new.split(",")
        if len(olds) != len(news):
            found.append(f"audit {record_id}: {old} -> {new}")
            continue
        for before, after in zip(olds, news, strict=True):
            named[after] += 1
            if after not in versions:
                continue  # the service was deleted since; its versions went with it
            previous = versions.get(before)
            if previous is None:
                found.append(f"audit {record_id}: replaced version {before} does not exist")
            elif previous[6] != versions[after][5] or previous[2] != versions[after][2]:
                found.append(f"audit {record_id}: {before} was not superseded by {after} ({previous}, "
                             f"{versions[after]})")
    for version_id, row in versions.items():
        if row[4] != "created" and named[version_id] != 1:
            found.append(f"version {version_id} ({row[4]}) has {named[version_id]} audit records")
    return found


def _idempotency_rows(conn: sqlite3.Connection, versions: dict[str, tuple[object, ...]]) -> list[str]:
    found: list[str] = []
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'idempotency_keys'").fetchone():
        return ["the idempotency_keys table is missing"]
    for key, version_id, previous in conn.execute(
            "SELECT idempotency_key, version_id, previous_version_id FROM idempotency_keys"):
        row = versions.get(version_id)
        if row is not None and (row[4] != "regenerated" or versions.get(previous, (None,) * 7)[6] != row[5]):
            found.append(f"idempotency key {key!r}: version {version_id} is not the rotation of {previous}")
    return found


def regenerated(path: Path) -> set[str]:
    with connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM key_versions WHERE origin = 'regenerated'")}
