"""A small cache of decrypted access keys, for validating shared access signatures.

Each adapter decides when an entry may still be used: SQLite while ``PRAGMA data_version`` has not
moved (exact, across processes sharing the file); PostgreSQL while its ``LISTEN`` connection is up
(every change is pushed to it) and for at most a second otherwise. The cache itself only keeps
entries and makes sure a load that raced with an invalidation is never stored: every load takes a
ticket first, and an invalidation of its key (or of everything) in the meantime voids the ticket.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

from tenant_access.domain.models import Secrets

CacheKey = tuple[str, str, str, str]  # subscription, resource group, service (lower-cased), access name


@dataclass(frozen=True, slots=True)
class Ticket:
    key: CacheKey
    epoch: int
    generation: int


@dataclass(frozen=True, slots=True)
class _Entry:
    secrets: Secrets
    loaded_at: float


class KeyCache:
    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[CacheKey, _Entry] = OrderedDict()
        self._generations: dict[CacheKey, int] = {}
        self._epoch = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: CacheKey, max_age: float) -> Secrets | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if time.monotonic() - entry.loaded_at > max_age:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry.secrets

    def ticket(self, key: CacheKey) -> Ticket:
        """Take before reading the database; :meth:`put` stores only if nothing was invalidated since."""
        return Ticket(key, self._epoch, self._generations.get(key, 0))

    def put(self, ticket: Ticket, secrets: Secrets) -> bool:
        if ticket.epoch != self._epoch or ticket.generation != self._generations.get(ticket.key, 0):
            return False
        self._entries[ticket.key] = _Entry(secrets, time.monotonic())
        self._entries.move_to_end(ticket.key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return True

    def invalidate(self, key: CacheKey) -> None:
        self._entries.pop(key, None)
        self._generations[key] = self._generations.get(key, 0) + 1
        if len(self._generations) > 4 * self.max_entries:
            # Forgetting generations is safe only together with voiding every outstanding ticket.
            self.clear()

    def holds(self, key: CacheKey, versions: tuple[str, str], etag: str) -> bool:
        """Whether the entry for ``key`` is exactly this state (so a notification of it changes nothing)."""
        entry = self._entries.get(key)
        if entry is None:
            return False
        config = entry.secrets.config
        return (config.primary_version_id, config.secondary_version_id) == versions and config.etag == etag

    def clear(self) -> None:
        self._entries.clear()
        self._generations.clear()
        self._epoch += 1
