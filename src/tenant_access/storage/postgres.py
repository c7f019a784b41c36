"""The PostgreSQL store: several stateless replicas of the server sharing one database.

Every write is one transaction that locks the row it changes (``SELECT ... FOR UPDATE``), runs the
domain's *decide* function on what it read, writes the new key (encrypted), the audit record and
the new entity tag, and sends a notification, all before one ``COMMIT``. Two replicas rotating the
same key therefore queue on the row lock: each rotation sees the one before it, none is lost.

Connections have a ``lock_timeout`` and a ``statement_timeout`` (and an idle-in-transaction limit),
so a stuck lock or a hung statement becomes a 503 with ``Retry-After`` instead of a hung request.
Losing the database becomes a 503 as well; connections are re-made on demand, so the first request
after the database comes back is served, with no restart.

Replicas cache decrypted keys for validating shared access signatures. A dedicated connection
``LISTEN``\\s on :data:`CHANNEL`; every change sends, in its own transaction, a notification that
names the service, the configuration and its new version ids and entity tag (never key material).
While that connection is down, cached entries are used for at most :data:`STALE_TTL` seconds; when
it comes back, the whole cache is dropped, because notifications sent meanwhile were lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import functools
import json
import logging
import os
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus

from tenant_access.domain.audit import AuditEvent, AuditQuery, AuditScan
from tenant_access.domain.errors import InternalError, NotFound, ServiceUnavailable, TenantAccessError
from tenant_access.domain.events import Event
from tenant_access.domain.idempotency import IdempotencyClaim
from tenant_access.domain.keys import utcnow
from tenant_access.domain.models import (
    AccessChange,
    AccessConfig,
    AccessName,
    KeySlot,
    KeyVersion,
    Secrets,
    Service,
    ServiceRef,
)
from tenant_access.domain.principals import ServicePrincipal
from tenant_access.domain.services import ServicePlan
from tenant_access.domain.subscriptions import Subscription
from tenant_access.storage import idempotency as idem
from tenant_access.storage import migrations, outbox
from tenant_access.storage import policies as policy_sql
from tenant_access.storage import usage as usage_sql
from tenant_access.storage.base import Cipher
from tenant_access.storage.cache import Cache, CacheKey, KeyCache
from tenant_access.storage.census import CENSUS_COUNT, CENSUS_SELECT, CHECK_SELECT, KeyCensus
from tenant_access.storage.outbox import Op, Outbox
from tenant_access.storage.sql import (
    AUDIT_ADD_COUNT,
    AUDIT_INSERT,
    CHECK_AAD,
    CHECK_PLAINTEXT,
    CHECK_UPDATE,
    CONFIG_SELECT,
    PRINCIPAL_DELETE,
    PRINCIPAL_DISABLE,
    PRINCIPAL_REHASH,
    PRINCIPAL_SELECT,
    REENCRYPT_SELECT,
    REENCRYPT_UPDATE,
    SECRETS_SELECT,
    SERVICE_COLUMNS,
    OpenedKeys,
    aad,
    audit_args,
    audit_from_row,
    audit_sql,
    config_from_row,
    count_sql,
    delete_sql,
    principal_from_row,
    principal_key,
    pyformat,
    reencrypted,
    scan_sql,
    service_from_row,
    ts,
    verify_master_key,
)

log = logging.getLogger("tenant_access.storage")
T = TypeVar("T")
Conn = AsyncConnection[tuple[Any, ...]]

#: The notification channel every replica listens on.
CHANNEL = "tenant_access_changes"
#: Sent when every service was deleted at once (the emulator's reset): drop the whole cache.
RESET_NOTIFICATION = '{"k":"*"}'
#: Key of the advisory lock that serialises migrations between replicas starting together.
MIGRATION_LOCK = 7_461_636_361_636_301
#: Per-connection limits (milliseconds); a URL's own ``options`` come after these and win.
DEFAULT_OPTIONS = "-c lock_timeout=3000 -c statement_timeout=10000 -c idle_in_transaction_session_timeout=30000"
DEFAULT_POOL_SIZE = 10
#: How long a request waits for a free pooled connection before it is answered 503.
ACQUIRE_TIMEOUT = 5.0
#: After a failed connection attempt, requests are answered 503 without trying again for this long.
CONNECT_BACKOFF = 0.2
#: While the listener is down, a cached key is used for at most this many seconds.
STALE_TTL = 1.0
#: Even with the listener up, nothing is cached longer than this (a guard against a silent failure).
FRESH_TTL = 60.0
#: The listener checks its connection this often; one that does not answer within it is dropped.
HEARTBEAT = 1.0
#: Attempts of one transaction that failed on a deadlock, a serialization failure or a racing insert.
MAX_ATTEMPTS = 3
#: Test-only: with this variable set to "1" and UNSAFE_ACK set to UNSAFE_ACK_VALUE, writes read the row
#: without locking it, in a transaction of their own, so lost updates become possible. It exists only so
#: the replica race test can prove that its checker sees lost updates. Never set it anywhere else.
UNSAFE_NO_ROW_LOCK = "TENANT_ACCESS_UNSAFE_NO_ROW_LOCK"
UNSAFE_ACK = "TENANT_ACCESS_I_KNOW"
UNSAFE_ACK_VALUE = "this-loses-updates"

_UNAVAILABLE_CLASSES = ("08", "53", "57", "58")  # connection, resources, operator intervention, system
_RETRY_STATES = ("40001", "40P01", "23505")  # serialization failure, deadlock, unique violation (racing create)


_LOCK_CONFIG = """
SELECT c.service_id FROM access_configs c JOIN services s ON s.id = c.service_id
WHERE s.subscription_key = ? AND s.resource_group_key = ? AND s.name_key = ? AND c.name = ?
FOR UPDATE OF c
"""


def connection_params(url: str, role: str = "") -> dict[str, Any]:
    """libpq parameters for ``url`` with our timeouts and an application name naming the role."""
    params: dict[str, Any] = conninfo_to_dict(url)
    own = str(params.get("options") or "")
    params["options"] = f"{DEFAULT_OPTIONS} {own}".strip()
    name = str(params.get("application_name") or "tenant-access")
    params["application_name"] = f"{name}-{role}/{os.getpid()}" if role else name
    params.setdefault("connect_timeout", "3")
    params.setdefault("keepalives", "1")
    params.setdefault("keepalives_idle", "10")
    params.setdefault("keepalives_interval", "3")
    params.setdefault("keepalives_count", "3")
    return params


def describe_url(url: str) -> str:
    """user@host:port/dbname, never the password."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error:
        return "postgresql (unparsable URL)"
    host = str(params.get("host") or "localhost")
    port = str(params.get("port") or "5432")
    user = f"{params['user']}@" if params.get("user") else ""
    return f"postgresql {user}{host}:{port}/{params.get('dbname') or ''}"


