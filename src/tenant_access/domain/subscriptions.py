"""Subscriptions and the tenant, as Resource Manager clients expect to find them before a resource.

Nothing here is a resource of its own: a subscription exists because services live in it (or
because an operator declared it, so that a principal can sign in to it before its first service),
and the server is one tenant. Clients such as the Azure CLI refuse to sign in without at least one
subscription they can see.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tenant_access.domain.models import Service

#: The one tenant this server is (a fixed GUID, so that ``az account show`` and the SDKs see the same
#: id on every server); tokens are issued for any tenant name, so it only labels.
TENANT_ID = "10ca1000-7e4a-4c0e-9a11-000000000001"
TENANT_NAME = "tenant-access"


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    display_name: str

    @property
    def resource_id(self) -> str:
        return f"/subscriptions/{self.id}"


def default_name(subscription_id: str) -> str:
    return f"Subscription {subscription_id}"


def gather(services: Iterable[Service], declared: Iterable[Subscription] = ()) -> list[Subscription]:
    """Every subscription that holds a service or was declared, once, by id (case-insensitively, as
    Azure compares them). A declared name wins over the default one; the id is spelled as in the
    services' resource ids when it holds any, so that ids a client compares agree. Sorted by id."""
    names = {sub.id.lower(): sub for sub in declared}
    found: dict[str, Subscription] = {}
    for svc in services:
        sid = svc.ref.subscription_id
        if sid.lower() not in found:
            named = names.get(sid.lower())
            found[sid.lower()] = Subscription(sid, named.display_name if named else default_name(sid))
    for key, sub in names.items():
        found.setdefault(key, sub)
    return [found[key] for key in sorted(found)]
