"""Summaries of refused requests: one audit record per client address and minute, with a count.

A refusal that names nobody (no credential, a bad one, an address throttled for failing, a caller
over its rate limit) is worth recording, once: who tried, from where, at what, how often. One row
per request is not: 50,000 such requests added 60 MB to a database and buried an owner's rotations
under them. So the first refusal of a minute from an address is written at once (the owner sees it
straight away) and later ones of that minute only add to its count, in memory, flushed to the store
every :data:`FLUSH_SECONDS` and at shutdown. A process that crashes loses at most the counts of the
last :data:`FLUSH_SECONDS` (never a record: every summary's first refusal is committed before the
401 is sent).

What is bounded, and by what:

* Records per minute, whatever the spread of addresses, names and statuses: at most
  :data:`MAX_SUMMARIES`, plus one per status for everything beyond, whose client and principal are
  ``*``. One (address, principal) files under at most :data:`SERVICES_PER_WINDOW` services plus
  "no service" a minute, for each status (401, 429).
* A summary is filed under the service the path names only if that service exists (checked once
  per window and service); refusals aimed at services that do not exist are filed under none, so
  nobody can create records under a name they choose, and their owners-to-be never inherit them.

Refusals by a known principal that are not throttling (403: the role or scope does not allow it)
stay individual records, as every read and change is: they name who tried, and are as rare as the
mistakes of one's own callers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tenant_access.domain.audit import Actor, AuditEvent, event
from tenant_access.domain.models import ServiceRef
from tenant_access.periodic import Periodic
from tenant_access.storage.base import Store

log = logging.getLogger("tenant_access.audit")

WINDOW_SECONDS = 60
FLUSH_SECONDS = 10.0
#: Summary records one minute may open (about 250 bytes each) before the rest share the overflow's.
MAX_SUMMARIES = 2000
SERVICES_PER_WINDOW = 4
OVERFLOW = ("*", "*")
#: Summaries of past minutes kept while the store cannot take their counts; beyond this, new ones are dropped.
MAX_CLOSED = 100_000
Clock = Callable[[], float]
ServiceKey = tuple[str, str, str]


@dataclass(slots=True)
class _Slot:
    """One summary record: its id, whether its first refusal is written yet (``writing``, ``written``
    or ``failed``), and what was counted since the last flush."""

    record_id: str
    state: str = "writing"
    pending: int = 0


@dataclass(slots=True)
class _Window:
    """One (address, principal) in one minute: where its refusals are filed, and their summaries."""

    services: dict[ServiceKey, ServiceRef | None] = field(default_factory=dict)
    slots: dict[tuple[int, ServiceKey | None], _Slot] = field(default_factory=dict)


class RefusalSummaries:
    """Counts refused requests into per-minute summary records (see the module's docstring)."""

    def __init__(self, store: Store, *, clock: Clock = time.time,
                 exists: Callable[[ServiceRef], Awaitable[bool]] | None = None) -> None:
        self._store = store
        self._clock = clock
        self._exists = exists or self._service_exists
        self._minute = -1
        self._windows: dict[tuple[str, str], _Window] = {}
        #: Summary records opened this minute (the overflow's included).
        self._open = 0
        #: Summaries of minutes gone by (or whose flush failed) that may still have counts to write, by id.
        self._closed: dict[str, _Slot] = {}
        self._flusher = Periodic("refusal summaries flush", self.flush, FLUSH_SECONDS)

    async def _service_exists(self, ref: ServiceRef) -> bool:
        return await self._store.get_service(ref) is not None

    async def refused(self, actor: Actor, operation: str, target: str, status: int,
                      service: ServiceRef | None, detail: str | None = None) -> None:
        """Count one refused request; writes a record only when it opens a summary. A failure to
        write is logged, never raised: it must not turn a 401 into a 500."""
        minute = int(self._clock() // WINDOW_SECONDS)
        if minute != self._minute:
            self._roll(minute)
        key = (actor.client, actor.principal)
        window = self._windows.get(key)
        if window is None and self._open < MAX_SUMMARIES:
            window = self._windows[key] = _Window()
        filed = await self._filed_under(window, service) if window is not None else None
        if minute != self._minute:  # the minute ended while the service was looked up: count it in the next
            await self.refused(actor, operation, target, status, service, detail)
            return
        slot_key = (status, filed.key if filed is not None else None)
        slot = window.slots.get(slot_key) if window is not None else None
        if slot is not None:
            slot.pending += 1
        elif window is None or self._open >= MAX_SUMMARIES:
            await self._overflow(actor, operation, target, status)
        else:
            await self._open_summary(window, slot_key, event(actor, operation, target, outcome="denied",
                                                             status=status, service=filed, detail=detail))

    async def _overflow(self, actor: Actor, operation: str, target: str, status: int) -> None:
        """This minute's summaries are all taken: whatever is new shares one per status, with no
        address or service of its own."""
        window = self._windows.setdefault(OVERFLOW, _Window())
        slot = window.slots.get((status, None))
        if slot is not None:
            slot.pending += 1
            return
        anyone = Actor("*", "-", "-", "-", actor.request_id, "*")
        await self._open_summary(window, (status, None), event(
            anyone, operation, target, outcome="denied", status=status,
            detail=f"refusals beyond the {MAX_SUMMARIES} summaries of a minute, from any address"))

    async def _open_summary(self, window: _Window, slot_key: tuple[int, ServiceKey | None],
                            record: AuditEvent) -> None:
        """Write the first refusal of a summary, at once: the owner sees it while it is going on."""
        slot = window.slots[slot_key] = _Slot(record.id)
        self._open += 1
        try:
            await self._store.record(record, durable=False)
        except Exception:
            log.warning("could not record a refused request (request %s)", record.request_id)
            slot.state = "failed"
            if window.slots.get(slot_key) is slot:
                del window.slots[slot_key]  # the next refusal tries again; what this one counted is lost
                self._open -= 1
            return
        slot.state = "written"

    async def _filed_under(self, window: _Window, service: ServiceRef | None) -> ServiceRef | None:
        """The service to file under: the one the path names if it exists (looked up once per window
        and name, for at most SERVICES_PER_WINDOW names), else none."""
        if service is None:
            return None
        if service.key in window.services:
            return window.services[service.key]
        if len(window.services) >= SERVICES_PER_WINDOW:
            return None
        try:
            found = service if await self._exists(service) else None
        except Exception:
            found = None
        window.services.setdefault(service.key, found)
        return window.services[service.key]

    def _roll(self, minute: int) -> None:
        """A new minute: the summaries of the last one are closed; their counts wait for the flush
        (including those of a summary whose first record is still being written)."""
        for window in self._windows.values():
            for slot in window.slots.values():
                self._closed[slot.record_id] = slot
        self._windows = {}
        self._open = 0
        self._minute = minute

    def _take_counts(self) -> list[tuple[_Slot, int]]:
        """What to add to which written summary; those counts are no longer pending."""
        slots = [*self._closed.values(), *(slot for window in self._windows.values() for slot in window.slots.values())]
        counts = []
        for slot in slots:
            if slot.state == "written" and slot.pending:
                counts.append((slot, slot.pending))
                slot.pending = 0
        self._closed = {k: slot for k, slot in self._closed.items() if slot.state == "writing"}
        return counts

    async def flush(self) -> None:
        """Write what was counted since the last flush: one transaction, one statement per summary."""
        minute = int(self._clock() // WINDOW_SECONDS)
        if minute != self._minute:
            self._roll(minute)
        counts = self._take_counts()
        if not counts:
            return
        try:
            await self._store.add_audit_counts([(slot.record_id, n) for slot, n in counts])
        except Exception:
            log.warning("could not write the counts of %d refusal summaries; will retry", len(counts))
            for slot, n in counts:  # pending again, and kept (a bounded number) past their minute
                slot.pending += n
                if len(self._closed) < MAX_CLOSED:
                    self._closed[slot.record_id] = slot

    def forget(self) -> None:
        """Drop every open summary and unwritten count (after the store's records were deleted)."""
        self._windows = {}
        self._open = 0
        self._closed = {}

    def start(self) -> None:
        self._flusher.start()

    async def stop(self) -> None:
        """Stop the periodic flush and write the last counts (before the store closes)."""
        await self._flusher.stop()
        await self.flush()
