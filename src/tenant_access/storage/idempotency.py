"""The idempotency-key SQL every adapter shares (``?`` placeholders; psycopg needs ``pyformat``).

Inside ``modify_access``'s transaction an adapter runs, in this order:

1. :data:`SELECT` the claim's row; if it exists and has not expired, check that its key version
   still exists (:data:`VERSION_EXISTS`) and raise :class:`IdempotentReplay` (nothing is written);
   if it exists but has expired, :data:`DELETE` it.
2. the change itself, as without a claim;
3. :data:`INSERT` the outcome (:func:`insert_args`), then :data:`PURGE` expired rows.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from typing import Any

from tenant_access.domain.idempotency import IdempotencyClaim, IdempotentOutcome, IdempotentReplay
from tenant_access.domain.models import AccessChange, KeySlot, Secrets

SELECT = (
    "SELECT operation, target, version_id, version_created_at, slot, previous_version_id, etag, expires_at "
    "FROM idempotency_keys WHERE principal = ? AND idempotency_key = ?"
)
VERSION_EXISTS = "SELECT 1 FROM key_versions WHERE id = ? AND service_id = ?"
DELETE = "DELETE FROM idempotency_keys WHERE principal = ? AND idempotency_key = ?"
INSERT = (
    "INSERT INTO idempotency_keys (principal, idempotency_key, operation, target, version_id, version_created_at, "
    "slot, previous_version_id, etag, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
PURGE = "DELETE FROM idempotency_keys WHERE expires_at < ?"


def _ts(value: _dt.datetime) -> str:
    return value.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def key_args(claim: IdempotencyClaim) -> tuple[str, str]:
    return (claim.principal, claim.key)


def is_live(row: Sequence[Any], claim: IdempotencyClaim) -> bool:
    """Whether a stored row still binds its key (it has not expired at the claim's time)."""
    return str(row[7]) > _ts(claim.at)


def replay(row: Sequence[Any], *, version_exists: bool) -> IdempotentReplay:
    return IdempotentReplay(
        IdempotentOutcome(
            operation=row[0], target=row[1], version_id=row[2],
            version_created_at=_dt.datetime.fromisoformat(row[3]), slot=KeySlot(row[4]),
            previous_version_id=row[5], etag=row[6],
        ),
        version_exists=version_exists,
    )


def insert_args(claim: IdempotencyClaim, current: Secrets, change: AccessChange) -> tuple[Any, ...]:
    """The row that remembers ``change``; an idempotent change creates exactly one key version."""
    if len(change.new_versions) != 1:
        raise ValueError("an idempotent change must create exactly one key version")
    version = change.new_versions[0]
    return (
        claim.principal, claim.key, claim.operation, claim.target, version.id, _ts(version.created_at),
        version.slot.value, current.config.version_id(version.slot), change.etag, _ts(claim.at),
        _ts(claim.expires_at),
    )


def purge_args(claim: IdempotencyClaim) -> tuple[str]:
    return (_ts(claim.at),)
