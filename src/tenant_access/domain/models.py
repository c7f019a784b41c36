"""The resource model: services, their two access configurations, and key versions.

Every service has exactly two access configurations, ``access`` and ``gitAccess``; each holds a
primary and a secondary key. A key is never edited in place: every regeneration creates a new
:class:`KeyVersion`, so that audit records and shared access signatures can name the exact key they
were about.
"""

from __future__ import annotations

import datetime as _dt
import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from tenant_access.domain.audit import AuditEvent
    from tenant_access.domain.events import Event


class AccessName(enum.StrEnum):
    ACCESS = "access"
    GIT = "gitAccess"

    @property
    def default_principal_id(self) -> str:
        return "integration" if self is AccessName.ACCESS else "git"


class KeySlot(enum.StrEnum):
    PRIMARY = "primary"
    SECONDARY = "secondary"

    @property
    def other(self) -> KeySlot:
        return KeySlot.SECONDARY if self is KeySlot.PRIMARY else KeySlot.PRIMARY


@dataclass(frozen=True, slots=True)
class ServiceRef:
    """How a caller addresses a service. Names compare case-insensitively, as in Azure."""

    subscription_id: str
    resource_group: str
    name: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.subscription_id.lower(), self.resource_group.lower(), self.name.lower())

    @property
    def resource_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.ApiManagement/service/{self.name}"
        )


@dataclass(frozen=True, slots=True)
class Service:
    ref: ServiceRef
    location: str
    sku_name: str
    sku_capacity: int
    publisher_email: str
    publisher_name: str
    tags: dict[str, str]
    etag: str
    created_at: _dt.datetime
    updated_at: _dt.datetime


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """What a caller asks for when creating or updating a service."""

    location: str
    sku_name: str
    sku_capacity: int
    publisher_email: str
    publisher_name: str
    tags: dict[str, str] = field(default_factory=dict)


class _Masked:
    """Mixin: secrets never print, whatever logs or tracebacks do with the object."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} (secret, masked)>"

    __str__ = __repr__


@dataclass(frozen=True, slots=True, repr=False)
class KeyVersion(_Masked):
    """One generation of one key. ``secret`` is the key itself; ``id`` is safe to show."""

    id: str
    service: ServiceRef
    access_name: AccessName
    slot: KeySlot
    secret: str
    created_at: _dt.datetime
    origin: str  # "created" with the service, "regenerated", or "supplied" by a caller

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "slot": self.slot.value, "created_at": self.created_at}


@dataclass(frozen=True, slots=True)
class AccessConfig:
    """An access configuration without its key material: what ``GET`` may return."""

    service: ServiceRef
    name: AccessName
    principal_id: str
    enabled: bool
    etag: str
    created_at: _dt.datetime
    updated_at: _dt.datetime
    primary_version_id: str
    primary_created_at: _dt.datetime
    secondary_version_id: str
    secondary_created_at: _dt.datetime

    @property
    def resource_id(self) -> str:
        return f"{self.service.resource_id}/tenant/{self.name.value}"

    def version_id(self, slot: KeySlot) -> str:
        return self.primary_version_id if slot is KeySlot.PRIMARY else self.secondary_version_id


@dataclass(frozen=True, slots=True, repr=False)
class Secrets(_Masked):
    """An access configuration with both keys: only ``listSecrets`` returns this."""

    config: AccessConfig
    primary_key: str
    secondary_key: str
    #: When each key expires (primary, secondary) under a rotation policy's expiryTime; None: never.
    expires_at: tuple[_dt.datetime | None, _dt.datetime | None] = (None, None)


@dataclass(frozen=True, slots=True)
class AccessChange:
    """What a domain decision does to one access configuration; storage applies it atomically."""

    principal_id: str
    enabled: bool
    etag: str
    updated_at: _dt.datetime
    new_versions: tuple[KeyVersion, ...] = ()
    #: Written in the same transaction as the change; if it cannot be written, nothing is.
    audit: AuditEvent | None = None
    #: Events (``domain/events.py``) written to the outbox in that same transaction; or what makes
    #: them, called only if someone wants them (a rotation nobody subscribed to does not pay for them).
    events: tuple[Event, ...] | Callable[[], tuple[Event, ...]] = ()
    #: A scheduled rotation's outcome for its rotation policy (when it ran, what it did), written in
    #: that same transaction: a crash cannot leave the policy saying anything but what happened.
    policy_outcome: tuple[_dt.datetime, str] | None = None


@dataclass(frozen=True, slots=True)
class Rotation:
    """The outcome of one regeneration: the version that replaced ``previous_version_id``."""

    version: KeyVersion
    previous_version_id: str
    config: AccessConfig
    #: True when this is the stored outcome of an earlier request with the same idempotency key.
    replayed: bool = False
