"""Who did what to which key: the audit trail.

Records are written in the same transaction as the change they describe, so a rotation without
its record (or a record without its rotation) cannot exist. They name key *versions*, never keys.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

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
) -> AuditEvent:
    return AuditEvent(
        id=ordered_id(),
        at=at or _dt.datetime.now(_dt.UTC),
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
    )


@dataclass(frozen=True, slots=True)
class AuditQuery:
    service: ServiceRef
    operation: str | None = None
    since: _dt.datetime | None = None
    until: _dt.datetime | None = None
    top: int = 100
    skip: int = 0
