"""The SQL of key usage, shared by both stores (``?`` placeholders; PostgreSQL runs them through
:func:`~tenant_access.storage.sql.pyformat`).

The upsert is commutative: counts add and ``last_used`` only moves forward, so flushes from any
number of replicas, in any order, merge into the same figures.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tenant_access.storage.sql import parse_ts, ts

UPSERT = """
INSERT INTO key_usage (version_id, service_id, uses, last_used)
SELECT ?, service_id, ?, ? FROM key_versions WHERE id = ?
ON CONFLICT (version_id) DO UPDATE SET
    uses = key_usage.uses + excluded.uses,
    last_used = CASE WHEN excluded.last_used > key_usage.last_used THEN excluded.last_used
                     ELSE key_usage.last_used END
"""

SELECT_PREFIX = "SELECT version_id, uses, last_used FROM key_usage WHERE version_id IN "


@dataclass(frozen=True, slots=True)
class UsageRow:
    """What one flush adds for one key version: ``uses`` more uses, the last in minute ``last_used``."""

    version_id: str
    uses: int
    last_used: _dt.datetime


@dataclass(frozen=True, slots=True)
class Usage:
    """A key version's use so far, as stored (every replica's flushed counts)."""

    uses: int
    last_used: _dt.datetime


def upsert_args(rows: Sequence[UsageRow]) -> list[tuple[object, ...]]:
    """Sorted by version id, so concurrent flushes lock rows in one order (no deadlock)."""
    return [(r.version_id, r.uses, ts(minute(r.last_used)), r.version_id)
            for r in sorted(rows, key=lambda r: r.version_id)]


def select_sql(count: int) -> str:
    return SELECT_PREFIX + "(" + ", ".join("?" * count) + ")"


def from_rows(rows: Sequence[Sequence[Any]]) -> dict[str, Usage]:
    return {str(r[0]): Usage(int(r[1]), parse_ts(str(r[2]))) for r in rows}


def minute(when: _dt.datetime) -> _dt.datetime:
    """Usage is kept at minute resolution (as IAM reports an access key's last use)."""
    return when.replace(second=0, microsecond=0)
