"""The transactional outbox, event subscriptions and deliveries, for both stores.

The change path writes an event with :data:`INSERT` inside the change's own transaction (one
statement; its ``position`` is the configuration's previous one + 1, read under the lock that
serialises changes of that configuration, so positions are commit order). Everything else here
is the delivery side's, written once as coroutines over a tiny query interface (:class:`Q`): the
PostgreSQL store awaits them on its connection, the SQLite store drives them to completion on its
writer thread (:func:`drive`: its queries never suspend).

Delivery state lives in ``event_deliveries``: a worker *fans out* new events into one row per
matching subscription, *claims* due rows (the head of each subscription's queue for each
configuration only, so order holds), and deletes a row once delivered, or marks it dead. Claims
are leases: a replica that dies mid-delivery leaves its rows to another once ``claimed_until``
passes. On PostgreSQL claims use ``FOR UPDATE SKIP LOCKED`` and fan-out holds an advisory lock.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import orjson

from tenant_access.domain.audit import AuditEvent
from tenant_access.domain.event_subscriptions import EventSubscription
from tenant_access.domain.events import Event
from tenant_access.domain.models import ServiceRef
from tenant_access.storage.sql import AUDIT_INSERT, audit_args, parse_ts, pyformat, ts

T = TypeVar("T")

INSERT = (
    "INSERT INTO event_outbox (id, order_key, service_key, position, type, body, created_at) "
    "SELECT ?, ?, ?, COALESCE(MAX(position), 0) + 1, ?, ?, ? FROM event_outbox WHERE order_key = ?"
)
#: Consecutive deliveries of one queue claimed together.
RUN = 200
#: What the emulator's reset empties (deliveries first: they name events and subscriptions).
TABLES = ("event_deliveries", "event_queues", "event_outbox", "event_subscriptions")
#: Key of the PostgreSQL advisory lock that lets one replica at a time fan out.
FAN_OUT_LOCK = 0x7EA5_0011
#: The ``service_key`` of the rows by which a running ``events tail`` asks every change to write its
#: events (no service has it: resource ids start with "/"). A tail refreshes its row every
#: ``TAIL_REFRESH`` seconds; one older than ``TAIL_TTL`` is a tail that died and counts no more.
TAIL_KEY = "~tail"
TAIL_REFRESH = 10.0
TAIL_TTL = 60.0
#: Whether a change's events are wanted: its service has a subscription, or a tail runs. Read in the
#: change's own transaction, so a subscription committed before the change is always seen.
WANTED = ("SELECT 1 FROM event_subscriptions WHERE service_key = ? "
          "OR (service_key = ? AND created_at > ?) LIMIT 1")


def wanted_args(service: ServiceRef, now: _dt.datetime) -> tuple[Any, ...]:
    return (service.resource_id.lower(), TAIL_KEY, ts(now - _dt.timedelta(seconds=TAIL_TTL)))


Events = Sequence[Event] | Callable[[], Sequence[Event]]


def made(events: Events) -> Sequence[Event]:
    """The events themselves (made now, when they were given as what makes them)."""
    return events() if callable(events) else events


def insert_args(event: Event) -> tuple[Any, ...]:
    return (event.id, event.order_key, event.service_key, event.type, encode(event), ts(event.time),
            event.order_key)


def encode(event: Event) -> str:
    """On the request path (a change with a subscriber writes its events): orjson, as the
    answers are encoded, some ten times faster than the standard library's encoder."""
    return orjson.dumps({"id": event.id, "type": event.type, "source": event.source, "subject": event.subject,
                         "time": ts(event.time), "data": event.data}).decode()


def decode(body: str) -> Event:
    raw = json.loads(body)
    return Event(raw["id"], raw["type"], raw["source"], raw["subject"], parse_ts(raw["time"]), raw["data"])


def _chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[start:start + size] for start in range(0, len(items), size)]


def _marks(items: Sequence[Any]) -> str:
    return ", ".join("?" * len(items))