def unsafe_row_locks_disabled(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    if env.get(UNSAFE_NO_ROW_LOCK) != "1":
        return False
    if env.get(UNSAFE_ACK) != UNSAFE_ACK_VALUE:
        raise ValueError(f"{UNSAFE_NO_ROW_LOCK} is a test-only switch that loses updates; it is refused unless "
                         f"{UNSAFE_ACK}={UNSAFE_ACK_VALUE} is set as well")
    return True


def _unavailable(exc: BaseException) -> bool:
    if isinstance(exc, psycopg.Error):
        state = exc.sqlstate or ""
        if not state:
            return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
        return state.startswith(_UNAVAILABLE_CLASSES) or state in ("55P03", "25006", "40001", "40P01")
    return isinstance(exc, OSError | TimeoutError)


def _storage_error(exc: BaseException) -> TenantAccessError:
    """Transient conditions answer 503 with Retry-After (the client may retry); anything else is ours."""
    state = getattr(exc, "sqlstate", None) or ""
    if state == "55P03":
        return ServiceUnavailable("The resource is locked by another change that is taking too long; retry shortly.",
                                  retry_after=1)
    if state == "57014":
        return ServiceUnavailable("The store did not answer in time; retry shortly.", retry_after=1)
    if _unavailable(exc):
        return ServiceUnavailable("The store is temporarily unavailable; retry shortly.", retry_after=1)
    return InternalError("The store failed to complete the request.")


class _Pool:
    """At most ``size`` connections, made on demand and reused while healthy.

    No background reconnection with back-off: when the database returns, the next request simply
    connects, so recovery takes one connection attempt. After a failed attempt, requests fail fast
    for :data:`CONNECT_BACKOFF` seconds rather than pile up connection attempts.
    """

    def __init__(self, params: dict[str, Any], size: int) -> None:
        self._params = params
        self._size = size
        self._idle: deque[tuple[Conn, int]] = deque()
        self._slots: asyncio.Semaphore | None = None
        self._epoch = 0
        self._down_until = 0.0
        self._closed = False

    async def acquire(self) -> Conn:
        if self._closed:
            raise ServiceUnavailable("The store is not open.")
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._size)
        try:
            await asyncio.wait_for(self._slots.acquire(), ACQUIRE_TIMEOUT)
        except TimeoutError:
            raise ServiceUnavailable("Every database connection is busy; retry shortly.", retry_after=1) from None
        try:
            while self._idle:
                conn, epoch = self._idle.pop()
                if epoch == self._epoch and not conn.closed and not conn.broken:
                    return conn
                await _close_quietly(conn)
            if time.monotonic() < self._down_until:
                raise ServiceUnavailable("The store is temporarily unavailable; retry shortly.", retry_after=1)
            try:
                return await AsyncConnection.connect(**self._params, autocommit=True)
            except (psycopg.Error, OSError) as exc:
                self._down_until = time.monotonic() + CONNECT_BACKOFF
                log.warning("cannot connect to the database: %s", _one_line(exc))
                raise ServiceUnavailable("The store is temporarily unavailable; retry shortly.",
                                         retry_after=1) from None
        except BaseException:
            self._slots.release()
            raise

    async def release(self, conn: Conn) -> None:
        assert self._slots is not None
        try:
            reusable = (not self._closed and not conn.closed and not conn.broken
                        and conn.info.transaction_status == TransactionStatus.IDLE)
            if reusable:
                self._idle.append((conn, self._epoch))
            else:
                await _close_quietly(conn)
        finally:
            self._slots.release()

    def lost(self) -> None:
        """A connection broke: the idle ones were most likely made before the same failure."""
        self._epoch += 1

    async def close(self) -> None:
        self._closed = True
        while self._idle:
            await _close_quietly(self._idle.pop()[0])


async def _close_quietly(conn: Conn) -> None:
    with contextlib.suppress(Exception):
        await conn.close()


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def _principal_notification(client_id: str) -> str:
    """What a change of a service principal tells the other replicas: drop it from the cache."""
    return json.dumps({"p": client_id}, separators=(",", ":"))


def _notification(ref: ServiceRef, name: AccessName | None, config: AccessConfig | None) -> str:
    """What a change tells the other replicas: which configuration, and its new version ids and tag."""
    body: dict[str, Any] = {"k": list(ref.key), "a": name.value if name else "*"}
    if config is not None:
        body["v"] = [config.primary_version_id, config.secondary_version_id]
        body["e"] = config.etag
    return json.dumps(body, separators=(",", ":"))


