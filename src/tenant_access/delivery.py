"""The delivery worker: takes events from the outbox to their subscribers, at least once, in order.

It runs in the delivery process a server starts (``delivery_process.py``), or in the server's own
process with ``--event-delivery inline``. A round fans new events out to the subscriptions that want them,
claims due deliveries (a lease: a process that dies leaves them to another when it runs out) and
hands each to the task of its subscription. A subscription's task sends one at a time, so the
events of one configuration reach it in commit order; different subscriptions have tasks of their
own, so a slow or dead destination delays only itself. At most ``concurrency`` requests are in
flight in all.

A failed attempt (an error status, a timeout, a refused connection, a redirect) is tried again
after an exponential backoff with jitter (``Retry-After`` wins when the destination sends one,
with 429 or 503), until ``retry_window`` after the event was first due: then it is dead-lettered
with the last reason, listed by ``tenant-access events dead-letters`` and sent again by
``... redeliver``. A 400 or 413 is permanent and dead-letters at once. Times come from ``clock``,
which tests move.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as _dt
import logging
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tenant_access.domain import events
from tenant_access.domain.keys import utcnow
from tenant_access.storage.base import Store
from tenant_access.storage.outbox import RUN, Claim, SubscriptionStats

log = logging.getLogger("tenant_access.events")
PERMANENT = frozenset({400, 413})
STATS_EVERY = 5.0


@dataclass
class DeliveryCounts:
    """Totals since start, per subscription key (for ``/metrics``)."""

    delivered: dict[str, int] = field(default_factory=dict)
    retried: dict[str, int] = field(default_factory=dict)
    dead_lettered: dict[str, int] = field(default_factory=dict)

    def add(self, table: dict[str, int], key: str) -> None:
        table[key] = table.get(key, 0) + 1


@dataclass
class DeliveryPolicy:
    retry_window: float = 24 * 3600.0
    backoff_base: float = 2.0
    backoff_max: float = 600.0
    attempt_timeout: float = 10.0
    concurrency: int = 16
    allow_private: bool = False
    #: How long a claim holds; 0: twice the attempt timeout and 5 s (a claim must outlive its attempt).
    lease: float = 0.0
    poll: float = 0.2
    #: After a round that found work, how long the next one waits, unless it claimed a full batch or
    #: a queue's full run (outbox.RUN), when more is surely waiting.
    #: Under a steady stream of changes a round at once would claim one or two events each time:
    #: a write transaction per event or so, each taking the lock the request path's rotations
    #: wait for. Gathering for 20 ms claims all of them in one (about 50 rounds a second at most).
    gather: float = 0.05
    batch: int = 200
    retention: float = 3600.0
    #: URLs starting with this (the server's own emulator sink) are allowed whatever ``allow_private``.
    own_sink: str | None = None

    def allows_private(self, url: str) -> bool:
        return self.allow_private or (self.own_sink is not None and url.startswith(self.own_sink))

    def delay(self, attempts: int, retry_after: float | None) -> float:
        """Seconds before attempt ``attempts + 1``: full backoff halved by jitter, or ``Retry-After``."""
        if retry_after is not None:
            return min(retry_after, self.backoff_max * 6)
        backoff: float = min(self.backoff_base * 2.0 ** max(attempts - 1, 0), self.backoff_max)
        return backoff * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not a secret


class Deliverer:
    def __init__(self, store: Store, policy: DeliveryPolicy | None = None,
                 clock: Callable[[], _dt.datetime] = utcnow) -> None:
        self.store = store
        self.policy = policy or DeliveryPolicy()
        self.clock = clock
        self.owner = secrets.token_hex(8)
        self.counts = DeliveryCounts()
        self._queues: dict[str, asyncio.Queue[Claim]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._in_flight: set[tuple[str, str]] = set()
        self._slots = asyncio.Semaphore(self.policy.concurrency)
        self._main: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._pruned_at: _dt.datetime | None = None
        #: One connection pool for every destination (keyed by the checked address).
        self._client: Any = None
        #: The store's backlog per subscription (``/metrics``), refreshed every few seconds.
        self.stats: list[SubscriptionStats] = []
        self._stats_at = 0.0
        #: Whether the last round left work that could not wait (a full batch).
        self._full = False

    def start(self) -> None:
        if self._main is None:
            self._main = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        tasks = [t for t in (self._main, *self._tasks.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._main = None
        self._tasks.clear()
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.close()
            self._client = None

    async def _loop(self) -> None:
        while True:
            try:
                busy = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store is down: try again later, never die
                log.warning("event delivery round failed: %s: %s", type(exc).__name__, exc)
                busy = False
            if time.monotonic() - self._stats_at > STATS_EVERY:
                self._stats_at = time.monotonic()
                with contextlib.suppress(Exception):
                    self.stats = await self.store.run_outbox(self.store.outbox.stats())
            if not busy:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.policy.poll)
            elif not self._full and self.policy.gather > 0:
                await asyncio.sleep(self.policy.gather)

    async def run_once(self) -> bool:
        """One round; answers whether it found work (then the next round starts at once)."""
        now = self.clock()
        if self._pruned_at is None or now - self._pruned_at > _dt.timedelta(minutes=1):
            self._pruned_at = now
            await self.store.run_outbox(self.store.outbox.prune(
                now - _dt.timedelta(seconds=self.policy.retention), now), write=True)
        if not await self.store.run_outbox(self.store.outbox.has_work(now)):
            return False
        fanned, claims = await self.store.run_outbox(self.store.outbox.fan_out_and_claim(
            self.owner, now, _dt.timedelta(seconds=self.policy.lease or 2 * self.policy.attempt_timeout + 5),
            self.policy.batch), write=True)
        for claim in claims:
            ident = (claim.event.id, claim.subscription.key)
            if ident in self._in_flight:
                continue
            self._in_flight.add(ident)
            key = claim.subscription.key
            queue = self._queues.setdefault(key, asyncio.Queue())
            queue.put_nowait(claim)
            if key not in self._tasks or self._tasks[key].done():
                self._tasks[key] = asyncio.ensure_future(self._drain(key, queue))
        # Fan-out alone is not a reason to go again at once: waiting for the poll gathers the
        # next events into one transaction instead of one each (unless a full batch is waiting).
        runs = collections.Counter((claim.subscription.key, claim.event.order_key) for claim in claims)
        self._full = fanned >= 500 or len(claims) >= self.policy.batch or max(runs.values(), default=0) >= RUN
        return bool(claims) or fanned >= 500

    async def drain(self) -> None:
        """Wait until every claimed delivery has been attempted (tests, shutdown)."""
        while any(not q.empty() for q in self._queues.values()) or self._in_flight:
            await asyncio.sleep(0.01)

    async def _drain(self, key: str, queue: asyncio.Queue[Claim]) -> None:
        """Send this subscription's claims in order; after a failure, the rest of that
        configuration's run is given back unsent (it must wait for the one that failed)."""
        stopped: set[str] = set()
        done: list[Claim] = []
        while not queue.empty():
            claim = queue.get_nowait()
            try:
                if claim.event.order_key in stopped:
                    await self.store.run_outbox(self.store.outbox.release([claim]), write=True)
                elif not await self.attempt(claim, done):
                    stopped.add(claim.event.order_key)
                if len(done) >= 50 or queue.empty():
                    # Delivered marks in one write: a crash before it only means those are sent again.
                    finished, done = done, []
                    await self.store.run_outbox(self.store.outbox.delivered_many(finished), write=True)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                stopped.add(claim.event.order_key)
                log.warning("event delivery bookkeeping failed: %s: %s", type(exc).__name__, exc)
            finally:
                self._in_flight.discard((claim.event.id, claim.subscription.key))
            if queue.empty():
                stopped.clear()
                self._wake.set()

    async def attempt(self, claim: Claim, done: list[Claim] | None = None) -> bool:
        """Send one claimed delivery and record the outcome; answers whether it was delivered.
        With ``done``, a success is appended there for the caller to record (in a batch)."""
        from tenant_access import events_net  # lazily: the server's start does not pay for the HTTP client

        sub = claim.subscription
        body, content_type = events.body(claim.event, sub.schema)
        now = self.clock()
        sent_headers = events_net.headers(claim.event.id, int(now.timestamp()), body, content_type, sub.secret)
        status: int | None = None
        retry_after: float | None = None
        try:
            async with self._slots:
                if self._client is None:
                    self._client = events_net.session(self.policy.concurrency)
                answer = await events_net.send("POST", sub.destination, content=body, request_headers=sent_headers,
                                               timeout=self.policy.attempt_timeout,
                                               allow_private=self.policy.allows_private(sub.destination),
                                               client=self._client)
            status, retry_after = answer.status, answer.retry_after
            reason = f"HTTP {status}"
        except events_net.Refused as exc:
            reason = f"refused: {exc}"
            status = 400  # a forbidden destination will not become allowed by waiting
        except events_net.FAILURES as exc:
            reason = f"{type(exc).__name__}: {str(exc)[:200] or 'no answer'}"
        if status is not None and 200 <= status < 300:
            if done is not None:
                done.append(claim)
            else:
                await self.store.run_outbox(self.store.outbox.delivered(claim), write=True)
            self.counts.add(self.counts.delivered, sub.key)
            return True
        if status is not None and 300 <= status < 400:
            reason += " (redirects are not followed)"
        later = self.clock()
        next_at: _dt.datetime | None = later + _dt.timedelta(seconds=self.policy.delay(claim.attempts + 1,
                                                                                        retry_after))
        window_end = claim.first_at + _dt.timedelta(seconds=self.policy.retry_window)
        if status in PERMANENT:
            next_at = None
            reason += " (permanent)"
        elif next_at is not None and next_at > window_end:
            next_at = None
            reason = f"retry window of {self.policy.retry_window:g}s exhausted after {claim.attempts + 1} " \
                     f"attempts; last: {reason}"
        await self.store.run_outbox(self.store.outbox.failed(claim, reason, next_at), write=True)
        if next_at is None:
            self.counts.add(self.counts.dead_lettered, sub.key)
            log.warning("event %s dead-lettered for %s: %s", claim.event.id, sub.resource_id, reason)
        else:
            self.counts.add(self.counts.retried, sub.key)
        return False