class Q(Protocol):
    """What the delivery side needs of a connection inside a transaction."""

    dialect: str

    async def one(self, sql: str, args: Sequence[Any] = ()) -> tuple[Any, ...] | None: ...

    async def all(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    async def exec(self, sql: str, args: Sequence[Any] = ()) -> int: ...


class SqliteQ:
    dialect = "sqlite"

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def one(self, sql: str, args: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self.conn.execute(sql, tuple(args)).fetchone()
        return row

    async def all(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self.conn.execute(sql, tuple(args)).fetchall()
        return rows

    async def exec(self, sql: str, args: Sequence[Any] = ()) -> int:
        count: int = self.conn.execute(sql, tuple(args)).rowcount
        return count


def drive(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (one over :class:`SqliteQ`) to its result, here."""
    try:
        coro.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coro.close()
    raise RuntimeError("an outbox operation suspended on a synchronous connection")


Op = Callable[[Q], Coroutine[Any, Any, T]]


@dataclass(frozen=True, slots=True)
class Claim:
    event: Event
    subscription: EventSubscription
    attempts: int
    first_at: _dt.datetime


@dataclass(frozen=True, slots=True)
class DeadLetter:
    event: Event
    subscription_key: str
    attempts: int
    reason: str


@dataclass(frozen=True, slots=True)
class SubscriptionStats:
    subscription_key: str
    pending: int
    dead: int
    oldest_pending: _dt.datetime | None


@dataclass(frozen=True, slots=True)
class Undelivered:
    """One delivery still owed: retrying (``next_at``, the next attempt) or dead (``error``, why)."""

    event_id: str
    event_type: str
    attempts: int
    first_at: _dt.datetime
    next_at: _dt.datetime
    error: str


@dataclass(frozen=True, slots=True)
class DeliveryState:
    """What one subscription is owed, as the store knows it (delivered rows are deleted, so the
    store cannot count them: the delivering process's counters do)."""

    pending: int
    retrying: int
    dead: int
    oldest_pending: _dt.datetime | None
    retries: tuple[Undelivered, ...]
    dead_letters: tuple[Undelivered, ...]


_SUB_COLUMNS = ("service_key, name_key, name, service_ref, destination, event_types, delivery_schema, secret, "
                "created_at")


class Outbox:
    """The operations, bound to a cipher (subscription secrets are encrypted at rest, bound to the
    subscription's key so a ciphertext copied to another row does not open)."""

    def __init__(self, cipher: Any) -> None:
        self.cipher = cipher

    def _seal(self, sub: EventSubscription) -> str | None:
        if sub.secret is None:
            return None
        sealed: str = self.cipher.encrypt(sub.secret.encode("utf-8"), b"event-subscription:" + sub.key.encode())
        return sealed

    def _subscription(self, row: Sequence[Any]) -> EventSubscription:
        service = ServiceRef(*json.loads(row[3]))
        key = f"{service.resource_id}/eventSubscriptions/{row[2]}".lower()
        secret = None if row[7] is None else self.cipher.decrypt(
            row[7], b"event-subscription:" + key.encode()).decode("utf-8")
        return EventSubscription(service, row[2], row[4], tuple(json.loads(row[5])), row[6], secret,
                                 parse_ts(row[8]))

    # -- subscriptions ------------------------------------------------------------------------

    def put_subscription(self, sub: EventSubscription, audit: AuditEvent | None = None) -> Op[bool]:
        """Create or replace; answers whether it was created. ``audit`` is written in the same
        transaction (with status 201 when it created)."""
        async def op(q: Q) -> bool:
            service_key = sub.service.resource_id.lower()
            found = await q.one("SELECT created_at FROM event_subscriptions WHERE service_key = ? AND name_key = ?",
                                (service_key, sub.name.lower()))
            args = (sub.name, json.dumps([sub.service.subscription_id, sub.service.resource_group, sub.service.name]),
                    sub.destination, json.dumps(list(sub.event_types)), sub.schema, self._seal(sub))
            if found is None:
                await q.exec(f"INSERT INTO event_subscriptions ({_SUB_COLUMNS}) "  # noqa: S608 - constant columns
                             "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (service_key, sub.name.lower(), *args, ts(sub.created_at)))
                if audit is not None:
                    await q.exec(AUDIT_INSERT, audit_args(dataclasses.replace(audit, status=201)))
                return True
            await q.exec("UPDATE event_subscriptions SET name = ?, service_ref = ?, destination = ?, event_types = ?, "
                         "delivery_schema = ?, secret = ? WHERE service_key = ? AND name_key = ?",
                         (*args, service_key, sub.name.lower()))
            if audit is not None:
                await q.exec(AUDIT_INSERT, audit_args(audit))
            return False
        return op

    def get_subscription(self, service: ServiceRef, name: str) -> Op[EventSubscription | None]:
        async def op(q: Q) -> EventSubscription | None:
            row = await q.one(f"SELECT {_SUB_COLUMNS} FROM event_subscriptions "  # noqa: S608 - constant columns
                              "WHERE service_key = ? AND name_key = ?", (service.resource_id.lower(), name.lower()))
            return None if row is None else self._subscription(row)
        return op

    def list_subscriptions(self, service: ServiceRef | None) -> Op[list[EventSubscription]]:
        async def op(q: Q) -> list[EventSubscription]:
            if service is None:
                rows = await q.all(f"SELECT {_SUB_COLUMNS} FROM event_subscriptions "  # noqa: S608
                                   "WHERE service_key <> ? ORDER BY service_key, name_key", (TAIL_KEY,))
            else:
                rows = await q.all(f"SELECT {_SUB_COLUMNS} FROM event_subscriptions "  # noqa: S608
                                   "WHERE service_key = ? ORDER BY name_key", (service.resource_id.lower(),))
            return [self._subscription(r) for r in rows]
        return op

    def delete_subscription(self, service: ServiceRef, name: str, audit: AuditEvent | None = None) -> Op[bool]:
        """Its queued deliveries go with it (dead letters included); ``audit`` is written in the
        same transaction, only if there was a subscription to delete."""
        async def op(q: Q) -> bool:
            key = f"{service.resource_id}/eventSubscriptions/{name}".lower()
            await q.exec("DELETE FROM event_deliveries WHERE subscription_key = ?", (key,))
            deleted = await q.exec("DELETE FROM event_subscriptions WHERE service_key = ? AND name_key = ?",
                                   (service.resource_id.lower(), name.lower())) > 0
            if deleted and audit is not None:
                await q.exec(AUDIT_INSERT, audit_args(audit))
            return deleted
        return op

    def deliveries(self, sub: EventSubscription, limit: int = 50) -> Op[DeliveryState]:
        """What ``sub`` is owed: counts, the oldest undelivered, and the first ``limit`` retrying
        (soonest next attempt first) and dead letters (oldest first). Reads only."""
        async def op(q: Q) -> DeliveryState:
            counts = await q.one(
                "SELECT SUM(CASE WHEN state = 'pending' THEN 1 ELSE 0 END), "
                "SUM(CASE WHEN state = 'pending' AND attempts > 0 THEN 1 ELSE 0 END), "
                "SUM(CASE WHEN state = 'dead' THEN 1 ELSE 0 END), "
                "MIN(CASE WHEN state = 'pending' THEN first_at END) FROM event_deliveries WHERE subscription_key = ?",
                (sub.key,))
            assert counts is not None
            found: dict[str, tuple[Undelivered, ...]] = {}
            for kind, where, order in (("retry", "d.state = 'pending' AND d.attempts > 0", "d.next_at, d.event_id"),
                                       ("dead", "d.state = 'dead'", "d.event_id")):
                rows = await q.all(
                    "SELECT d.event_id, o.type, d.attempts, d.first_at, d.next_at, d.last_error "  # noqa: S608
                    "FROM event_deliveries d JOIN event_outbox o ON o.id = d.event_id "
                    f"WHERE d.subscription_key = ? AND {where} ORDER BY {order} LIMIT ?", (sub.key, limit))
                found[kind] = tuple(Undelivered(r[0], r[1], int(r[2]), parse_ts(r[3]), parse_ts(r[4]), r[5] or "")
                                    for r in rows)
            return DeliveryState(int(counts[0] or 0), int(counts[1] or 0), int(counts[2] or 0),
                                 parse_ts(counts[3]) if counts[3] else None, found["retry"], found["dead"])
        return op

    # -- delivery -----------------------------------------------------------------------------

    def fan_out(self, limit: int = 500) -> Op[int]:
        """Queue new events for the subscriptions that want them; answers how many events."""
        async def op(q: Q) -> int:
            if q.dialect == "postgresql":
                got = await q.one("SELECT pg_try_advisory_xact_lock(?)", (FAN_OUT_LOCK,))
                if not got or not got[0]:
                    return 0
            rows = await q.all("SELECT id, order_key, service_key, position, type, created_at FROM event_outbox "
                               "WHERE fanned_out = 0 ORDER BY id LIMIT ?", (limit,))
            if not rows:
                return 0
            subs: dict[str, list[tuple[str, tuple[str, ...], str]]] = {}
            for row in await q.all("SELECT service_key, name_key, event_types, created_at FROM event_subscriptions"):
                subs.setdefault(row[0], []).append((f"{row[0]}/eventsubscriptions/{row[1]}",
                                                    tuple(json.loads(row[2])), row[3]))
            queues: set[tuple[str, str]] = set()
            wanted: list[tuple[Any, ...]] = []
            for event_id, order_key, service_key, position, event_type, created_at in rows:
                for key, types, since in subs.get(service_key, []):
                    # Only events committed after the subscription was made (fan-out may run later).
                    if (not types or event_type in types) and created_at >= since:
                        if (key, order_key) not in queues:
                            queues.add((key, order_key))
                            await q.exec("INSERT INTO event_queues (subscription_key, order_key) SELECT ?, ? "
                                         "WHERE NOT EXISTS (SELECT 1 FROM event_queues WHERE subscription_key = ? "
                                         "AND order_key = ?)", (key, order_key, key, order_key))
                        wanted.append((event_id, key, order_key, position, created_at, created_at))
            # Set-based, a statement per hundred rows rather than two per event: on SQLite this runs
            # under the write lock that the request path's rotations wait for.
            for part in _chunks(wanted, 100):
                await q.exec("INSERT INTO event_deliveries (event_id, subscription_key, order_key, position, state, "  # noqa: S608
                             "first_at, next_at) VALUES " + ", ".join("(?, ?, ?, ?, 'pending', ?, ?)" for _ in part),
                             [value for row in part for value in row])
            for ids in _chunks([row[0] for row in rows], 500):
                await q.exec(f"UPDATE event_outbox SET fanned_out = 1 WHERE id IN ({_marks(ids)})", ids)  # noqa: S608
            return len(rows)
        return op

    def listen(self, token: str, now: _dt.datetime) -> Op[None]:
        """A running tail's row (made, or refreshed): while it is fresh, every change writes its events."""
        async def op(q: Q) -> None:
            if not await q.exec("UPDATE event_subscriptions SET created_at = ? WHERE service_key = ? AND name_key = ?",
                                (ts(now), TAIL_KEY, token)):
                await q.exec(f"INSERT INTO event_subscriptions ({_SUB_COLUMNS}) "  # noqa: S608
                             "VALUES (?, ?, ?, '[]', 'tail', '[]', 'tail', NULL, ?)", (TAIL_KEY, token, token, ts(now)))
        return op

    def unlisten(self, token: str) -> Op[None]:
        async def op(q: Q) -> None:
            await q.exec("DELETE FROM event_subscriptions WHERE service_key = ? AND name_key = ?", (TAIL_KEY, token))
        return op

    def fan_out_and_claim(self, owner: str, now: _dt.datetime, lease: _dt.timedelta,
                          limit: int) -> Op[tuple[int, list[Claim]]]:
        """:meth:`fan_out` then :meth:`claim`, in one transaction: a round takes the write lock once
        (on SQLite, the lock every change of the request path waits for) instead of twice."""
        fan_out, claim = self.fan_out(), self.claim(owner, now, lease, limit)

        async def op(q: Q) -> tuple[int, list[Claim]]:
            fanned = await fan_out(q)
            return fanned, await claim(q)
        return op

    def has_work(self, now: _dt.datetime) -> Op[bool]:
        """Whether a round would find anything (a read: an idle server writes nothing)."""
        async def op(q: Q) -> bool:
            # No subscription, no work: events stay in the outbox (for tail and the emulator's list)
            # until retention; fanning them out to nobody would cost a write per round for nothing.
            if not await q.one("SELECT 1 FROM event_subscriptions LIMIT 1"):
                return False
            if await q.one("SELECT 1 FROM event_outbox WHERE fanned_out = 0 LIMIT 1"):
                return True
            return await q.one("SELECT 1 FROM event_deliveries WHERE state = 'pending' AND next_at <= ? LIMIT 1",
                               (ts(now),)) is not None
        return op

    def claim(self, owner: str, now: _dt.datetime, lease: _dt.timedelta, limit: int,
              run: int = RUN) -> Op[list[Claim]]:
        """Due deliveries from the head of their (subscription, configuration) queue, up to ``run``
        consecutive ones of each queue, leased to ``owner``, in queue order.

        The worker sends a queue's run one at a time and stops at the first failure (releasing the
        rest), so order holds while a backlog costs one claim per run instead of one per event.
        On PostgreSQL the rows are then locked ``FOR UPDATE SKIP LOCKED``: a queue whose head
        another replica is claiming at this moment is skipped, and a run is cut where a row was.
        """
        async def op(q: Q) -> list[Claim]:
            # Queue by queue, each an index range of at most ``run`` rows: a round costs the same
            # whatever the backlog (a scan of every queued row would grow with it).
            rows: list[tuple[Any, ...]] = []
            for sub_key, order_key in await q.all("SELECT subscription_key, order_key FROM event_queues"):
                found = await q.all(
                    "SELECT d.event_id, d.subscription_key, d.order_key, d.position, d.attempts, d.first_at, "
                    "d.next_at, d.claimed_until, o.body FROM event_deliveries d "
                    "LEFT JOIN event_outbox o ON o.id = d.event_id WHERE d.state = 'pending' "
                    "AND d.subscription_key = ? AND d.order_key = ? ORDER BY d.position LIMIT ?",
                    (sub_key, order_key, run))
                if not found:
                    await q.exec("DELETE FROM event_queues WHERE subscription_key = ? AND order_key = ? AND NOT EXISTS "
                                 "(SELECT 1 FROM event_deliveries WHERE state = 'pending' AND subscription_key = ? "
                                 "AND order_key = ?)", (sub_key, order_key, sub_key, order_key))
                rows.extend(found)
            if not rows:
                return []
            unfanned = {r[0]: r[1] for r in await q.all(
                "SELECT order_key, MIN(position) FROM event_outbox WHERE fanned_out = 0 GROUP BY order_key")}
            stamp = ts(now)
            chosen: list[tuple[Any, ...]] = []
            group: tuple[str, str] | None = None
            open_group = False
            for row in rows:
                event_id, sub_key, order_key, position, _attempts, _first, next_at, claimed_until, _body = row
                if (sub_key, order_key) != group:
                    group, open_group = (sub_key, order_key), True  # a new queue: its head comes first
                free = next_at <= stamp and (claimed_until is None or claimed_until < stamp)
                before_unfanned = order_key not in unfanned or position < unfanned[order_key]
                if not (open_group and free and before_unfanned) or len(chosen) >= limit:
                    open_group = False
                    continue
                chosen.append(row)
            if q.dialect == "postgresql" and chosen:
                locked: set[tuple[str, str]] = set()
                for start in range(0, len(chosen), 200):
                    part = chosen[start:start + 200]
                    marks = ", ".join("(?, ?)" for _ in part)
                    found = await q.all(
                        "SELECT event_id, subscription_key FROM event_deliveries WHERE state = 'pending' "  # noqa: S608
                        "AND (claimed_until IS NULL OR claimed_until < ?) "
                        f"AND (event_id, subscription_key) IN ({marks}) FOR UPDATE SKIP LOCKED",
                        (stamp, *[v for r in part for v in (r[0], r[1])]))
                    locked.update((r[0], r[1]) for r in found)
                kept, cut = [], set()
                for row in chosen:  # a run stops at the first row another replica holds
                    if (row[1], row[2]) in cut or (row[0], row[1]) not in locked:
                        cut.add((row[1], row[2]))
                        continue
                    kept.append(row)
                chosen = kept
            if not chosen:
                return []
            until = ts(now + lease)
            by_sub: dict[str, list[str]] = {}
            for row in chosen:
                by_sub.setdefault(row[1], []).append(row[0])
            for sub_key, ids in by_sub.items():
                for some in _chunks(ids, 500):
                    await q.exec("UPDATE event_deliveries SET claimed_by = ?, claimed_until = ? "  # noqa: S608
                                 f"WHERE subscription_key = ? AND event_id IN ({_marks(some)})",
                                 (owner, until, sub_key, *some))
            claims = []
            subs: dict[str, EventSubscription | None] = {}
            for event_id, sub_key, _order, _position, attempts, first_at, _next, _claimed, body in chosen:
                if sub_key not in subs:
                    service_key, _, name_key = sub_key.rpartition("/eventsubscriptions/")
                    found_sub = await q.one(f"SELECT {_SUB_COLUMNS} FROM event_subscriptions "  # noqa: S608
                                            "WHERE service_key = ? AND name_key = ?", (service_key, name_key))
                    subs[sub_key] = None if found_sub is None else self._subscription(found_sub)
                sub = subs[sub_key]
                if sub is None or body is None:  # deleted meanwhile: nothing left to send
                    await q.exec("DELETE FROM event_deliveries WHERE event_id = ? AND subscription_key = ?",
                                 (event_id, sub_key))
                    continue
                claims.append(Claim(decode(body), sub, int(attempts), parse_ts(first_at)))
            return claims
        return op

    def release(self, claims: Sequence[Claim]) -> Op[None]:
        """Give claims back unsent (the rest of a run after a failure): due again at once."""
        async def op(q: Q) -> None:
            for claim in claims:
                await q.exec("UPDATE event_deliveries SET claimed_by = NULL, claimed_until = NULL "
                             "WHERE event_id = ? AND subscription_key = ?", (claim.event.id, claim.subscription.key))
        return op

    def delivered(self, claim: Claim) -> Op[None]:
        async def op(q: Q) -> None:
            await q.exec("DELETE FROM event_deliveries WHERE event_id = ? AND subscription_key = ?",
                         (claim.event.id, claim.subscription.key))
        return op

    def delivered_many(self, claims: Sequence[Claim]) -> Op[None]:
        async def op(q: Q) -> None:
            by_sub: dict[str, list[str]] = {}
            for claim in claims:
                by_sub.setdefault(claim.subscription.key, []).append(claim.event.id)
            for sub_key, ids in by_sub.items():
                for part in _chunks(ids, 500):
                    await q.exec("DELETE FROM event_deliveries WHERE subscription_key = ? "  # noqa: S608
                                 f"AND event_id IN ({_marks(part)})", (sub_key, *part))
        return op

    def failed(self, claim: Claim, error: str, next_at: _dt.datetime | None) -> Op[None]:
        """Another attempt at ``next_at``, or dead-lettered (``None``) with ``error`` as the reason."""
        async def op(q: Q) -> None:
            if next_at is None:
                await q.exec("UPDATE event_deliveries SET state = 'dead', attempts = attempts + 1, last_error = ?, "
                             "claimed_by = NULL, claimed_until = NULL WHERE event_id = ? AND subscription_key = ?",
                             (error[:500], claim.event.id, claim.subscription.key))
            else:
                await q.exec("UPDATE event_deliveries SET attempts = attempts + 1, last_error = ?, next_at = ?, "
                             "claimed_by = NULL, claimed_until = NULL WHERE event_id = ? AND subscription_key = ?",
                             (error[:500], ts(next_at), claim.event.id, claim.subscription.key))
        return op

    def dead_letters(self, limit: int = 1000) -> Op[list[DeadLetter]]:
        async def op(q: Q) -> list[DeadLetter]:
            rows = await q.all("SELECT o.body, d.subscription_key, d.attempts, d.last_error FROM event_deliveries d "
                               "JOIN event_outbox o ON o.id = d.event_id WHERE d.state = 'dead' "
                               "ORDER BY d.event_id LIMIT ?", (limit,))
            return [DeadLetter(decode(r[0]), r[1], int(r[2]), r[3] or "") for r in rows]
        return op

    def redeliver(self, event_ids: Sequence[str] | None, now: _dt.datetime) -> Op[int]:
        """Dead letters (these, or all) queued again with a fresh retry schedule."""
        async def op(q: Q) -> int:
            await q.exec("INSERT INTO event_queues (subscription_key, order_key) SELECT DISTINCT d.subscription_key, "
                         "d.order_key FROM event_deliveries d WHERE d.state = 'dead' AND NOT EXISTS (SELECT 1 FROM "
                         "event_queues e WHERE e.subscription_key = d.subscription_key AND e.order_key = d.order_key)")
            sql = ("UPDATE event_deliveries SET state = 'pending', attempts = 0, first_at = ?, next_at = ?, "
                   "last_error = NULL WHERE state = 'dead'")
            if event_ids is None:
                return await q.exec(sql, (ts(now), ts(now)))
            total = 0
            for event_id in event_ids:
                total += await q.exec(sql + " AND event_id = ?", (ts(now), ts(now), event_id))
            return total
        return op

    def recent(self, limit: int, after: str | None = None) -> Op[list[Event]]:
        """The last ``limit`` events (or those after id ``after``), oldest first."""
        async def op(q: Q) -> list[Event]:
            if after is None:
                rows = await q.all("SELECT body FROM event_outbox ORDER BY id DESC LIMIT ?", (limit,))
                rows.reverse()
            else:
                rows = await q.all("SELECT body FROM event_outbox WHERE id > ? ORDER BY id LIMIT ?", (after, limit))
            return [decode(r[0]) for r in rows]
        return op

    def stats(self) -> Op[list[SubscriptionStats]]:
        async def op(q: Q) -> list[SubscriptionStats]:
            rows = await q.all("SELECT subscription_key, SUM(CASE WHEN state = 'pending' THEN 1 ELSE 0 END), "
                               "SUM(CASE WHEN state = 'dead' THEN 1 ELSE 0 END), "
                               "MIN(CASE WHEN state = 'pending' THEN first_at END) FROM event_deliveries "
                               "GROUP BY subscription_key ORDER BY subscription_key")
            return [SubscriptionStats(r[0], int(r[1] or 0), int(r[2] or 0), parse_ts(r[3]) if r[3] else None)
                    for r in rows]
        return op

    def undelivered(self) -> Op[tuple[int, int, int]]:
        """(events not yet fanned out, deliveries pending, deliveries dead)."""
        async def op(q: Q) -> tuple[int, int, int]:
            unfanned = await q.one("SELECT COUNT(*) FROM event_outbox WHERE fanned_out = 0")
            counts = await q.one("SELECT SUM(CASE WHEN state = 'pending' THEN 1 ELSE 0 END), "
                                 "SUM(CASE WHEN state = 'dead' THEN 1 ELSE 0 END) FROM event_deliveries")
            assert unfanned is not None
            assert counts is not None
            return int(unfanned[0]), int(counts[0] or 0), int(counts[1] or 0)
        return op

    def prune(self, before: _dt.datetime, now: _dt.datetime | None = None) -> Op[int]:
        """Forget delivered events older than ``before`` (the retention of tail and the emulator's
        list), and the rows of tails that died (stale at ``now``)."""
        async def op(q: Q) -> int:
            if now is not None:
                await q.exec("DELETE FROM event_subscriptions WHERE service_key = ? AND created_at < ?",
                             (TAIL_KEY, ts(now - _dt.timedelta(seconds=TAIL_TTL))))
            # Events never fanned out may go too while nobody subscribes (none can want them: a
            # subscription only receives events committed after it was made).
            return await q.exec("DELETE FROM event_outbox WHERE created_at < ? AND (fanned_out = 1 OR NOT EXISTS "
                                "(SELECT 1 FROM event_subscriptions)) AND NOT EXISTS "
                                "(SELECT 1 FROM event_deliveries d WHERE d.event_id = event_outbox.id)", (ts(before),))
        return op


class PostgresQ:
    dialect = "postgresql"

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def one(self, sql: str, args: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        cur = await self.conn.execute(pyformat(sql), tuple(args))
        row: tuple[Any, ...] | None = await cur.fetchone()
        return row

    async def all(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = await self.conn.execute(pyformat(sql), tuple(args))
        rows: list[tuple[Any, ...]] = await cur.fetchall()
        return rows

    async def exec(self, sql: str, args: Sequence[Any] = ()) -> int:
        cur = await self.conn.execute(pyformat(sql), tuple(args))
        count: int = cur.rowcount
        return count
