"""Addresses and results: small frozen dataclasses, the same whichever wire style the server speaks.

Fields that only the seed style reports (key version ids, creation times) are ``None`` in Azure
style rather than absent, so code written against one server runs unchanged against the other.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Literal

KeySlot = Literal["primary", "secondary"]
AccessName = Literal["access", "gitAccess"]

PROVIDER = "Microsoft.ApiManagement"


def other_slot(slot: KeySlot) -> KeySlot:
    return "secondary" if slot == "primary" else "primary"


@dataclass(frozen=True, slots=True)
class ServiceRef:
    """Where a service lives. Names are sent as given; the server compares them case-insensitively."""

    subscription_id: str
    resource_group: str
    service_name: str

    def access(self, access_name: str = "access") -> AccessRef:
        """The address of one of the service's two access configurations."""
        return AccessRef(self.subscription_id, self.resource_group, self.service_name, access_name)


@dataclass(frozen=True, slots=True)
class AccessRef:
    """Where an access configuration lives: a service plus ``access`` or ``gitAccess``.

    ``access_name`` is a plain string, not checked here, so that the server (which knows the rules
    of the api-version in use) is the one that answers a wrong name.
    """

    subscription_id: str
    resource_group: str
    service_name: str
    access_name: str = "access"

    @property
    def service(self) -> ServiceRef:
        return ServiceRef(self.subscription_id, self.resource_group, self.service_name)


@dataclass(frozen=True, slots=True)
class Service:
    """An API Management service as the server reports it.

    ``created_at`` comes from the seed's ``created_at`` or Azure's ``properties.createdAtUtc``.
    """

    id: str
    name: str
    subscription_id: str
    resource_group: str
    location: str
    sku_name: str
    sku_capacity: int
    publisher_email: str
    publisher_name: str
    tags: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    provisioning_state: str | None = None
    created_at: _dt.datetime | None = None

    @property
    def ref(self) -> ServiceRef:
        return ServiceRef(self.subscription_id, self.resource_group, self.name)


@dataclass(frozen=True, slots=True)
class AccessConfiguration:
    """An access configuration without its keys (reading one never returns keys).

    ``etag`` is the opaque entity tag, unquoted; pass it back as ``if_match`` to change the
    configuration only if nobody else did in between. It is ``None`` where the server gives none
    (Azure-style list items). The key version ids let a caller see a rotation happen without
    reading keys; only the seed style reports them.
    """

    name: str
    enabled: bool
    principal_id: str | None = None
    etag: str | None = None
    id: str | None = None
    primary_key_version_id: str | None = None
    secondary_key_version_id: str | None = None


_MASK = "'***'"


@dataclass(frozen=True, slots=True, repr=False)
class Secrets:
    """Both keys of one configuration, as ``listSecrets`` returns them.

    ``repr`` and ``str`` mask the keys so that logging the object, or a traceback that shows it,
    cannot leak them; read the attributes when you really need the keys.
    """

    name: str
    enabled: bool
    primary_key: str
    secondary_key: str
    principal_id: str | None = None
    etag: str | None = None
    primary_key_version_id: str | None = None
    secondary_key_version_id: str | None = None

    def key(self, slot: KeySlot) -> str:
        return self.primary_key if slot == "primary" else self.secondary_key

    def version_id(self, slot: KeySlot) -> str | None:
        return self.primary_key_version_id if slot == "primary" else self.secondary_key_version_id

    def __repr__(self) -> str:
        return (
            f"Secrets(name={self.name!r}, enabled={self.enabled!r}, principal_id={self.principal_id!r}, "
            f"primary_key={_MASK}, secondary_key={_MASK}, etag={self.etag!r}, "
            f"primary_key_version_id={self.primary_key_version_id!r}, "
            f"secondary_key_version_id={self.secondary_key_version_id!r})"
        )

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class KeyVersion:
    """What a regeneration produced.

    In seed style every field is filled. An Azure-style server answers a regeneration with
    ``204 No Content``, so there ``id``, ``created_at``, ``previous_id`` and ``etag`` are ``None``;
    ``slot`` and ``access_name`` are known from the request. The client deliberately does not
    re-read to fill them: a second request would not be atomic with the first, and the Azure API
    has no key version ids to report anyway.
    """

    slot: KeySlot
    access_name: str
    id: str | None = None
    created_at: _dt.datetime | None = None
    previous_id: str | None = None
    etag: str | None = None


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audit record: who did what to which configuration, and which key versions it touched.

    Records name key *versions*, never keys. ``outcome`` is ``success``, ``denied`` or ``failed``;
    ``status`` the HTTP status the request got.
    """

    time: _dt.datetime | None
    principal: str | None
    role: str | None
    scope: str | None
    operation: str | None
    target: str | None
    outcome: str | None
    request_id: str | None
    client: str | None
    old_version_id: str | None = None
    new_version_id: str | None = None
    id: str | None = None
    status: int | None = None
    detail: str | None = None
    #: Requests the record stands for: more than 1 for a server's summary of refused requests.
    count: int = 1


@dataclass(frozen=True, slots=True, repr=False)
class NewKey:
    """What :func:`rotate` hands to its ``on_new_key`` callback; ``repr`` masks the key."""

    target: AccessRef
    slot: KeySlot
    key: str
    version_id: str | None
    principal_id: str | None

    def __repr__(self) -> str:
        return (
            f"NewKey(target={self.target!r}, slot={self.slot!r}, key={_MASK}, "
            f"version_id={self.version_id!r}, principal_id={self.principal_id!r})"
        )

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class RotationResult:
    """The outcome of :func:`rotate`.

    ``in_use`` is the key clients should now use (the one handed to ``on_new_key``); pass it as
    ``in_use`` to the next rotation. ``standby_version_id`` is the other key, regenerated last and
    used by nobody yet. Version ids are ``None`` against an Azure-style server.
    """

    target: AccessRef
    in_use: KeySlot
    in_use_version_id: str | None
    standby_version_id: str | None


@dataclass(frozen=True, slots=True)
class KeyUse:
    """One key's use, as ``keyUsage`` reports it (the anchor is IAM's access-key-last-used).

    ``last_used_at`` is to the minute, ``None`` when the key never authenticated a request;
    ``unused_for`` is how long since (or since the key was made). ``expires_at`` is set when a
    rotation policy gives keys an expiry.
    """

    slot: KeySlot
    version_id: str | None
    created_at: _dt.datetime | None
    last_used_at: _dt.datetime | None
    use_count: int
    unused_for: str | None = None
    expires_at: _dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class KeyUsage:
    """Both keys' use; ``as_of`` is the server's now (its moved clock in emulator mode), and the
    figures may miss other replicas' uses of the last ``flush_interval_seconds``."""

    name: str
    primary: KeyUse
    secondary: KeyUse
    as_of: _dt.datetime | None = None
    flush_interval_seconds: float | None = None

    def slot(self, slot: KeySlot) -> KeyUse:
        return self.primary if slot == "primary" else self.secondary


@dataclass(frozen=True, slots=True)
class EventSubscription:
    """A webhook subscription to a service's events. ``signed`` says whether deliveries carry a
    Standard Webhooks signature (the secret itself is never returned)."""

    service: ServiceRef
    name: str
    destination: str
    event_types: tuple[str, ...]
    schema: str
    signed: bool
