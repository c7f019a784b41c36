"""The use cases: what each API operation does, independent of how it arrived.

The HTTP layer calls these with parsed, validated arguments and turns the results (or the
:mod:`~tenant_access.domain.errors` they raise) into responses in the active wire format.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tenant_access.domain import access, services
from tenant_access.domain.errors import NotFound
from tenant_access.domain.keys import utcnow
from tenant_access.domain.models import (
    AccessChange,
    AccessConfig,
    AccessName,
    KeySlot,
    Rotation,
    Secrets,
    Service,
    ServiceRef,
    ServiceSpec,
)
from tenant_access.domain.services import ServicePlan
from tenant_access.storage.base import Store


def _service_missing(ref: ServiceRef) -> NotFound:
    return NotFound(
        f"The Resource 'Microsoft.ApiManagement/service/{ref.name}' under resource group "
        f"'{ref.resource_group}' was not found.",
        target=ref.name,
    )


@dataclass
class TenantAccess:
    store: Store

    # -- services --------------------------------------------------------------------------------

    async def put_service(self, ref: ServiceRef, spec: ServiceSpec) -> ServicePlan:
        now = utcnow()
        return await self.store.put_service(ref, lambda existing: services.plan(existing, ref, spec, now))

    async def get_service(self, ref: ServiceRef) -> Service:
        found = await self.store.get_service(ref)
        if found is None:
            raise _service_missing(ref)
        return found

    async def list_services(self, subscription_id: str, resource_group: str) -> list[Service]:
        return await self.store.list_services(subscription_id, resource_group)

    async def delete_service(self, ref: ServiceRef) -> Service | None:
        return await self.store.delete_service(ref)

    # -- access configurations -------------------------------------------------------------------

    async def list_access(self, ref: ServiceRef) -> list[AccessConfig]:
        found = await self.store.list_access(ref)
        if found is None:
            raise _service_missing(ref)
        return found

    async def get_access(self, ref: ServiceRef, name: AccessName) -> AccessConfig:
        found = await self.store.get_access(ref, name)
        if found is None:
            raise _service_missing(ref)
        return found

    async def list_secrets(self, ref: ServiceRef, name: AccessName) -> Secrets:
        found = await self.store.get_secrets(ref, name)
        if found is None:
            raise _service_missing(ref)
        return found

    async def replace_access(
        self, ref: ServiceRef, name: AccessName, if_match: str | None, fields: dict[str, object]
    ) -> AccessConfig:
        now = utcnow()
        return await self._modify(ref, name, lambda current: access.replace(current, if_match, fields, now))

    async def update_access(
        self, ref: ServiceRef, name: AccessName, if_match: str | None, fields: dict[str, object]
    ) -> AccessConfig:
        now = utcnow()
        return await self._modify(ref, name, lambda current: access.update(current, if_match, fields, now))

    async def regenerate_key(self, ref: ServiceRef, name: AccessName, slot: KeySlot) -> Rotation:
        """The seed operation (with ``slot=SECONDARY``) and its three siblings."""
        now = utcnow()
        outcome: list[tuple[str, AccessChange]] = []

        def decide(current: Secrets) -> AccessChange:
            change = access.regenerate(current, slot, now)
            outcome.append((current.config.version_id(slot), change))
            return change

        config = await self._modify(ref, name, decide)
        previous_version_id, change = outcome[-1]
        return Rotation(change.new_versions[0], previous_version_id, config)

    async def _modify(
        self, ref: ServiceRef, name: AccessName, decide: Callable[[Secrets], AccessChange]
    ) -> AccessConfig:
        try:
            return await self.store.modify_access(ref, name, decide)
        except NotFound:
            raise _service_missing(ref) from None
