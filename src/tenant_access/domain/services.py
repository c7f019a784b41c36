"""The decisions about services: creating one creates both access configurations."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

from tenant_access.domain import access, keys
from tenant_access.domain.audit import AuditEvent
from tenant_access.domain.errors import Conflict
from tenant_access.domain.events import Event
from tenant_access.domain.models import AccessName, KeyVersion, Service, ServiceRef, ServiceSpec


@dataclass(frozen=True, slots=True)
class NewConfig:
    name: AccessName
    principal_id: str
    enabled: bool
    primary: KeyVersion
    secondary: KeyVersion
    etag: str


@dataclass(frozen=True, slots=True)
class ServicePlan:
    service: Service
    created: bool
    new_configs: tuple[NewConfig, ...]
    audit: AuditEvent | None = None
    #: Events written to the outbox in the same transaction as the service.
    events: tuple[Event, ...] = ()


#: Azure creates ``access`` disabled (the direct management API must be switched on in the portal)
#: and ``gitAccess`` enabled, as the specification's examples show.
DEFAULT_ENABLED = {AccessName.ACCESS: False, AccessName.GIT: True}


def plan(existing: Service | None, ref: ServiceRef, spec: ServiceSpec, now: _dt.datetime) -> ServicePlan:
    if existing is None:
        service = Service(
            ref, spec.location, spec.sku_name, spec.sku_capacity, spec.publisher_email, spec.publisher_name,
            dict(spec.tags), keys.new_etag(), now, now,
        )
        configs = []
        for name in AccessName:
            primary, secondary = access.initial_keys(ref, name, now)
            configs.append(NewConfig(
                name, name.default_principal_id, DEFAULT_ENABLED[name], primary, secondary, keys.new_etag()
            ))
        return ServicePlan(service, True, tuple(configs))
    if _normalise(existing.location) != _normalise(spec.location):
        raise Conflict(
            f"The service '{existing.ref.name}' already exists in location '{existing.location}'; "
            f"a service cannot move to '{spec.location}'.",
            azure_code="InvalidResourceLocation",
            target="location",
        )
    unchanged = (
        existing.sku_name == spec.sku_name and existing.sku_capacity == spec.sku_capacity
        and existing.publisher_email == spec.publisher_email
        and existing.publisher_name == spec.publisher_name and existing.tags == spec.tags
    )
    service = Service(
        existing.ref, existing.location, spec.sku_name, spec.sku_capacity, spec.publisher_email,
        spec.publisher_name, dict(spec.tags), existing.etag if unchanged else keys.new_etag(),
        existing.created_at, existing.updated_at if unchanged else now,
    )
    return ServicePlan(service, False, ())


def _normalise(location: str) -> str:
    """Azure accepts "West Europe" and "westeurope" as the same location."""
    return location.replace(" ", "").lower()