class PostgresStore:
    def __init__(self, url: str, cipher: Cipher, *, migrate: bool = True, pool_size: int = DEFAULT_POOL_SIZE,
                 row_locks: bool = True) -> None:
        self.url = url
        self.cipher = cipher
        self.migrate = migrate
        self.pool_size = pool_size
        self.row_locks = row_locks
        #: Write every change's events, subscribed or not (see Store.all_events).
        self.all_events = True
        self._params = connection_params(url)
        self._pool: _Pool | None = None
        self._cache = KeyCache()
        #: Service principals, for checking their tokens; dropped on notification like keys.
        self._principals: Cache[ServicePrincipal] = Cache()
        #: Changes of one configuration waiting for the transaction that will commit them together.
        self._waiting: dict[CacheKey, list[tuple[Callable[[Conn], Awaitable[AccessConfig]],
                                                 asyncio.Future[AccessConfig]]]] = {}
        self._leaders: set[asyncio.Future[None]] = set()
        self._opened = OpenedKeys()
        self._listener: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._closing = False
        #: Counters for tests and logs: notifications applied, listener (re)connections.
        self.notifications = 0
        self.listener_connects = 0

    def describe(self) -> str:
        return describe_url(self.url) + ("" if self.row_locks else " (UNSAFE: row locks disabled, test only)")

    # -- lifecycle -------------------------------------------------------------------------------

    async def open(self) -> None:
        if not self.row_locks:
            log.warning("row locks are DISABLED (%s): lost updates are possible; this is for tests only",
                        UNSAFE_NO_ROW_LOCK)
        try:
            await asyncio.to_thread(self._prepare)
        except psycopg.Error as exc:
            raise RuntimeError(f"cannot use the database {describe_url(self.url)}: {_one_line(exc)}") from None
        self._closing = False
        self._listening = asyncio.Event()
        self._pool = _Pool(self._params, self.pool_size)
        self._listener = asyncio.create_task(self._listen_forever(), name="tenant-access-listener")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), 5)

    def _prepare(self) -> None:
        """Migrations (or the check that none is pending) and the master key check, at start."""
        params = dict(self._params, application_name=str(self._params["application_name"]) + "-migrate")
        with psycopg.connect(**params, autocommit=True) as conn:
            if self.migrate:
                migrate(conn)
            else:
                missing = pending(conn)
                if missing:
                    raise migrations.SchemaOutOfDate(
                        f"the database schema lacks migrations {missing}: run `tenant-access db upgrade` "
                        "(or start without --no-migrate)")
            with conn.transaction():

                def execute(sql: str, args: Sequence[Any]) -> None:
                    conn.execute(pyformat(sql), args)

                def fetchone(sql: str, args: Sequence[Any]) -> tuple[Any, ...] | None:
                    return conn.execute(pyformat(sql), args).fetchone()

                verify_master_key(execute, fetchone, self.cipher)

    async def close(self) -> None:
        self._closing = True
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
            self._listener = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        self._cache.clear()
        self._principals.clear()

    async def ping(self) -> None:
        await self._read(lambda c: self._one(c, "SELECT 1", ()))

    # -- running statements ----------------------------------------------------------------------

    @staticmethod
    async def _one(conn: Conn, sql: str, args: Sequence[Any]) -> tuple[Any, ...] | None:
        cur = await conn.execute(pyformat(sql), args)
        return await cur.fetchone()

    @staticmethod
    async def _all(conn: Conn, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        cur = await conn.execute(pyformat(sql), args)
        return await cur.fetchall()

    @staticmethod
    async def _exec(conn: Conn, sql: str, args: Sequence[Any]) -> None:
        await conn.execute(pyformat(sql), args)

    def _pool_or_fail(self) -> _Pool:
        if self._pool is None:
            raise ServiceUnavailable("The store is not open.")
        return self._pool

    async def _read(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """One statement outside any explicit transaction; retried once on a fresh connection when
        the pooled one turns out to have been broken (e.g. by a database restart)."""
        pool = self._pool_or_fail()
        for attempt in (1, 2):
            conn = await pool.acquire()
            try:
                return await fn(conn)
            except psycopg.Error as exc:
                if conn.broken:
                    pool.lost()
                    if attempt == 1:
                        continue
                log.error("read failed: %s", _one_line(exc))
                raise _storage_error(exc) from None
            finally:
                await pool.release(conn)
        raise AssertionError("unreachable")

    async def _write(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """``fn`` in one transaction; answered only after its COMMIT returned.

        Shielded from cancellation: a request that goes away does not abandon its transaction half
        way. Retried (``fn`` runs again, on fresh state) after a deadlock, a serialization failure, a
        unique violation from a racing insert, or a connection that broke before COMMIT was sent;
        never after a failure during COMMIT, whose outcome is unknown (503: the client decides).
        """
        return await asyncio.shield(self._transaction(fn))

    async def _transaction(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        pool = self._pool_or_fail()
        attempt = 0
        while True:
            attempt += 1
            conn = await pool.acquire()
            committing = False
            try:
                await conn.execute("BEGIN")
                result = await fn(conn)
                committing = True
                await conn.execute("COMMIT")
                return result
            except psycopg.Error as exc:
                if conn.broken:
                    pool.lost()
                else:
                    with contextlib.suppress(psycopg.Error):
                        await conn.execute("ROLLBACK")
                retry = (exc.sqlstate in _RETRY_STATES or (conn.broken and not committing))
                if retry and attempt < MAX_ATTEMPTS:
                    log.info("transaction retried after %s", _one_line(exc))
                    continue
                log.error("write transaction failed%s: %s", " during COMMIT" if committing else "", _one_line(exc))
                raise _storage_error(exc) from None
            except BaseException:
                # A domain decision refused (nothing written), or we were cancelled.
                if not conn.broken and not conn.closed:
                    with contextlib.suppress(Exception):
                        await conn.execute("ROLLBACK")
                raise
            finally:
                await pool.release(conn)

    async def _notify(self, conn: Conn, ref: ServiceRef, name: AccessName | None, config: AccessConfig | None) -> None:
        """Sent inside the change's transaction: delivered if and only if the change commits."""
        await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, _notification(ref, name, config)))

    # -- services --------------------------------------------------------------------------------

    async def put_service(self, ref: ServiceRef, decide: Callable[[Service | None], ServicePlan]) -> ServicePlan:
        async def tx(conn: Conn) -> ServicePlan:
            row = await self._one(
                conn,
                f"SELECT id, {SERVICE_COLUMNS} FROM services "  # noqa: S608 - constant column list
                "WHERE subscription_key = ? AND resource_group_key = ? AND name_key = ? FOR UPDATE",
                ref.key,
            )
            existing = service_from_row(row[1:]) if row else None
            plan = decide(existing)
            svc = plan.service
            if row is None:
                service_id = secrets.token_hex(12)
                await self._exec(
                    conn,
                    "INSERT INTO services (id, subscription_key, resource_group_key, name_key, "  # noqa: S608
                    f"{SERVICE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (service_id, *ref.key, svc.ref.subscription_id, svc.ref.resource_group, svc.ref.name,
                     svc.location, svc.sku_name, svc.sku_capacity, svc.publisher_email, svc.publisher_name,
                     json.dumps(svc.tags), svc.etag, ts(svc.created_at), ts(svc.updated_at)),
                )
            else:
                service_id = row[0]
                await self._exec(
                    conn,
                    "UPDATE services SET sku_name = ?, sku_capacity = ?, publisher_email = ?, publisher_name = ?, "
                    "tags = ?, etag = ?, updated_at = ? WHERE id = ?",
                    (svc.sku_name, svc.sku_capacity, svc.publisher_email, svc.publisher_name,
                     json.dumps(svc.tags), svc.etag, ts(svc.updated_at), service_id),
                )
            if plan.audit is not None:
                await self._exec(conn, AUDIT_INSERT, audit_args(plan.audit))
            await self._insert_events(conn, ref, plan.events)
            for new in plan.new_configs:
                for version in (new.primary, new.secondary):
                    await self._insert_version(conn, service_id, version)
                await self._exec(
                    conn,
                    "INSERT INTO access_configs (service_id, name, principal_id, enabled, etag, created_at, "
                    "updated_at, primary_version_id, secondary_version_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (service_id, new.name.value, new.principal_id, int(new.enabled), new.etag,
                     ts(svc.created_at), ts(svc.created_at), new.primary.id, new.secondary.id),
                )
            if plan.new_configs:
                await self._notify(conn, ref, None, None)
            return plan

        plan = await self._write(tx)
        if plan.new_configs:
            self._invalidate(ref, None)
        return plan

    async def get_service(self, ref: ServiceRef) -> Service | None:
        row = await self._read(lambda c: self._one(
            c,
            f"SELECT {SERVICE_COLUMNS} FROM services "  # noqa: S608 - constant column list
            "WHERE subscription_key = ? AND resource_group_key = ? AND name_key = ?",
            ref.key,
        ))
        return service_from_row(row) if row else None

    async def list_services(self, subscription_id: str, resource_group: str) -> list[Service]:
        rows = await self._read(lambda c: self._all(
            c,
            f"SELECT {SERVICE_COLUMNS} FROM services "  # noqa: S608 - constant column list
            "WHERE subscription_key = ? AND resource_group_key = ? ORDER BY name_key",
            (subscription_id.lower(), resource_group.lower()),
        ))
        return [service_from_row(r) for r in rows]

    async def list_all_services(self) -> list[Service]:
        rows = await self._read(lambda c: self._all(
            c,
            f"SELECT {SERVICE_COLUMNS} FROM services "  # noqa: S608 - constant column list
            "ORDER BY subscription_key, resource_group_key, name_key", (),
        ))
        return [service_from_row(r) for r in rows]

    async def reset(self) -> None:
        async def tx(conn: Conn) -> None:
            for table in ("rotation_policies", "key_usage", "access_configs", "key_versions", "services",
                          "audit_events", "idempotency_keys"):
                await conn.execute(f"DELETE FROM {table}")  # noqa: S608 - constant table names
            for table in outbox.TABLES:
                await conn.execute(f"DELETE FROM {table}")  # noqa: S608 - constant table names
            await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, RESET_NOTIFICATION))

        await self._write(tx)
        self._cache.clear()

    async def delete_service(self, ref: ServiceRef, audit: AuditEvent,
                             events: Sequence[Event] = ()) -> Service | None:
        async def tx(conn: Conn) -> Service | None:
            row = await self._one(
                conn,
                f"SELECT id, {SERVICE_COLUMNS} FROM services "  # noqa: S608 - constant column list
                "WHERE subscription_key = ? AND resource_group_key = ? AND name_key = ? FOR UPDATE",
                ref.key,
            )
            if row is None:
                return None
            await self._exec(conn, "DELETE FROM key_usage WHERE service_id = ?", (row[0],))
            await self._exec(conn, "DELETE FROM services WHERE id = ?", (row[0],))
            await self._exec(conn, AUDIT_INSERT, audit_args(audit))
            await self._insert_events(conn, ref, events)
            await self._notify(conn, ref, None, None)
            return service_from_row(row[1:])

        deleted = await self._write(tx)
        if deleted is not None:
            self._invalidate(ref, None)
        return deleted

    # -- events (storage/outbox.py) -----------------------------------------------------------------

    async def _insert_events(self, conn: Conn, ref: ServiceRef, events: outbox.Events) -> None:
        """The change's events, into the outbox; unless ``all_events``, only if someone wants them."""
        if events == () or (not self.all_events and await self._one(conn, outbox.WANTED,
                                                                     outbox.wanted_args(ref, utcnow())) is None):
            return
        for item in outbox.made(events):
            await self._exec(conn, outbox.INSERT, outbox.insert_args(item))

    @property
    def outbox(self) -> Outbox:
        return outbox.Outbox(self.cipher)

    async def run_outbox(self, op: Op[T], *, write: bool = False, durable: bool = False) -> T:
        """An outbox operation in a transaction of its own; writes are committed without waiting
        for the WAL flush (a lost claim or delivery mark only means the event is sent again),
        except ``durable`` ones (a subscription change and its audit record)."""
        if not write:
            return await self._read(lambda conn: op(outbox.PostgresQ(conn)))

        async def tx(conn: Conn) -> T:
            if not durable:
                await conn.execute("SET LOCAL synchronous_commit TO off")
            return await op(outbox.PostgresQ(conn))

        return await self._write(tx)

    # -- audit ------------------------------------------------------------------------------------

    async def record(self, event: AuditEvent, *, durable: bool = True) -> None:
        await self._write(lambda conn: self._insert_record(conn, event, durable=durable))

    async def _insert_record(self, conn: Conn, event: AuditEvent, *, durable: bool) -> None:
        if not durable:  # committed before the answer, but without waiting for the WAL flush
            await conn.execute("SET LOCAL synchronous_commit TO off")
        await self._exec(conn, AUDIT_INSERT, audit_args(event))

    async def list_audit(self, query: AuditQuery) -> list[AuditEvent]:
        sql, args = audit_sql(query)
        rows = await self._read(lambda c: self._all(c, sql, args))
        return [audit_from_row(r, query.service) for r in rows]

    async def add_audit_counts(self, counts: Sequence[tuple[str, int]]) -> None:
        if not counts:
            return

        async def tx(conn: Conn) -> None:
            await conn.execute("SET LOCAL synchronous_commit TO off")
            async with conn.cursor() as cur:
                await cur.executemany(pyformat(AUDIT_ADD_COUNT), [(n, record_id) for record_id, n in counts])

        await self._write(tx)

    # -- rotation policies (issue 14) ------------------------------------------------------------

    async def put_rotation_policy(self, ref: ServiceRef, name: AccessName, document: dict[str, Any],
                                  now: _dt.datetime, audit: AuditEvent) -> policy_sql.PolicyRecord | None:
        async def tx(conn: Conn) -> policy_sql.PolicyRecord | None:
            found = await self._one(conn, policy_sql.SERVICE_ID + " FOR SHARE", ref.key)
            if found is None:
                return None
            await self._exec(conn, policy_sql.UPSERT, policy_sql.upsert_args(found[0], name, document, now))
            await self._exec(conn, AUDIT_INSERT, audit_args(audit))
            # The keys' expiry is cached with the keys: every replica drops them.
            await self._notify(conn, ref, name, None)
            return policy_sql.from_row(await self._one(conn, policy_sql.SELECT_ONE, policy_sql.one_args(ref, name)))

        stored = await self._write(tx)
        self._invalidate(ref, name)
        return stored

    async def get_rotation_policy(self, ref: ServiceRef, name: AccessName) -> policy_sql.PolicyRecord | None:
        row = await self._read(lambda conn: self._one(conn, policy_sql.SELECT_ONE, policy_sql.one_args(ref, name)))
        return policy_sql.from_row(row) if row else None

    async def delete_rotation_policy(self, ref: ServiceRef, name: AccessName, audit: AuditEvent) -> bool:
        async def tx(conn: Conn) -> bool:
            found = await self._one(conn, policy_sql.SERVICE_ID, ref.key)
            if found is None:
                return False
            cur = await conn.execute(pyformat(policy_sql.DELETE), (found[0], name.value))
            if cur.rowcount == 0:
                return False
            await self._exec(conn, AUDIT_INSERT, audit_args(audit))
            await self._notify(conn, ref, name, None)  # the keys' expiry is cached with the keys
            return True

        deleted: bool = await self._write(tx)
        self._invalidate(ref, name)
        return deleted

    async def list_rotation_policies(self) -> list[policy_sql.PolicyRecord]:
        rows = await self._read(lambda conn: self._all(conn, policy_sql.SELECT_ALL, ()))
        return [policy_sql.from_row(r) for r in rows]

    async def set_policy_outcome(self, ref: ServiceRef, name: AccessName, at: _dt.datetime, outcome: str,
                                 blocked_since: _dt.datetime | None, audit: AuditEvent | None = None) -> bool:
        sql = policy_sql.SET_BLOCKED if blocked_since is not None else policy_sql.SET_OUTCOME
        args = policy_sql.outcome_args(ref, name, at, outcome, blocked_since)

        async def tx(conn: Conn) -> bool:
            cur = await conn.execute(pyformat(sql), args)
            if cur.rowcount == 0:
                return False
            if audit is not None:
                await self._exec(conn, AUDIT_INSERT, audit_args(audit))
            return True

        return await self._write(tx)

    # -- key usage (issue 14) --------------------------------------------------------------------

    async def add_key_usage(self, rows: Sequence[usage_sql.UsageRow]) -> None:
        """Not flushed to disk (``synchronous_commit off``): usage is batched and may lose the last
        flush anyway; rows are locked in version order, so concurrent replicas cannot deadlock."""
        if not rows:
            return
        args = usage_sql.upsert_args(rows)

        async def tx(conn: Conn) -> None:
            await conn.execute("SET LOCAL synchronous_commit TO off")
            async with conn.cursor() as cur:
                await cur.executemany(pyformat(usage_sql.UPSERT), args)

        await self._write(tx)

    async def get_key_usage(self, version_ids: Sequence[str]) -> dict[str, usage_sql.Usage]:
        if not version_ids:
            return {}
        sql = usage_sql.select_sql(len(version_ids))
        return usage_sql.from_rows(await self._read(lambda conn: self._all(conn, sql, tuple(version_ids))))

    async def scan_audit(self, scan: AuditScan) -> list[AuditEvent]:
        sql, args = scan_sql(scan)
        rows = await self._read(lambda c: self._all(c, sql, args))
        return [audit_from_row(r) for r in rows]

    async def count_audit(self, scan: AuditScan) -> int:
        sql, args = count_sql(scan)
        row = await self._read(lambda c: self._one(c, sql, args))
        return int(row[0]) if row else 0

    async def delete_audit(self, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        sql, args = delete_sql(ids)
        return await self._write(lambda conn: self._deleting(conn, sql, args))

    @staticmethod
    async def _deleting(conn: Conn, sql: str, args: Sequence[Any]) -> int:
        """A deletion lost to a crash is simply done again by the next prune: no need to wait for the flush."""
        await conn.execute("SET LOCAL synchronous_commit TO off")
        cur = await conn.execute(pyformat(sql), args)
        return max(cur.rowcount, 0)

    # -- master key rotation ----------------------------------------------------------------------

    async def reencrypt(self, progress: Callable[[int, int], None] | None = None) -> int:
        counted = await self._read(lambda c: self._one(c, "SELECT count(*) FROM key_versions WHERE secret IS NOT NULL",
                                                       ()))
        total = int(counted[0]) if counted else 0
        cipher, done, rewritten, last = self.cipher, 0, 0, ""

        async def batch(conn: Conn) -> tuple[str | None, int, int]:
            rows = await self._all(conn, REENCRYPT_SELECT + " FOR UPDATE", (last,))
            changed = reencrypted(cipher, rows)
            for row in changed:
                await self._exec(conn, REENCRYPT_UPDATE, row)
            return (rows[-1][0] if rows else None), len(rows), len(changed)

        while True:
            cursor, seen, changed = await self._write(batch)
            done, rewritten = done + seen, rewritten + changed
            if progress is not None:
                progress(done, max(total, done))
            if cursor is None:
                break
            last = cursor
        await self._write(lambda conn: self._exec(conn, CHECK_UPDATE, (cipher.encrypt(CHECK_PLAINTEXT, CHECK_AAD),)))
        return rewritten

    async def census(self, progress: Callable[[int, int], None] | None = None) -> KeyCensus:
        counted = await self._read(lambda c: self._one(c, CENSUS_COUNT, ()))
        total = int(counted[0]) if counted else 0
        census, last = KeyCensus(), ""

        async def batch(after: str) -> list[tuple[Any, ...]]:
            return await self._read(lambda c: self._all(c, CENSUS_SELECT, (after,)))

        while True:
            rows = await batch(last)
            if not rows:
                break
            census.add_rows(self.cipher, rows)
            if progress is not None:
                progress(census.total, max(total, census.total))
            last = rows[-1][0]
        check = await self._read(lambda c: self._one(c, CHECK_SELECT, ()))
        census.add_check(self.cipher, check[0] if check else None)
        return census

    # -- service principals ------------------------------------------------------------------------

    # -- declared subscriptions ----------------------------------------------------------------

    async def put_subscription(self, subscription: Subscription) -> None:
        await self._write(lambda conn: self._exec(
            conn,
            "INSERT INTO subscriptions (id_key, id, display_name, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (id_key) DO UPDATE SET display_name = excluded.display_name",
            (subscription.id.lower(), subscription.id, subscription.display_name, ts(utcnow())),
        ))

    async def list_subscriptions(self) -> list[Subscription]:
        rows = await self._read(lambda c: self._all(
            c, "SELECT id, display_name FROM subscriptions ORDER BY id_key", ()))
        return [Subscription(r[0], r[1]) for r in rows]

    async def add_principal(self, principal: ServicePrincipal, audit: AuditEvent | None = None) -> None:
        async def tx(conn: Conn) -> None:
            await self._exec(
                conn,
                "INSERT INTO service_principals (client_id, secret_hash, role, scope, description, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (principal.client_id, principal.secret_hash, principal.role, principal.scope, principal.description,
                 ts(principal.created_at)))
            if audit is not None:
                await self._exec(conn, AUDIT_INSERT, audit_args(audit))

        await self._write(tx)

    async def get_principal(self, client_id: str) -> ServicePrincipal | None:
        row = await self._read(lambda c: self._one(c, PRINCIPAL_SELECT + " WHERE client_id = ?", (client_id,)))
        return principal_from_row(row) if row is not None else None

    async def get_principal_cached(self, client_id: str) -> ServicePrincipal | None:
        """Cached as keys are: dropped on the change's notification, and never used for more than a
        second while the listener is down."""
        max_age = FRESH_TTL if self._listening.is_set() else STALE_TTL
        return await self._principals.get_or_load(principal_key(client_id), lambda: self.get_principal(client_id),
                                                  max_age)

    async def list_principals(self) -> list[ServicePrincipal]:
        rows = await self._read(lambda c: self._all(c, PRINCIPAL_SELECT + " ORDER BY created_at, client_id", ()))
        return [principal_from_row(r) for r in rows]

    async def _change_principal(self, client_id: str, sql: str, args: Sequence[Any],
                                audit: AuditEvent | None = None) -> ServicePrincipal | None:
        """One change of a principal, its audit record, and the notification that makes every
        replica drop it from its cache, in one transaction; answers the principal as it is after
        the change (None when there is none, or it was deleted)."""
        async def tx(conn: Conn) -> tuple[int, ServicePrincipal | None]:
            cursor = await conn.execute(pyformat(sql), args)
            row = await self._one(conn, PRINCIPAL_SELECT + " WHERE client_id = ?", (client_id,))
            if cursor.rowcount:
                await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, _principal_notification(client_id)))
                if audit is not None:
                    await self._exec(conn, AUDIT_INSERT, audit_args(audit))
            return cursor.rowcount, principal_from_row(row) if row is not None else None

        count, after = await self._write(tx)
        self._principals.invalidate(principal_key(client_id))
        return after if count else None

    async def set_principal_disabled(self, client_id: str, disabled_at: _dt.datetime | None,
                                     audit: AuditEvent | None = None) -> bool:
        stamp = ts(disabled_at) if disabled_at is not None else None
        return await self._change_principal(client_id, PRINCIPAL_DISABLE, (stamp, client_id), audit) is not None

    async def replace_principal_secret(self, client_id: str, secret_hash: str,
                                       audit: AuditEvent | None = None) -> ServicePrincipal | None:
        return await self._change_principal(client_id, PRINCIPAL_REHASH, (secret_hash, client_id), audit)

    async def delete_principal(self, client_id: str, audit: AuditEvent | None = None) -> bool:
        async def tx(conn: Conn) -> int:
            cursor = await conn.execute(pyformat(PRINCIPAL_DELETE), (client_id,))
            if cursor.rowcount:
                await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, _principal_notification(client_id)))
                if audit is not None:
                    await self._exec(conn, AUDIT_INSERT, audit_args(audit))
            return cursor.rowcount

        count = await self._write(tx)
        self._principals.invalidate(principal_key(client_id))
        return count > 0

    # -- access configurations -------------------------------------------------------------------

    async def list_access(self, ref: ServiceRef) -> list[AccessConfig] | None:
        rows = await self._read(lambda c: self._all(c, CONFIG_SELECT + " ORDER BY c.name", ref.key))
        return [config_from_row(r) for r in rows] or None

    async def get_access(self, ref: ServiceRef, name: AccessName) -> AccessConfig | None:
        row = await self._read(lambda c: self._one(c, CONFIG_SELECT + " AND c.name = ?", (*ref.key, name.value)))
        return config_from_row(row) if row else None

    async def get_secrets(self, ref: ServiceRef, name: AccessName) -> Secrets | None:
        row = await self._read(lambda c: self._one(c, SECRETS_SELECT + " AND c.name = ?", (*ref.key, name.value)))
        return self._secrets(row) if row else None

    async def read_secrets(self, ref: ServiceRef, name: AccessName, audit: AuditEvent) -> Secrets | None:
        async def tx(conn: Conn) -> Secrets | None:
            row = await self._one(conn, SECRETS_SELECT + " AND c.name = ?", (*ref.key, name.value))
            if row is None:
                return None
            await self._insert_record(conn, audit, durable=False)
            return self._secrets(row)

        return await self._write(tx)

    async def get_secrets_cached(self, ref: ServiceRef, name: AccessName) -> Secrets | None:
        max_age = FRESH_TTL if self._listening.is_set() else STALE_TTL
        return await self._cache.get_or_load((*ref.key, name.value), lambda: self.get_secrets(ref, name), max_age)

    def _secrets(self, row: Sequence[Any]) -> Secrets:
        return self._opened.secrets(self.cipher, row)

    async def _insert_version(self, conn: Conn, service_id: str, version: KeyVersion) -> None:
        token = self.cipher.encrypt(
            version.secret.encode("utf-8"), aad(service_id, version.access_name, version.slot, version.id)
        )
        await self._exec(
            conn,
            "INSERT INTO key_versions (id, service_id, access_name, slot, secret, origin, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (version.id, service_id, version.access_name.value, version.slot.value, token, version.origin,
             ts(version.created_at)),
        )

    async def modify_access(
        self, ref: ServiceRef, name: AccessName, decide: Callable[[Secrets], AccessChange],
        *, idempotency: IdempotencyClaim | None = None,
    ) -> AccessConfig:
        select = CONFIG_SELECT + " AND c.name = ?"
        args = (*ref.key, name.value)
        unlocked: tuple[Any, ...] | None = None
        if not self.row_locks:
            # Test-only (see UNSAFE_NO_ROW_LOCK): the state is read first, without a lock, in a
            # transaction of its own, so two writers can both decide on the same state.
            unlocked = await self._read(lambda c: self._one(c, select, args))

        async def tx(conn: Conn) -> AccessConfig:
            if self.row_locks:
                # The lock that makes rotations linearizable: a concurrent change of this configuration
                # waits here until this transaction ends. The lock is taken on its own, and the state
                # read by the next statement, whose snapshot (READ COMMITTED) begins after the lock was
                # granted and so includes what the previous holder wrote. (Locking within the joined
                # read would re-check a concurrently updated row against the old key version rows and
                # find nothing.)
                locked = await self._one(conn, _LOCK_CONFIG, args)
                row = await self._one(conn, select, args) if locked else None
            else:
                row = unlocked
            if row is None:
                raise NotFound(f"The service '{ref.name}' was not found.")
            service_id = row[15]
            if idempotency is not None:
                # Under the row lock: a retry of the same request, even on another replica, waits for the
                # first one and then finds its record. (The same key used on two configurations at once
                # collides on the primary key instead, and the retried transaction finds the record.)
                used = await self._one(conn, idem.SELECT, idem.key_args(idempotency))
                if used is not None and idem.is_live(used, idempotency):
                    exists = await self._one(conn, idem.VERSION_EXISTS, (used[2], service_id)) is not None
                    raise idem.replay(used, version_exists=exists)
                if used is not None:
                    await self._exec(conn, idem.DELETE, idem.key_args(idempotency))
            current = self._secrets(row)
            change = decide(current)
            version_ids = {KeySlot.PRIMARY: current.config.primary_version_id,
                           KeySlot.SECONDARY: current.config.secondary_version_id}
            for version in change.new_versions:
                await self._insert_version(conn, service_id, version)
                await self._exec(conn, "UPDATE key_versions SET secret = NULL, superseded_at = ? WHERE id = ?",
                                 (ts(version.created_at), version_ids[version.slot]))
                version_ids[version.slot] = version.id
            await self._exec(
                conn,
                "UPDATE access_configs SET principal_id = ?, enabled = ?, etag = ?, updated_at = ?, "
                "primary_version_id = ?, secondary_version_id = ? WHERE service_id = ? AND name = ?",
                (change.principal_id, int(change.enabled), change.etag, ts(change.updated_at),
                 version_ids[KeySlot.PRIMARY], version_ids[KeySlot.SECONDARY], service_id, name.value),
            )
            if change.audit is not None:
                await self._exec(conn, AUDIT_INSERT, audit_args(change.audit))
            await self._insert_events(conn, ref, change.events)
            if change.policy_outcome is not None:
                at, outcome = change.policy_outcome
                await self._exec(conn, policy_sql.SET_OUTCOME, policy_sql.outcome_args(ref, name, at, outcome, None))
            if idempotency is not None:
                await self._exec(conn, idem.INSERT, idem.insert_args(idempotency, current, change))
                await self._exec(conn, idem.PURGE, idem.purge_args(idempotency))
            fresh = await self._one(conn, select, args)
            assert fresh is not None
            config = config_from_row(fresh)
            if config.etag != current.config.etag or change.new_versions:
                await self._notify(conn, ref, name, config)
            return config

        if self.row_locks:
            config: AccessConfig = await self._together((*ref.key, name.value), tx)
        else:
            config = await self._write(tx)
        self._invalidate(ref, name)
        return config

    async def _together(self, key: CacheKey, change: Callable[[Conn], Awaitable[AccessConfig]]) -> AccessConfig:
        """Changes of one configuration, committed together when they arrive together.

        Each change locks the configuration's row, so concurrent ones would otherwise wait for each
        other's commit, one fsync each. Here the changes that arrive while one transaction runs form
        the next, each in its own savepoint (a refusal, such as a failed If-Match, undoes only its
        own), and are answered after its COMMIT: group commit, as the SQLite writer does. A failure
        of the database fails (or retries) the whole transaction.
        """
        future: asyncio.Future[AccessConfig] = asyncio.get_running_loop().create_future()
        waiting = self._waiting.get(key)
        if waiting is None:
            self._waiting[key] = [(change, future)]
            task = asyncio.ensure_future(self._commit_waiting(key))
            self._leaders.add(task)
            task.add_done_callback(self._leaders.discard)
        else:
            waiting.append((change, future))
        return await future

    async def _commit_waiting(self, key: CacheKey) -> None:
        while self._waiting.get(key):
            batch, self._waiting[key] = self._waiting[key], []
            outcomes: list[tuple[BaseException | None, AccessConfig | None]]
            try:
                if len(batch) == 1:
                    outcomes = [(None, await self._write(batch[0][0]))]
                else:
                    outcomes = await self._write(functools.partial(self._savepoints, batch=batch))
            except BaseException as exc:  # delivered to every waiting request
                outcomes = [(exc, None)] * len(batch)
            for (_, future), (error, result) in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(result)  # type: ignore[arg-type]
        self._waiting.pop(key, None)

    @staticmethod
    async def _savepoints(
        conn: Conn, batch: list[tuple[Callable[[Conn], Awaitable[AccessConfig]], asyncio.Future[AccessConfig]]],
    ) -> list[tuple[BaseException | None, AccessConfig | None]]:
        outcomes: list[tuple[BaseException | None, AccessConfig | None]] = []
        for change, _ in batch:
            await conn.execute("SAVEPOINT change")
            try:
                result = await change(conn)
            except TenantAccessError as exc:  # a refusal: its own writes are undone, no one else's
                await conn.execute("ROLLBACK TO SAVEPOINT change")
                outcomes.append((exc, None))
                continue
            await conn.execute("RELEASE SAVEPOINT change")
            outcomes.append((None, result))
        return outcomes

    # -- the key cache and its listener -----------------------------------------------------------

    def _invalidate(self, ref: ServiceRef, name: AccessName | None) -> None:
        for access in (name,) if name is not None else tuple(AccessName):
            self._cache.invalidate((*ref.key, access.value))

    def _apply(self, payload: str) -> None:
        if payload == RESET_NOTIFICATION:
            self.notifications += 1
            self._cache.clear()
            return
        try:
            body = json.loads(payload)
            if isinstance(body, dict) and "p" in body:
                self.notifications += 1
                self._principals.invalidate(principal_key(str(body["p"])))
                return
            sub, rg, svc = (str(part) for part in body["k"])
            names = [str(body["a"])] if body["a"] != "*" else [a.value for a in AccessName]
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed change notification; dropping every cached key")
            self._cache.clear()
            self._principals.clear()
            return
        self.notifications += 1
        versions = body.get("v")
        for access in names:
            key: CacheKey = (sub, rg, svc, access)
            if versions is not None and self._cache.holds(key, (str(versions[0]), str(versions[1])),
                                                          str(body.get("e"))):
                continue
            self._cache.invalidate(key)

    async def _listen_forever(self) -> None:
        params = connection_params(self.url, "listener")
        delay = 0.05
        while not self._closing:
            conn: Conn | None = None
            try:
                conn = await AsyncConnection.connect(**params, autocommit=True)
                await conn.execute(f"LISTEN {CHANNEL}")
                # Anything may have changed while nobody listened: start from an empty cache.
                self._cache.clear()
                self._principals.clear()
                self.listener_connects += 1
                self._listening.set()
                if self.listener_connects > 1:
                    log.info("change listener reconnected; key cache dropped")
                delay = 0.05
                while True:
                    async for notify in conn.notifies(timeout=HEARTBEAT):
                        self._apply(notify.payload)
                    await asyncio.wait_for(conn.execute("SELECT 1"), HEARTBEAT)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: fall back to short-lived cache entries, reconnect
                if self._listening.is_set():
                    log.warning("change listener lost (%s); cached keys now live at most %.1fs until it is back",
                                _one_line(exc), STALE_TTL)
                self._listening.clear()
                self._cache.clear()
                self._principals.clear()
            finally:
                self._listening.clear()
                if conn is not None:
                    await _close_quietly(conn)
            if not self._closing:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)


