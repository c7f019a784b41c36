"""A change and its audit record are one transaction, on both stores: when the record cannot be
written (here: its id is taken), the subscription or principal change does not happen either."""

from __future__ import annotations

import asyncio
import datetime as _dt
from collections.abc import Callable

import pytest

from tenant_access.domain.audit import AuditScan, event
from tenant_access.domain.errors import TenantAccessError
from tenant_access.domain.event_subscriptions import EventSubscription
from tenant_access.domain.models import ServiceRef
from tenant_access.domain.principals import ServicePrincipal
from tenant_access.storage.base import Store
from tests.events.conftest import ACTOR

REF = ServiceRef("00000000-0000-0000-0000-00000000a7c1", "rg", "svc")
NOW = _dt.datetime(2026, 12, 4, 12, 0, tzinfo=_dt.UTC)


def _sub(name: str) -> EventSubscription:
    return EventSubscription(REF, name, "https://hooks.example/x", (), "CloudEventSchemaV1_0", None, NOW)


def test_a_change_whose_audit_record_fails_is_not_made(open_store: Callable[[], Store]) -> None:
    async def main() -> None:
        store = open_store()
        await store.open()
        try:
            outbox = store.outbox
            first = event(ACTOR, "events.subscriptions.create_or_update", _sub("one").resource_id, service=REF, at=NOW)
            assert await store.run_outbox(outbox.put_subscription(_sub("one"), first), write=True, durable=True)
            taken = first  # the same id again: the audit insert fails
            with pytest.raises(TenantAccessError):  # the store maps the failure to a 500
                await store.run_outbox(outbox.put_subscription(_sub("two"), taken), write=True, durable=True)
            assert await store.run_outbox(outbox.get_subscription(REF, "two")) is None
            with pytest.raises(TenantAccessError):
                await store.run_outbox(outbox.delete_subscription(REF, "one", taken), write=True, durable=True)
            assert await store.run_outbox(outbox.get_subscription(REF, "one")) is not None
            assert await store.run_outbox(outbox.delete_subscription(REF, "nobody", taken), write=True,
                                          durable=True) is False  # nothing deleted: no record, no error

            await store.add_principal(ServicePrincipal("app-1", "reader", "/", "", NOW, "hash"))
            with pytest.raises(TenantAccessError):
                await store.set_principal_disabled("app-1", NOW, taken)
            found = await store.get_principal("app-1")
            assert found is not None and found.disabled_at is None
            with pytest.raises(TenantAccessError):
                await store.delete_principal("app-1", taken)
            assert await store.get_principal("app-1") is not None

            records = await store.scan_audit(AuditScan())
            assert [(r.operation, r.status) for r in records] == [("events.subscriptions.create_or_update", 201)]
        finally:
            await store.close()

    asyncio.run(main())
