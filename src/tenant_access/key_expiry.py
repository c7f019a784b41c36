"""Key expiry on the request path: how long the keys of each configuration live, by policy.

A rotation policy's ``attributes.expiryTime`` makes every key version of its configuration expire
that long after it was made. Shared access signatures are checked on every request, so the
lifetimes of all policies are held in memory and re-read at most once a :data:`REFRESH_SECONDS`
(one small query per replica, whatever the traffic); a policy changed through this replica is
seen at once, one changed through another replica within that second.
"""

from __future__ import annotations

import datetime as _dt
import logging
import time

from tenant_access.domain.policy import load
from tenant_access.storage.base import Store

log = logging.getLogger("tenant_access.auth")

REFRESH_SECONDS = 1.0
Key = tuple[str, str, str, str]  # the service's lower-cased key and the configuration's name


class KeyExpiries:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._lifetimes: dict[Key, _dt.timedelta] = {}
        self._loaded = float("-inf")

    def forget(self) -> None:
        self._loaded = float("-inf")

    @property
    def stale(self) -> bool:
        return time.monotonic() - self._loaded >= REFRESH_SECONDS

    def lifetime(self, service: tuple[str, str, str], name: str) -> _dt.timedelta | None:
        """From memory (the request path awaits nothing unless :attr:`stale`)."""
        return self._lifetimes.get((*service, name)) if self._lifetimes else None

    async def refresh(self) -> None:
        """One query; requests arriving meanwhile use the lifetimes already held (the time of the
        load is taken first, so a burst of requests starts one refresh, not one each)."""
        self._loaded = time.monotonic()
        try:
            records = await self._store.list_rotation_policies()
        except Exception as exc:
            # The store is down: keep the lifetimes held (and try again in a second) rather than
            # fail requests that the key cache could still answer.
            log.warning("could not re-read key lifetimes: %s", type(exc).__name__)
            return
        lifetimes = {}
        for record in records:
            expiry = load(record.document).expiry
            if expiry is not None:
                lifetimes[(*record.service.key, record.access_name.value)] = expiry
        self._lifetimes = lifetimes