def pending(conn: psycopg.Connection[Any]) -> list[int]:
    """Versions of the migrations this code has that the database has not applied."""
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    done: set[int] = set()
    if exists and exists[0]:
        done = {int(r[0]) for r in conn.execute("SELECT version FROM schema_migrations").fetchall()}
    return [m.version for m in migrations.load() if m.version not in done]


def migrate(conn: psycopg.Connection[Any]) -> list[int]:
    """Apply pending migrations, each in its own transaction holding an advisory lock, so replicas
    starting together apply each migration exactly once (the others wait, then find it applied).

    A new database (no ``schema_migrations`` yet) gets its whole schema in one transaction: one
    commit instead of one per migration, and a crash leaves either no schema or all of it."""

    def lock() -> None:
        conn.execute("SET LOCAL lock_timeout = '120s'")
        conn.execute("SET LOCAL statement_timeout = 0")
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))

    everything = migrations.load()
    with conn.transaction():
        lock()
        found = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
        fresh = not (found and found[0])
        if fresh:
            conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
            for migration in everything:
                _apply(conn, migration)
    if fresh:
        for migration in everything:
            log.info("applied migration %04d_%s", migration.version, migration.name)
        return [migration.version for migration in everything]
    applied = []
    for migration in everything:
        with conn.transaction():
            lock()
            if conn.execute("SELECT 1 FROM schema_migrations WHERE version = %s", (migration.version,)).fetchone():
                continue
            _apply(conn, migration)
        log.info("applied migration %04d_%s", migration.version, migration.name)
        applied.append(migration.version)
    return applied


def _apply(conn: psycopg.Connection[Any], migration: migrations.Migration) -> None:
    for statement in migration.statements:
        conn.execute(statement)
    conn.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (%s, %s)",
                 (migration.version, ts(_dt.datetime.now(_dt.UTC))))
