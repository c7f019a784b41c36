"""The SQL of rotation policies and their scheduler state, shared by both stores (``?``
placeholders; PostgreSQL runs them through :func:`~tenant_access.storage.sql.pyformat`)."""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from typing import Any

from tenant_access.domain.models import AccessName, ServiceRef
from tenant_access.storage.sql import parse_ts, ts


@dataclass(frozen=True, slots=True)
class PolicyRecord:
    """A stored policy (the canonical document) and what the scheduler last did with it."""

    service: ServiceRef
    access_name: AccessName
    document: dict[str, Any]
    created_at: _dt.datetime
    updated_at: _dt.datetime
    last_run_at: _dt.datetime | None = None
    last_outcome: str | None = None
    blocked_since: _dt.datetime | None = None


SERVICE_ID = "SELECT id FROM services WHERE subscription_key = ? AND resource_group_key = ? AND name_key = ?"

UPSERT = """
INSERT INTO rotation_policies (service_id, access_name, document, created_at, updated_at)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (service_id, access_name) DO UPDATE SET
    document = excluded.document, updated_at = excluded.updated_at, blocked_since = NULL
"""

DELETE = "DELETE FROM rotation_policies WHERE service_id = ? AND access_name = ?"

SELECT = """
SELECT s.subscription_id, s.resource_group, s.name, p.access_name, p.document, p.created_at, p.updated_at,
       p.last_run_at, p.last_outcome, p.blocked_since
FROM rotation_policies p JOIN services s ON s.id = p.service_id
"""
SELECT_ONE = SELECT + (" WHERE s.subscription_key = ? AND s.resource_group_key = ? AND s.name_key = ?"
                       " AND p.access_name = ?")
SELECT_ALL = SELECT + " ORDER BY s.subscription_key, s.resource_group_key, s.name_key, p.access_name"

#: The outcome of a scheduler pass. ``blocked_since`` is set only if it was not (one record per
#: blocked episode, whichever replica sees it first) and cleared by any outcome that is not blocked.
SET_OUTCOME = """
UPDATE rotation_policies SET last_run_at = ?, last_outcome = ?, blocked_since = ?
WHERE service_id = (SELECT id FROM services WHERE subscription_key = ? AND resource_group_key = ? AND name_key = ?)
  AND access_name = ?
"""
SET_BLOCKED = SET_OUTCOME.rstrip() + " AND blocked_since IS NULL"


def upsert_args(service_id: str, name: AccessName, document: dict[str, Any], now: _dt.datetime) -> tuple[Any, ...]:
    return (service_id, name.value, json.dumps(document, sort_keys=True), ts(now), ts(now))


def one_args(ref: ServiceRef, name: AccessName) -> tuple[Any, ...]:
    return (*ref.key, name.value)


def outcome_args(ref: ServiceRef, name: AccessName, at: _dt.datetime, outcome: str,
                 blocked_since: _dt.datetime | None) -> tuple[Any, ...]:
    return (ts(at), outcome[:500], ts(blocked_since) if blocked_since else None, *ref.key, name.value)


def from_row(row: Any) -> PolicyRecord:
    def when(value: Any) -> _dt.datetime | None:
        return parse_ts(value) if value else None

    return PolicyRecord(
        ServiceRef(row[0], row[1], row[2]), AccessName(row[3]), json.loads(row[4]), parse_ts(row[5]),
        parse_ts(row[6]), when(row[7]), row[8], when(row[9]),
    )
