"""Key expiry on the request path: how long the keys of each configuration live, by policy.

A rotation policy's ``attributes.expiryTime`` makes every key version of its configuration expire
that long after it was made. Shared access signatures are checked on every request, so the
lifetimes of all policies are held in memory and re-read at most once a :data:`REFRESH_SECONDS`
(one small query per replica, whatever the traffic); a policy changed through this replica is
seen at once, one changed through another replica within that second.
"""

from __future__ import annotations

import datetime as _dt
import time

from tenant_access.domain.policy import load
from tenant_access.storage.base import Store

REFRESH_SECONDS = 1.0
Key = tuple[str, str, str, str]  # the service's lower-cased key and the configuration's name


class KeyExpiries:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._lifetimes: dict[Key, _dt.timedelta] = {}
        self._loaded = float("-inf")

    def forget(self) -> None:
        self._loaded = float("-inf")

    async def lifetime(self, service: tuple[str, str, str], name: str) -> _dt.timedelta | None:
        if time.monotonic() - self._loaded >= REFRESH_SECONDS:
            await self.refresh()
        return self._lifetimes.get((*service, name)) if self._lifetimes else None

    async def refresh(self) -> None:
        lifetimes = {}
        for record in await self._store.list_rotation_policies():
            expiry = load(record.document).expiry
            if expiry is not None:
                lifetimes[(*record.service.key, record.access_name.value)] = expiry
        self._lifetimes = lifetimes
        self._loaded = time.monotonic()
