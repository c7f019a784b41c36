"""A bound on concurrent expensive verifications (a client secret's scrypt hash), fair per address.

A scrypt check costs tens of milliseconds of CPU and 16 MiB. Run without a bound, a burst of
sign-ins from one address queues hundreds of them on the thread pool, and a valid sign-in from
anywhere else waits behind all of them. Here each client address has at most ``per_address``
verifications running (its other attempts wait their turn, in order), and the whole process at
most ``total``: a burst from one address costs the others one slot, never the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

#: Verifications at once, process-wide: one per core keeps the cores busy without oversubscribing them.
DEFAULT_TOTAL = max(2, os.cpu_count() or 2)


class VerificationGate:
    def __init__(self, total: int = DEFAULT_TOTAL, per_address: int = 1) -> None:
        if total < 1 or per_address < 1:
            raise ValueError("total and per_address must be positive")
        self.total = total
        self.per_address = per_address
        self._all = asyncio.Semaphore(total)
        # Per address: its semaphore and how many attempts hold or wait for it (dropped at zero,
        # so memory follows the addresses in flight, not every address ever seen).
        self._addresses: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def slot(self, address: str) -> AsyncIterator[None]:
        """Hold one verification slot for ``address`` (waiting for it, first come first served)."""
        entry = self._addresses.get(address)
        if entry is None:
            entry = self._addresses[address] = (asyncio.Semaphore(self.per_address), [0])
        semaphore, users = entry
        users[0] += 1
        try:
            async with semaphore, self._all:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._addresses[address]

    def waiting(self, address: str) -> int:
        """Attempts of ``address`` holding or waiting for a slot (for tests and metrics)."""
        entry = self._addresses.get(address)
        return entry[1][0] if entry is not None else 0
