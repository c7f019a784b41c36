"""A fault-injecting wrapper around the storage interface, for the storage-fault suite.

:class:`FaultyStore` implements :class:`~tenant_access.storage.base.Store` by delegating to a real
store, and on a seeded share of calls does one of:

- ``unavailable``: raises what a store raises when its database cannot be reached
  (:class:`ServiceUnavailable`), before anything happens;
- ``lost-answer``: lets the call complete (a write is committed) and then raises the same: the
  answer is lost after the fact, the case idempotency keys exist for;
- ``in-transaction``: for writes, raises a database error (``sqlite3.OperationalError: disk I/O
  error``) from inside the store's transaction, after the domain decided and before anything was
  persisted, so the store's own error mapping and rollback are what is tested.

and adds latency to every call. Faults are switched off with :meth:`clear`, without a restart.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tenant_access.domain.errors import ServiceUnavailable
from tenant_access.storage.base import Store

T = TypeVar("T")
KINDS = ("unavailable", "lost-answer", "in-transaction")
#: Store methods that write; only these can lose an answer or fail inside a transaction.
WRITES = frozenset({"put_service", "delete_service", "record", "read_secrets", "modify_access", "add_principal"})
#: Writes whose decision runs inside the transaction (the wrapper can fail from in there).
DECIDING = frozenset({"put_service", "modify_access"})
#: Not faulted: opening and closing are the test's own business.
PASSTHROUGH = frozenset({"open", "close", "describe"})


class FaultyStore:
    def __init__(self, inner: Store, *, seed: int, rate: float = 0.0, latency: float = 0.0) -> None:
        self.inner = inner
        self.rng = random.Random(seed)
        self.rate = rate
        self.latency = latency
        self.injected: Counter[str] = Counter()
        self._lock = threading.Lock()

    def clear(self) -> None:
        self.rate = 0.0
        self.latency = 0.0

    def _draw(self, method: str) -> str | None:
        with self._lock:
            if self.rng.random() >= self.rate:
                return None
            kinds = [k for k in KINDS if (k == "unavailable" or method in WRITES)
                     and (k != "in-transaction" or method in DECIDING)]
            kind = self.rng.choice(kinds)
            self.injected[kind] += 1
            return kind

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if name in PASSTHROUGH or not asyncio.iscoroutinefunction(target):
            return target

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.latency:
                await asyncio.sleep(self.latency * self.rng.random())
            kind = self._draw(name)
            if kind == "unavailable":
                raise ServiceUnavailable("Injected fault: the store is unreachable.", retry_after=1)
            if kind == "in-transaction":
                args = _fail_inside(name, args, kwargs)
            result = await target(*args, **kwargs)
            if kind == "lost-answer":
                raise ServiceUnavailable("Injected fault: the answer was lost after the commit.", retry_after=1)
            return result

        return call


def _fail_inside(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """The same call, with its decide function (run inside the transaction) failing like a disk."""
    index = 2 if name == "modify_access" else 1
    decide: Callable[..., Any] = kwargs.pop("decide", None) or args[index]

    def failing(*inner: Any) -> Any:
        decide(*inner)
        raise sqlite3.OperationalError("disk I/O error")

    return (*args[:index], failing, *args[index + 1:])


async def eventually(fn: Callable[[], Awaitable[T]], attempts: int = 50) -> T:
    """``fn`` retried on 503 the way a client honouring Retry-After would (without the wait)."""
    for _ in range(attempts - 1):
        try:
            return await fn()
        except ServiceUnavailable:
            await asyncio.sleep(0)
    return await fn()
