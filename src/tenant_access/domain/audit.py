"""Who did what to which key: the audit trail.

Records are written in the same transaction as the change they describe, so a rotation without
its record (or a record without its rotation) cannot exist. They name key *versions*, never keys.

Records fall into three kinds, which retention treats apart (``domain/retention.py``): *changes*
(rotations, configuration and service changes: the history an owner must be able to prove),
*reads* (``listSecrets``) and *refusals* (anything not a success). Refusals that say nothing about
who asked (no credential, a bad one, a throttled caller) are summarised: one record per client
address and minute carries a ``count`` (``refusals.py``), so a flood cannot fill the disk.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Literal

from tenant_access.domain.keys import ordered_id
from tenant_access.domain.models import ServiceRef


@dataclass(frozen=True, slots=True)
class Actor:
    """The authenticated caller of one request, as the audit trail names it."""

    principal: str
    role: str
    scope: str
    kind: str  # "bearer", "sas", "anonymous"
    request_id: str
    client: str


@dataclass(frozen=True, slots=True)
class AuditEvent:
    id: str
    at: _dt.datetime
    principal: str
    role: str
    scope: str
    operation: str
    target: str
    outcome: str  # "success", "denied", "failed"
    status: int
    request_id: str
    client: str
    service: ServiceRef | None = None
    old_version_id: str | None = None
    new_version_id: str | None = None
    detail: str | None = None
    #: How many requests this record stands for: 1, except for a summary of refusals.
    count: int = 1


AuditKind = Literal["changes", "reads", "refusals"]
AUDIT_KINDS: tuple[AuditKind, ...] = ("changes", "reads", "refusals")
IdBand = Literal["time", "below", "above"]
ID_BANDS: tuple[IdBand, ...] = ("time", "below", "above")
READ_OPERATION = "access.list_secrets"


def kind_of(record: AuditEvent) -> AuditKind:
    """The same split as :func:`tenant_access.storage.sql.kind_sql`, for records in memory."""
    if record.outcome != "success":
        return "refusals"
    return "reads" if record.operation == READ_OPERATION else "changes"


def event(
    actor: Actor,
    operation: str,
    target: str,
    *,
    outcome: str = "success",
    status: int = 200,
    service: ServiceRef | None = None,
    old_version_id: str | None = None,
    new_version_id: str | None = None,
    detail: str | None = None,
    at: _dt.datetime | None = None,
    count: int = 1,
) -> AuditEvent:
    when = at or _dt.datetime.now(_dt.UTC)
    return AuditEvent(
        # The id carries the record's own time, so retention and export select by primary key range.
        id=ordered_id(when),
        at=when,
        principal=actor.principal,
        role=actor.role,
        scope=actor.scope,
        operation=operation,
        target=target,
        outcome=outcome,
        status=status,
        request_id=actor.request_id,
        client=actor.client,
        service=service,
        old_version_id=old_version_id,
        new_version_id=new_version_id,
        detail=detail,
        count=count,
    )


@dataclass(frozen=True, slots=True)
class AuditQuery:
    service: ServiceRef
    operation: str | None = None
    since: _dt.datetime | None = None
    until: _dt.datetime | None = None
    top: int = 100
    skip: int = 0
    kind: AuditKind | None = None


@dataclass(frozen=True, slots=True)
class AuditScan:
    """Records of every service, oldest first, for export and pruning: those of ``kinds`` created
    in ``[since, until)``, after the record ``after`` (an id: where the previous page ended)."""

    kinds: tuple[AuditKind, ...] = AUDIT_KINDS
    since: _dt.datetime | None = None
    until: _dt.datetime | None = None
    after: str | None = None
    limit: int = 500
    #: Which ids: ``time``, those that begin with their record's time (every id made since
    #: 2026-11-27), selected by primary key range; ``below`` and ``above`` that band, where builds
    #: before then put the ids they made at random, selected by time alone. See ``storage/sql.py``.
    band: IdBand = "time"
