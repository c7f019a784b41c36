"""Small caches of what the store holds: decrypted access keys, for validating shared access
signatures, and (on SQLite) access configurations, for ``GET``.

Each adapter decides when an entry may still be used: SQLite while ``PRAGMA data_version`` has not
moved (exact, across processes sharing the file); PostgreSQL while its ``LISTEN`` connection is up
(every change is pushed to it) and for at most a second otherwise. The cache itself only keeps
entries and makes sure a load that raced with an invalidation is never stored: every load takes a
ticket first, and an invalidation of its key (or of everything) in the meantime voids the ticket.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from tenant_access.domain.models import Secrets

V = TypeVar("V")

CacheKey = tuple[str, str, str, str]  # subscription, resource group, service (lower-cased), access name


@dataclass(frozen=True, slots=True)
class Ticket:
    key: CacheKey
    epoch: int
    generation: int


@dataclass(frozen=True, slots=True)
class _Entry(Generic[V]):
    value: V
    loaded_at: float


class Cache(Generic[V]):
    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[CacheKey, _Entry[V]] = OrderedDict()
        self._generations: dict[CacheKey, int] = {}
        self._epoch = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: CacheKey, max_age: float) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if time.monotonic() - entry.loaded_at > max_age:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry.value

    def ticket(self, key: CacheKey) -> Ticket:
        """Take before reading the database; :meth:`put` stores only if nothing was invalidated since."""
        return Ticket(key, self._epoch, self._generations.get(key, 0))

    def put(self, ticket: Ticket, value: V) -> bool:
        if ticket.epoch != self._epoch or ticket.generation != self._generations.get(ticket.key, 0):
            return False
        self._entries[ticket.key] = _Entry(value, time.monotonic())
        self._entries.move_to_end(ticket.key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return True

    async def get_or_load(self, key: CacheKey, load: Callable[[], Awaitable[V | None]],
                          max_age: float = float("inf")) -> V | None:
        """The cached value, or ``load()``'s, kept unless the key was invalidated while it loaded."""
        hit = self.get(key, max_age)
        if hit is not None:
            return hit
        ticket = self.ticket(key)
        found = await load()
        if found is not None:
            self.put(ticket, found)
        return found

    def invalidate(self, key: CacheKey) -> None:
        self._entries.pop(key, None)
        self._generations[key] = self._generations.get(key, 0) + 1
        if len(self._generations) > 4 * self.max_entries:
            # Forgetting generations is safe only together with voiding every outstanding ticket.
            self.clear()

    def clear(self) -> None:
        self._entries.clear()
        self._generations.clear()
        self._epoch += 1


class KeyCache(Cache[Secrets]):
    """Decrypted keys, for validating shared access signatures."""

    def holds(self, key: CacheKey, versions: tuple[str, str], etag: str) -> bool:
        """Whether the entry for ``key`` is exactly this state (so a notification of it changes nothing)."""
        entry = self._entries.get(key)
        if entry is None:
            return False
        config = entry.value.config
        return (config.primary_version_id, config.secondary_version_id) == versions and config.etag == etag
