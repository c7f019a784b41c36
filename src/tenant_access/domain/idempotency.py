"""Idempotency keys for the regenerate operations: a retry never rotates twice.

A client that sent a regenerate request and lost the answer (a timeout, a dropped connection, a
server that crashed after committing) cannot tell whether the key was rotated. If it sent an
``Idempotency-Key`` header, it retries with the same header: the first request's outcome (the new
key version, the version it replaced, the entity tag it produced) was stored in the same
transaction as the rotation itself, so the retry is answered from that record and rotates nothing.

A key is scoped to the principal that sent it; it is remembered for :data:`TTL` after its first
use. Reusing it, within that time, for another operation or another configuration is refused
(409 ``CONFLICT``): it is a client bug, and guessing which request was meant could rotate the wrong
key or hide a rotation that never happened.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass

from tenant_access.domain.audit import Actor
from tenant_access.domain.errors import Conflict, FieldError, ValidationFailed
from tenant_access.domain.models import KeySlot

#: How long a key is remembered after its first use.
TTL = _dt.timedelta(hours=24)
HEADER = "Idempotency-Key"
#: The answer header that marks a replayed outcome.
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_LENGTH = 128
#: Printable ASCII, spaces included; shared with the OpenAPI documents.
PATTERN = rf"^[\x20-\x7e]{{1,{MAX_LENGTH}}}$"
_VALID = re.compile(PATTERN.rstrip("$"))


def parse_header(values: list[str]) -> str | None:
    """The key from the request's ``Idempotency-Key`` header values (none, one, or wrongly several)."""
    if not values:
        return None
    if len(values) > 1:
        raise _invalid("given more than once")
    value = values[0]
    if not _VALID.fullmatch(value):
        raise _invalid(f"must be 1 to {MAX_LENGTH} printable ASCII characters")
    return value


def _invalid(reason: str) -> ValidationFailed:
    return ValidationFailed(
        f"The {HEADER} header is not valid: {reason}.",
        details=[FieldError(f"header.{HEADER}", reason)],
        target=HEADER,
    )


def principal_key(actor: Actor) -> str:
    """Whose key it is: the kind of credential, its subject and its scope, so two services' SAS
    callers (both ``integration``) or two tokens of different scope never share keys."""
    return f"{actor.kind}:{actor.principal}:{actor.scope}"


@dataclass(frozen=True, slots=True)
class IdempotencyClaim:
    """A request's use of a key: looked up, and stored with the change, inside one transaction."""

    principal: str
    key: str
    operation: str
    #: The configuration's resource id, lower-cased (names compare case-insensitively).
    target: str
    at: _dt.datetime

    @property
    def expires_at(self) -> _dt.datetime:
        return self.at + TTL


@dataclass(frozen=True, slots=True)
class IdempotentOutcome:
    """What the first request with a key did: enough to answer every retry exactly as the first."""

    operation: str
    target: str
    version_id: str
    version_created_at: _dt.datetime
    slot: KeySlot
    previous_version_id: str
    etag: str


class IdempotentReplay(Exception):
    """Raised by a store inside the transaction when a claim's key was already used (and is not
    expired); nothing is written. ``version_exists`` is false when the version the outcome names is
    gone (its service was deleted since)."""

    def __init__(self, outcome: IdempotentOutcome, *, version_exists: bool) -> None:
        super().__init__("idempotent replay")
        self.outcome = outcome
        self.version_exists = version_exists


def check_replay(claim: IdempotencyClaim, replay: IdempotentReplay) -> IdempotentOutcome:
    """The stored outcome if it answers this claim; a conflict if the key was used for something else."""
    outcome = replay.outcome
    if outcome.operation != claim.operation or outcome.target != claim.target:
        raise Conflict(
            f"The {HEADER} was already used, within the last 24 hours, for a different request (another "
            "operation or another access configuration); use a new key for every distinct request.",
            azure_code="IdempotencyKeyReused",
            target=HEADER,
        )
    if not replay.version_exists:
        raise Conflict(
            f"The {HEADER} was used for a rotation of a service that has since been deleted; use a new key.",
            azure_code="IdempotencyKeyReused",
            target=HEADER,
        )
    return outcome
