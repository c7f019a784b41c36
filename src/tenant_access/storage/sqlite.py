"""The embedded SQLite store.

Writes go through one writer thread that owns the only write connection. It takes every write
waiting in its queue, runs them in one ``BEGIN IMMEDIATE`` transaction (each in its own savepoint,
so one failing write cannot undo another) and commits once: with ``synchronous=FULL`` the fsync is
the cost of a write, and sharing it between concurrent requests is what lets durable rotations keep
up with the HTTP layer (group commit). A request is answered only after the commit that holds its
write returned.

Writes that need no fsync (the audit records of secret reads and refused requests) skip that
handoff when they can: the event loop commits them itself, on the same connection, gathering those
of one loop iteration (and the next) into one transaction, whenever the writer thread is idle; they
wait for its call-back while it writes, and join its queue while another process holds the write
lock. They are still committed before anyone is answered. Waking a thread and trading the
interpreter lock with it cost several times more than such a commit.

Reads run on the caller's thread against a separate connection; WAL mode gives them a consistent
snapshot without blocking the writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as _dt
import json
import logging
import os
import queue
import secrets
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tenant_access.domain.access import applied
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
    CHECK_UPDATE,
    PRINCIPAL_DELETE,
    PRINCIPAL_DISABLE,
    PRINCIPAL_REHASH,
    PRINCIPAL_SELECT,
    REENCRYPT_SELECT,
    REENCRYPT_UPDATE,
    OpenedKeys,
    audit_args,
    audit_sql,
    count_sql,
    delete_sql,
    expiry,
    principal_from_row,
    principal_key,
    reencrypted,
    scan_sql,
    ts,
    verify_master_key,
)
from tenant_access.storage.sql import CHECK_AAD as _CHECK_AAD
from tenant_access.storage.sql import CHECK_PLAINTEXT as _CHECK_PLAINTEXT
from tenant_access.storage.sql import CONFIG_SELECT as _CONFIG_SELECT
from tenant_access.storage.sql import SECRETS_SELECT as _SECRETS_SELECT
from tenant_access.storage.sql import SERVICE_COLUMNS as _SERVICE_COLUMNS
from tenant_access.storage.sql import aad as _aad
from tenant_access.storage.sql import audit_from_row as _audit
from tenant_access.storage.sql import config_from_row as _config
from tenant_access.storage.sql import service_from_row as _service
from tenant_access.storage.write_lock import Request, WriteLock

log = logging.getLogger("tenant_access.storage")
T = TypeVar("T")
MAX_BATCH = 128
BUSY_TIMEOUT_MS = 5000


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return conn


class _Job:
    __slots__ = ("durable", "fn", "future", "keeps_written", "loop", "one_statement", "polite")

    def __init__(self, fn: Callable[[sqlite3.Connection], Any], loop: asyncio.AbstractEventLoop,
                 durable: bool = True, one_statement: bool = False, keeps_written: bool = False,
                 polite: bool = False) -> None:
        self.fn = fn
        self.loop = loop
        self.durable = durable
        #: A change that keeps :attr:`SqliteStore._written` true itself (it stores the state it
        #: committed); any other durable job may change keys behind it, and empties it.
        self.keeps_written = keeps_written
        #: Writes with exactly one statement, its last step: SQLite undoes a failed statement by
        #: itself, so the job needs no savepoint of its own.
        self.one_statement = one_statement
        #: Can wait for the request path of other processes (see write_lock.POLITE_WAIT).
        self.polite = polite
        self.future: asyncio.Future[Any] = loop.create_future()


def _deliver(future: asyncio.Future[Any], error: BaseException | None, result: Any) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class SqliteStore:
    def __init__(self, path: Path, cipher: Cipher, *, migrate: bool = True) -> None:
        self.path = path
        self.cipher = cipher
        self.migrate = migrate
        #: Write every change's events, subscribed or not (see Store.all_events).
        self.all_events = True
        #: Keys for checking shared access signatures, and configurations for GET: both valid only
        #: while PRAGMA data_version stands still.
        self._cache = KeyCache()
        self._opened = OpenedKeys()
        #: Configurations with their keys as the write connection last read or wrote them: see
        #: _check_written. Touched only by whoever holds ``_writing``.
        self._written: Cache[_Current] = Cache()
        self._written_version = -1
        #: Whether a service's changes must write their events (outbox.WANTED), as read by the
        #: write connection: kept and emptied with :attr:`_written` (a subscription made by this
        #: process empties both; one made by another moves data_version). A tail's marker going
        #: stale is the one change it can miss: events are then written a while longer, for nobody.
        self._wanted: dict[str, bool] = {}
        self._configs: Cache[AccessConfig] = Cache()
        #: Service principals, for checking their tokens: valid while PRAGMA data_version stands still.
        self._principals: Cache[ServicePrincipal] = Cache()
        self._data_version: int | None = None
        self._checked = False
        self._reader: sqlite3.Connection | None = None
        # The write connection's settings, changed only while holding ``_writing``.
        self._settings = ("FULL", BUSY_TIMEOUT_MS)
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        #: COMMITs of transactions the event loop ran, with the jobs to answer once each is on disk.
        self._commits: queue.SimpleQueue[tuple[list[_Job], list[tuple[BaseException | None, Any]]] | None] = (
            queue.SimpleQueue())
        self._committer: threading.Thread | None = None
        #: Taken before SQLite's write lock, by every process of ours sharing the file.
        self._lock = WriteLock(path)
        self._read_lock = threading.Lock()
        #: Held by whoever uses the write connection: the writer thread, or the event loop.
        self._writing = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_loop: list[_Job] = []
        #: Set by the event loop when it found the writer busy: the writer calls it back when done.
        self._call_back = False
        #: The event loop's wait for the write lock that another process holds (see _commit_on_loop).
        self._lock_wait: Request | None = None
        self._lock_deadline: asyncio.TimerHandle | None = None
        self._closing = False

    def describe(self) -> str:
        return f"sqlite {self.path}"

    # -- lifecycle -------------------------------------------------------------------------------

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.migrate and not self.path.exists():
            _build_new(self.path)
        _create_private(self.path)
        writer = _connect(self.path)
        try:
            if self.migrate:
                migrate(writer)
            else:
                missing = pending(writer)
                if missing:
                    raise migrations.SchemaOutOfDate(
                        f"the database schema lacks migrations {missing}: run `tenant-access db upgrade` "
                        "(or start without --no-migrate)")
            check_master_key(writer, self.cipher)
        except BaseException:
            writer.close()
            raise
        self._reader = _connect(self.path)
        self._lock.open()
        self._conn = writer
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run_writer, args=(writer,), name="sqlite-writer", daemon=True)
        self._thread.start()
        self._committer = threading.Thread(target=self._run_committer, args=(writer,), name="sqlite-commit",
                                           daemon=True)
        self._committer.start()

    async def close(self) -> None:
        self._closing = True
        if self._lock_wait is not None and self._lock_wait.withdraw():
            self._lock_wait = None
            self._writing.release()
            self._hand_over()  # answered by the writer thread (which is stopping: unavailable)
        if self._committer is not None:
            self._commits.put(None)
            await asyncio.get_running_loop().run_in_executor(None, self._committer.join, 10)
            self._committer = None
        if self._thread is not None:
            self._queue.put(None)
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 10)
            self._thread = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self._lock.close()

    async def ping(self) -> None:
        self._read(lambda c: c.execute("SELECT 1").fetchone())

    # -- the writer thread -----------------------------------------------------------------------

    def _run_writer(self, conn: sqlite3.Connection) -> None:
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                batch = [first]
                while len(batch) < MAX_BATCH:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        self._queue.put(None)
                        break
                    batch.append(nxt)
                with self._writing:
                    outcomes = self._transaction(conn, batch, on_loop=False)
                self._wake_loop()
                assert outcomes is not None  # only the event loop's transactions are ever declined
                for job, (error, result) in zip(batch, outcomes, strict=True):
                    job.loop.call_soon_threadsafe(_deliver, job.future, error, result)
        finally:
            with self._writing:
                self._conn = None
                conn.close()
            self._wake_loop()

    def _wake_loop(self) -> None:
        """Let the event loop commit what it held back while this thread was writing."""
        if self._call_back and self._loop is not None:
            self._call_back = False
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                self._loop.call_soon_threadsafe(self._commit_on_loop)

    def _transaction(self, conn: sqlite3.Connection, batch: list[_Job], on_loop: bool,
                     commit: bool = True, held: bool = False) -> list[tuple[BaseException | None, Any]] | None:
        """Run ``batch`` in one transaction, each job in its own savepoint; answers each job's
        outcome. ``on_loop``, it does not wait for the write lock: it answers ``None`` at once,
        having done nothing, when another process holds it (``held``: the caller has taken it).
        The caller holds ``_writing``.

        Whichever commit takes the log past 1,000 pages runs SQLite's automatic checkpoint, the
        event loop's included (a few milliseconds, with ids that append to their indexes). Leaving
        checkpoints to the writer thread measured worse: each of its steps waits for the
        interpreter lock that a busy loop holds, and the loop's commits wait for it meanwhile
        (listSecrets p99 at 8 connections 13-15 ms against 7 ms).

        Without ``commit`` the transaction is left open when it has something to commit (the
        caller hands its COMMIT to the committer thread: see _commit_on_loop)."""
        outcomes: list[tuple[BaseException | None, Any]] = []
        locked = held or (self._lock.try_acquire() if on_loop else self._lock.acquire(
            BUSY_TIMEOUT_MS / 1000, polite=all(job.polite for job in batch)))
        if on_loop and not locked:
            return None  # another process of ours is writing: the writer thread waits for it
        try:
            # A batch of only secret-read and refusal records commits without fsync (it is still
            # committed before anyone is answered, so a process crash loses none of it); any batch
            # with a change in it is fsynced, which also makes every earlier commit durable.
            sync = "FULL" if any(job.durable for job in batch) else "NORMAL"
            wanted = (sync, 0 if on_loop else BUSY_TIMEOUT_MS)
            if wanted != self._settings:
                for name, value, now in zip(("synchronous", "busy_timeout"), wanted, self._settings, strict=True):
                    if value != now:
                        conn.execute(f"PRAGMA {name}={value}")
                self._settings = wanted
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if on_loop and getattr(exc, "sqlite_errorcode", 0) & 0xFF == 5:  # SQLITE_BUSY
                    return None
                raise
            self._check_written(conn)
            outcomes, rolled_back = self._run_jobs(conn, batch)
            if not rolled_back and commit:
                conn.execute("COMMIT")
            if log.isEnabledFor(logging.DEBUG):
                log.debug("committed %d write(s) in one transaction", len(batch))
        except sqlite3.Error as exc:
            outcomes = self._rolled_back(conn, batch, exc)
        finally:
            if locked and not conn.in_transaction:  # else the committer thread lets go after COMMIT
                self._lock.release()
        return outcomes

    def _run_jobs(self, conn: sqlite3.Connection,
                  batch: list[_Job]) -> tuple[list[tuple[BaseException | None, Any]], bool]:
        """Each job of a begun transaction in its own savepoint: the outcomes, and whether the
        transaction was rolled back (a job alone that failed)."""
        outcomes: list[tuple[BaseException | None, Any]] = []
        # A job alone needs no savepoint: if it fails, the whole transaction is undone.
        alone = len(batch) == 1
        rolled_back = False
        for job in batch:
            savepoint = not alone and not job.one_statement
            if savepoint:
                conn.execute("SAVEPOINT job")
            forgets = job.durable and not job.keeps_written
            if forgets:
                self._forget_written()
            try:
                result = job.fn(conn)
            except BaseException as exc:  # delivered to the waiting request, never swallowed
                if isinstance(exc, sqlite3.Error) and not conn.in_transaction:
                    raise  # SQLite rolled the whole transaction back (full disk, I/O): every job failed
                if alone:
                    conn.execute("ROLLBACK")
                    rolled_back = True
                elif savepoint:
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                if isinstance(exc, sqlite3.Error):
                    log.error("write failed: %s: %s", type(exc).__name__, exc)
                    exc = _storage_error(exc)
                outcomes.append((exc, None))
            else:
                if savepoint:
                    conn.execute("RELEASE job")
                outcomes.append((None, result))
            finally:
                if forgets:
                    self._forget_written()
        return outcomes, rolled_back

    def _rolled_back(self, conn: sqlite3.Connection, batch: list[_Job],
                     exc: sqlite3.Error) -> list[tuple[BaseException | None, Any]]:
        """Every job of a transaction that failed as a whole fails with it."""
        log.error("write transaction failed: %s", type(exc).__name__ + ": " + str(exc))
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        self._forget_written()  # it may hold states this transaction wrote
        failure = _storage_error(exc)
        return [(failure, None)] * len(batch)

    def _forget_written(self) -> None:
        self._written.clear()
        self._wanted.clear()

    def _insert_events(self, conn: sqlite3.Connection, ref: ServiceRef, events: outbox.Events) -> None:
        """The change's events, into the outbox; unless every event is kept, only if someone
        wants them (answered from :attr:`_wanted`, else by one indexed read; see docs/events.md)."""
        if events == ():
            return
        if not self.all_events:
            key = ref.resource_id.lower()
            wanted = self._wanted.get(key)
            if wanted is None:
                wanted = self._wanted[key] = conn.execute(
                    outbox.WANTED, outbox.wanted_args(ref, utcnow())).fetchone() is not None
            if not wanted:
                return
        for item in outbox.made(events):
            conn.execute(outbox.INSERT, outbox.insert_args(item))

    def _check_written(self, conn: sqlite3.Connection) -> None:
        """Keep :attr:`_written` only while no other connection committed since it was filled.

        Called inside a write transaction (so nobody else can commit until it ends). Our own
        commits do not move this connection's ``data_version``; of our own writes, only those
        marked ``keeps_written`` may change keys, and they store what they wrote (any other
        durable job empties the cache around itself). So an entry is exactly the stored state:
        a rotation needs neither to read nor to decrypt the configuration it changes, nor to read
        it back afterwards."""
        version = _data_version(conn)
        if version != self._written_version:
            self._forget_written()
            self._written_version = version

    def _run_committer(self, conn: sqlite3.Connection) -> None:
        """COMMIT the transactions the event loop ran, here, where waiting for the disk blocks no
        one: the loop goes on serving requests (and gathering the next group) meanwhile.

        With ``synchronous=FULL`` SQLite syncs the log before it publishes the commit in the
        shared index, so no other connection or process can read a rotation that is not on disk;
        the jobs are answered only after that. The loop's ``_writing`` is released here."""
        while True:
            item = self._commits.get()
            if item is None:
                return
            batch, outcomes = item
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                outcomes = self._rolled_back(conn, batch, exc)
            finally:
                self._lock.release()
                self._writing.release()
            loop = batch[0].loop
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(self._committed, batch, outcomes)

    def _committed(self, batch: list[_Job], outcomes: list[tuple[BaseException | None, Any]]) -> None:
        # The next group first: its fsync then overlaps with answering this one (which is answered
        # whatever happens to the next).
        try:
            if self._on_loop:
                self._commit_on_loop()
        finally:
            for job, (error, result) in zip(batch, outcomes, strict=True):
                _deliver(job.future, error, result)

    async def _write(self, fn: Callable[[sqlite3.Connection], T], *, durable: bool = True,
                     one_statement: bool = False, off_loop: bool = False, keeps_written: bool = False,
                     polite: bool = False) -> T:
        """``fn`` run in a write transaction; answered after its commit. Not cancelled with the
        caller: a queued job runs anyway and its outcome is dropped.

        Short jobs run on the event loop (see _commit_on_loop): those that need no fsync, and the
        changes to access configurations (``keeps_written``: a rotation's statements take tens of
        microseconds, while a writer thread would take the interpreter lock back from the busy
        loop before each of them). Others (re-encryption batches, migrations of data) keep to the
        writer thread, where a long job stops no request."""
        if self._thread is None:
            raise ServiceUnavailable("The store is not open.")
        loop = asyncio.get_running_loop()
        job = _Job(fn, loop, durable, one_statement, keeps_written, polite)
        if (durable and not keeps_written) or loop is not self._loop or off_loop:
            self._queue.put(job)
        else:
            self._on_loop.append(job)
            if len(self._on_loop) == 1:
                # One more turn of the loop first: the requests that arrived meanwhile join this commit.
                loop.call_soon(self._commit_next_turn, loop)
        result: T = await job.future
        return result

    def _commit_on_loop(self, *, granted: bool = False) -> None:
        """Run the writes gathered during one loop iteration, here, in one transaction (group
        commit): those that need no fsync are committed here too; a transaction with a change in
        it goes to the committer thread for its COMMIT (the fsync), holding ``_writing`` until
        that is done, and the next group waits for it.

        While the writer thread is writing they wait for it to call back (waiting here would stop
        the event loop). When another process holds the write lock, the lock's waiter thread waits
        for it (write_lock.WriteLock.request) while the loop goes on serving, ``_writing`` held;
        the group, with whatever joined it meanwhile, runs here once the lock is ``granted``."""
        if self._lock_wait is not None and not granted:
            return  # runs when the lock comes
        batch = self._on_loop
        if not granted:
            if not batch:
                return
            if not self._writing.acquire(blocking=False):
                self._call_back = True
                # Checked again after asking: the writer may have let go in between, and then it
                # would never call back.
                if not self._writing.acquire(blocking=False):
                    return
        self._on_loop = []
        outcomes: list[tuple[BaseException | None, Any]] | None = [
            (ServiceUnavailable("The store is not open."), None)] * len(batch)
        keep_writing = False
        try:
            conn = self._conn
            if batch and conn is not None and self._committer is not None and not self._closing:
                durable = any(job.durable for job in batch)
                outcomes = self._transaction(conn, batch, on_loop=True, commit=not durable, held=granted)
                if outcomes is None and not granted:
                    self._on_loop = batch + self._on_loop
                    self._wait_for_lock(batch[0].loop)
                    keep_writing = True
                    return
                if outcomes is not None and conn.in_transaction:
                    self._commits.put((batch, outcomes))
                    keep_writing = True  # the committer lets go after COMMIT
                    return
            elif granted:
                self._lock.release()
        finally:
            if not keep_writing:
                self._writing.release()
        if outcomes is None:
            # Granted our lock, yet SQLite's is taken (a process that does not take ours: an older
            # build, the sqlite3 shell): the writer thread waits for it in SQLite's busy handler.
            self._on_loop = batch + self._on_loop
            self._hand_over()
            return
        for job, (error, result) in zip(batch, outcomes, strict=True):
            _deliver(job.future, error, result)

    def _commit_next_turn(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.call_soon(self._commit_on_loop)

    def _wait_for_lock(self, loop: asyncio.AbstractEventLoop) -> None:
        """Have the lock's waiter thread wait for another process to let go (see _commit_on_loop);
        after the busy timeout the group goes to the writer thread, which reports a lock held too
        long as the writer always has."""
        def on_granted(request: Request) -> None:  # on the waiter thread, holding the lock
            try:
                loop.call_soon_threadsafe(self._granted, request)
            except RuntimeError:  # the loop is closed: nobody will write
                self._lock.release()

        request = self._lock.request(on_granted)
        self._lock_wait = request
        self._lock_deadline = loop.call_later(BUSY_TIMEOUT_MS / 1000, self._lock_timed_out, request)

    def _granted(self, request: Request) -> None:
        if self._lock_wait is not request:
            self._lock.release()
            return
        self._lock_wait = None
        if self._lock_deadline is not None:
            self._lock_deadline.cancel()
            self._lock_deadline = None
        self._commit_on_loop(granted=True)

    def _lock_timed_out(self, request: Request) -> None:
        self._lock_deadline = None
        if self._lock_wait is not request or not request.withdraw():
            return  # granted meanwhile: _granted runs next
        self._lock_wait = None
        self._writing.release()
        self._hand_over()

    def _hand_over(self) -> None:
        batch, self._on_loop = self._on_loop, []
        for job in batch:
            self._queue.put(job)

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._reader is None:
            raise ServiceUnavailable("The store is not open.")
        try:
            with self._read_lock:
                return fn(self._reader)
        except sqlite3.Error as exc:
            log.error("read failed: %s: %s", type(exc).__name__, exc)
            raise _storage_error(exc) from None

    # -- services --------------------------------------------------------------------------------

    async def put_service(self, ref: ServiceRef, decide: Callable[[Service | None], ServicePlan]) -> ServicePlan:
        def tx(conn: sqlite3.Connection) -> ServicePlan:
            row = conn.execute(
                f"SELECT id, {_SERVICE_COLUMNS} FROM services "  # noqa: S608 - constant column list
                "WHERE subscription_key = ? AND resource_group_key = ? AND name_key = ?",
                ref.key,
            ).fetchone()
            existing = _service(row[1:]) if row else None
            plan = decide(existing)
            svc = plan.service
            if row is None:
                service_id = secrets.token_hex(12)
                conn.execute(
                    "INSERT INTO services (id, subscription_key, resource_group_key, name_key, "  # noqa: S608
                    f"{_SERVICE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (service_id, *ref.key, svc.ref.subscription_id, svc.ref.resource_group, svc.ref.name,
                     svc.location, svc.sku_name, svc.sku_capacity, svc.publisher_email, svc.publisher_name,
                     json.dumps(svc.tags), svc.etag, ts(svc.created_at), ts(svc.updated_at)),
                )
            else:
                service_id = row[0]
                conn.execute(
                    "UPDATE services SET sku_name = ?, sku_capacity = ?, publisher_email = ?, publisher_name = ?, "
                    "tags = ?, etag = ?, updated_at = ? WHERE id = ?",
                    (svc.sku_name, svc.sku_capacity, svc.publisher_email, svc.publisher_name,
                     json.dumps(svc.tags), svc.etag, ts(svc.updated_at), service_id),
                )
            if plan.audit is not None:
                _insert_audit(conn, plan.audit)
            self._insert_events(conn, ref, plan.events)
            for new in plan.new_configs:
                for version in (new.primary, new.secondary):
                    self._insert_version(conn, service_id, version)
                conn.execute(
                    "INSERT INTO access_configs (service_id, name, principal_id, enabled, etag, created_at, "
                    "updated_at, primary_version_id, secondary_version_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (service_id, new.name.value, new.principal_id, int(new.enabled), new.etag,
                     ts(svc.created_at), ts(svc.created_at), new.primary.id, new.secondary.id),
                )
            return plan

        return await self._write(tx)

    async def get_service(self, ref: ServiceRef) -> Service | None:
        row = self._read(lambda c: c.execute(
            f"SELECT {_SERVICE_COLUMNS} FROM services "  # noqa: S608 - constant column list
            "WHERE subscription_key = ? AND resource_group_key = ? AND name_key = ?",
            ref.key,
        ).fetchone())
        return _service(row) if row else None

    async def list_services(self, subscription_id: str, resource_group: str) -> list[Service]:
        rows = self._read(lambda c: c.execute(
            f"SELECT {_SERVICE_COLUMNS} FROM services "  # noqa: S608 - constant column list
            "WHERE subscription_key = ? AND resource_group_key = ? ORDER BY name_key",
            (subscription_id.lower(), resource_group.lower()),
        ).fetchall())
        return [_service(r) for r in rows]

    async def list_all_services(self) -> list[Service]:
        rows = self._read(lambda c: c.execute(
            f"SELECT {_SERVICE_COLUMNS} FROM services "  # noqa: S608 - constant column list
            "ORDER BY subscription_key, resource_group_key, name_key",
        ).fetchall())
        return [_service(r) for r in rows]

    async def reset(self) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            for table in ("rotation_policies", "key_usage", "access_configs", "key_versions", "services",
                          "audit_events", "idempotency_keys"):
                conn.execute(f"DELETE FROM {table}")  # noqa: S608 - constant table names
            for table in outbox.TABLES:
                conn.execute(f"DELETE FROM {table}")  # noqa: S608 - constant table names

        await self._write(tx)

    async def delete_service(self, ref: ServiceRef, audit: AuditEvent,
                             events: Sequence[Event] = ()) -> Service | None:
        def tx(conn: sqlite3.Connection) -> Service | None:
            row = conn.execute(
                f"SELECT id, {_SERVICE_COLUMNS} FROM services "  # noqa: S608 - constant column list
                "WHERE subscription_key = ? AND resource_group_key = ? AND name_key = ?",
                ref.key,
            ).fetchone()
            if row is None:
                return None
            conn.execute("DELETE FROM key_usage WHERE service_id = ?", (row[0],))
            conn.execute("DELETE FROM services WHERE id = ?", (row[0],))
            _insert_audit(conn, audit)
            self._insert_events(conn, ref, events)
            return _service(row[1:])

        return await self._write(tx)

    # -- events (storage/outbox.py) -----------------------------------------------------------------

    @property
    def outbox(self) -> Outbox:
        return outbox.Outbox(self.cipher)

    async def run_outbox(self, op: Op[T], *, write: bool = False, durable: bool = False) -> T:
        """An outbox operation; writes are committed without a flush (a lost claim or delivery
        mark only means the event is sent again, which at-least-once allows), except ``durable``
        ones (a subscription change and its audit record: acknowledged only once on disk)."""
        if write:
            # On the writer thread, not the event loop: a claim over a long queue must not hold
            # up requests; committed without fsync like the on-loop writes; polite (write_lock.py):
            # they wait for the request path of other processes, not it for them.
            return await self._write(lambda conn: outbox.drive(op(outbox.SqliteQ(conn))),
                                     durable=durable, off_loop=True, polite=not durable)
        return self._read(lambda conn: outbox.drive(op(outbox.SqliteQ(conn))))

    # -- audit ------------------------------------------------------------------------------------

    async def record(self, event: AuditEvent, *, durable: bool = True) -> None:
        await self._write(lambda conn: _insert_audit(conn, event), durable=durable, one_statement=True)

    async def list_audit(self, query: AuditQuery) -> list[AuditEvent]:
        sql, args = audit_sql(query)
        rows = self._read(lambda c: c.execute(sql, args).fetchall())
        return [_audit(r, query.service) for r in rows]

    async def add_audit_counts(self, counts: Sequence[tuple[str, int]]) -> None:
        if counts:
            rows = [(n, record_id) for record_id, n in counts]
            await self._write(lambda conn: conn.executemany(AUDIT_ADD_COUNT, rows), durable=False)

    async def scan_audit(self, scan: AuditScan) -> list[AuditEvent]:
        sql, args = scan_sql(scan)
        rows = self._read(lambda c: c.execute(sql, args).fetchall())
        return [_audit(r) for r in rows]

    async def count_audit(self, scan: AuditScan) -> int:
        sql, args = count_sql(scan)
        row = self._read(lambda c: c.execute(sql, args).fetchone())
        return int(row[0])

    async def delete_audit(self, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        sql, args = delete_sql(ids)
        deleted: int = await self._write(lambda conn: conn.execute(sql, args).rowcount, durable=False,
                                         one_statement=True)
        return deleted

    # -- master key rotation ----------------------------------------------------------------------

    async def reencrypt(self, progress: Callable[[int, int], None] | None = None) -> int:
        total = self._read(lambda c: c.execute("SELECT count(*) FROM key_versions WHERE secret IS NOT NULL")
                           .fetchone()[0])
        cipher, done, rewritten, last = self.cipher, 0, 0, ""

        def batch(conn: sqlite3.Connection) -> tuple[str | None, int, int]:
            rows = conn.execute(REENCRYPT_SELECT, (last,)).fetchall()
            changed = reencrypted(cipher, rows)
            conn.executemany(REENCRYPT_UPDATE, changed)
            return (rows[-1][0] if rows else None), len(rows), len(changed)

        while True:
            cursor, seen, changed = await self._write(batch)
            done, rewritten = done + seen, rewritten + changed
            if progress is not None:
                progress(done, max(total, done))
            if cursor is None:
                break
            last = cursor

        def check(conn: sqlite3.Connection) -> None:
            conn.execute(CHECK_UPDATE, (cipher.encrypt(_CHECK_PLAINTEXT, _CHECK_AAD),))

        await self._write(check)
        return rewritten

    async def census(self, progress: Callable[[int, int], None] | None = None) -> KeyCensus:
        total = self._read(lambda c: c.execute(CENSUS_COUNT).fetchone()[0])
        census, last = KeyCensus(), ""

        def batch(after: str) -> list[Any]:
            return self._read(lambda c: c.execute(CENSUS_SELECT, (after,)).fetchall())

        while True:
            rows = batch(last)
            if not rows:
                break
            census.add_rows(self.cipher, rows)
            if progress is not None:
                progress(census.total, max(total, census.total))
            last = rows[-1][0]
        check = self._read(lambda c: c.execute(CHECK_SELECT).fetchone())
        census.add_check(self.cipher, check[0] if check else None)
        return census

    # -- service principals ------------------------------------------------------------------------

    # -- declared subscriptions ----------------------------------------------------------------

    async def put_subscription(self, subscription: Subscription) -> None:
        await self._write(lambda conn: conn.execute(
            "INSERT INTO subscriptions (id_key, id, display_name, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (id_key) DO UPDATE SET display_name = excluded.display_name",
            (subscription.id.lower(), subscription.id, subscription.display_name, ts(utcnow())),
        ))

    async def list_subscriptions(self) -> list[Subscription]:
        rows = self._read(lambda c: c.execute(
            "SELECT id, display_name FROM subscriptions ORDER BY id_key").fetchall())
        return [Subscription(r[0], r[1]) for r in rows]

    async def add_principal(self, principal: ServicePrincipal, audit: AuditEvent | None = None) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO service_principals (client_id, secret_hash, role, scope, description, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (principal.client_id, principal.secret_hash, principal.role, principal.scope, principal.description,
                 ts(principal.created_at)))
            if audit is not None:
                _insert_audit(conn, audit)

        await self._write(tx)

    async def get_principal(self, client_id: str) -> ServicePrincipal | None:
        row = self._read(lambda c: c.execute(PRINCIPAL_SELECT + " WHERE client_id = ?", (client_id,)).fetchone())
        return principal_from_row(row) if row is not None else None

    async def get_principal_cached(self, client_id: str) -> ServicePrincipal | None:
        """From the cache while the file is unchanged (see :meth:`_unchanged`): exact, across processes."""
        self._unchanged()
        return await self._principals.get_or_load(principal_key(client_id), lambda: self.get_principal(client_id))

    async def list_principals(self) -> list[ServicePrincipal]:
        rows = self._read(lambda c: c.execute(PRINCIPAL_SELECT + " ORDER BY created_at, client_id").fetchall())
        return [principal_from_row(r) for r in rows]

    def _principal_change(self, sql: str, args: tuple[Any, ...],
                          audit: AuditEvent | None) -> Callable[[sqlite3.Connection], int]:
        """One change of a principal and its audit record (only if a row changed), as one transaction."""
        def tx(conn: sqlite3.Connection) -> int:
            count: int = conn.execute(sql, args).rowcount
            if count and audit is not None:
                _insert_audit(conn, audit)
            return count
        return tx

    async def set_principal_disabled(self, client_id: str, disabled_at: _dt.datetime | None,
                                     audit: AuditEvent | None = None) -> bool:
        stamp = ts(disabled_at) if disabled_at is not None else None
        return await self._write(self._principal_change(PRINCIPAL_DISABLE, (stamp, client_id), audit)) > 0

    async def replace_principal_secret(self, client_id: str, secret_hash: str,
                                       audit: AuditEvent | None = None) -> ServicePrincipal | None:
        change = self._principal_change(PRINCIPAL_REHASH, (secret_hash, client_id), audit)

        def tx(conn: sqlite3.Connection) -> ServicePrincipal | None:
            change(conn)
            row = conn.execute(PRINCIPAL_SELECT + " WHERE client_id = ?", (client_id,)).fetchone()
            return principal_from_row(row) if row is not None else None

        return await self._write(tx)

    async def delete_principal(self, client_id: str, audit: AuditEvent | None = None) -> bool:
        return await self._write(self._principal_change(PRINCIPAL_DELETE, (client_id,), audit)) > 0

    # -- rotation policies (issue 14) ------------------------------------------------------------

    async def put_rotation_policy(self, ref: ServiceRef, name: AccessName, document: dict[str, Any],
                                  now: _dt.datetime, audit: AuditEvent) -> policy_sql.PolicyRecord | None:
        def tx(conn: sqlite3.Connection) -> policy_sql.PolicyRecord | None:
            found = conn.execute(policy_sql.SERVICE_ID, ref.key).fetchone()
            if found is None:
                return None
            conn.execute(policy_sql.UPSERT, policy_sql.upsert_args(found[0], name, document, now))
            _insert_audit(conn, audit)
            return policy_sql.from_row(conn.execute(policy_sql.SELECT_ONE, policy_sql.one_args(ref, name)).fetchone())

        return await self._write(tx)

    async def get_rotation_policy(self, ref: ServiceRef, name: AccessName) -> policy_sql.PolicyRecord | None:
        row = self._read(lambda c: c.execute(policy_sql.SELECT_ONE, policy_sql.one_args(ref, name)).fetchone())
        return policy_sql.from_row(row) if row else None

    async def delete_rotation_policy(self, ref: ServiceRef, name: AccessName, audit: AuditEvent) -> bool:
        def tx(conn: sqlite3.Connection) -> bool:
            found = conn.execute(policy_sql.SERVICE_ID, ref.key).fetchone()
            if found is None or conn.execute(policy_sql.DELETE, (found[0], name.value)).rowcount == 0:
                return False
            _insert_audit(conn, audit)
            return True

        return await self._write(tx)

    async def list_rotation_policies(self) -> list[policy_sql.PolicyRecord]:
        return [policy_sql.from_row(r) for r in self._read(lambda c: c.execute(policy_sql.SELECT_ALL).fetchall())]

    async def set_policy_outcome(self, ref: ServiceRef, name: AccessName, at: _dt.datetime, outcome: str,
                                 blocked_since: _dt.datetime | None, audit: AuditEvent | None = None) -> bool:
        sql = policy_sql.SET_BLOCKED if blocked_since is not None else policy_sql.SET_OUTCOME
        args = policy_sql.outcome_args(ref, name, at, outcome, blocked_since)

        def tx(conn: sqlite3.Connection) -> bool:
            if conn.execute(sql, args).rowcount == 0:
                return False
            if audit is not None:
                _insert_audit(conn, audit)
            return True

        return await self._write(tx)

    # -- key usage (issue 14) --------------------------------------------------------------------

    async def add_key_usage(self, rows: Sequence[usage_sql.UsageRow]) -> None:
        if rows:
            args = usage_sql.upsert_args(rows)
            await self._write(lambda conn: conn.executemany(usage_sql.UPSERT, args), durable=False)

    async def get_key_usage(self, version_ids: Sequence[str]) -> dict[str, usage_sql.Usage]:
        if not version_ids:
            return {}
        sql = usage_sql.select_sql(len(version_ids))
        return usage_sql.from_rows(self._read(lambda c: c.execute(sql, tuple(version_ids)).fetchall()))

    # -- access configurations -------------------------------------------------------------------

    async def list_access(self, ref: ServiceRef) -> list[AccessConfig] | None:
        rows = self._read(lambda c: c.execute(_CONFIG_SELECT + " ORDER BY c.name", ref.key).fetchall())
        return [_config(r) for r in rows] or None

    async def get_access(self, ref: ServiceRef, name: AccessName) -> AccessConfig | None:
        """From the cache while the file is unchanged (see :meth:`_unchanged`): a read is a few
        microseconds instead of a query and a row's decoding, and exactly as fresh."""
        self._unchanged()

        async def load() -> AccessConfig | None:
            row = self._read(lambda c: c.execute(_CONFIG_SELECT + " AND c.name = ?",
                                                 (*ref.key, name.value)).fetchone())
            return _config(row) if row else None

        return await self._configs.get_or_load((*ref.key, name.value), load)

    async def get_secrets(self, ref: ServiceRef, name: AccessName) -> Secrets | None:
        row = self._read(lambda c: c.execute(_SECRETS_SELECT + " AND c.name = ?", (*ref.key, name.value)).fetchone())
        return self._secrets(row) if row else None

    def _unchanged(self) -> None:
        """Empty the caches unless the file is exactly as it was when they were filled.

        ``PRAGMA data_version`` moves whenever another connection (our writer, or another process
        sharing the file) commits, so an entry is used only while the file holds exactly what it
        was read from; a read that raced with a commit is stored under the older version and
        dropped at the next check.

        On the event loop, one check serves the rest of its turn. That is as fresh as checking for
        every request: a request's handler never runs in the turn its bytes were received in (the
        server starts it as a task, which runs in a later turn), and the check is forgotten by a
        callback queued ahead of every task created after it. So each request is answered from a
        check made after it arrived.
        """
        if self._checked:
            return
        version = self._read(_data_version)
        if version != self._data_version:
            self._cache.clear()
            self._configs.clear()
            self._principals.clear()
            self._data_version = version
        loop = self._loop
        if loop is not None and _running_loop() is loop:
            self._checked = True
            loop.call_soon(self._forget_check)

    def _forget_check(self) -> None:
        self._checked = False

    async def read_secrets(self, ref: ServiceRef, name: AccessName, audit: AuditEvent) -> Secrets | None:
        # On the write connection, whose page cache our own commits keep warm (the reader's is
        # emptied by every commit it did not make), and usually on the event loop: see _write.
        key: CacheKey = (*ref.key, name.value)

        def tx(conn: sqlite3.Connection) -> Secrets | None:
            found = self._current(conn, key, ref, name)
            if found is None:
                return None
            _insert_audit(conn, audit)
            return found.secrets

        return await self._write(tx, durable=False, one_statement=True)

    def _current(self, conn: sqlite3.Connection, key: CacheKey, ref: ServiceRef,
                 name: AccessName) -> _Current | None:
        """A configuration and its keys as stored, inside a write transaction (the caller holds
        ``_writing``): from :attr:`_written` (see _check_written), else read and kept there. Our
        own records of reads, which empty the reader's caches, leave this one warm."""
        found = self._written.get(key, float("inf"))
        if found is None:
            row = conn.execute(_SECRETS_SELECT + " AND c.name = ?", (*ref.key, name.value)).fetchone()
            if row is None:
                return None
            lifetime = self._opened.lifetime(row[16]) if row[16] is not None else None
            found = _Current(self._secrets(row), row[15], lifetime)
            self._written.put(self._written.ticket(key), found)
        return found

    async def get_secrets_cached(self, ref: ServiceRef, name: AccessName) -> Secrets | None:
        self._unchanged()
        return await self._cache.get_or_load((*ref.key, name.value), lambda: self.get_secrets(ref, name))

    def _secrets(self, row: tuple[Any, ...]) -> Secrets:
        return self._opened.secrets(self.cipher, row)

    def _insert_version(self, conn: sqlite3.Connection, service_id: str, version: KeyVersion) -> None:
        token = self.cipher.encrypt(
            version.secret.encode("utf-8"), _aad(service_id, version.access_name, version.slot, version.id)
        )
        conn.execute(
            "INSERT INTO key_versions (id, service_id, access_name, slot, secret, origin, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (version.id, service_id, version.access_name.value, version.slot.value, token, version.origin,
             ts(version.created_at)),
        )

    async def modify_access(
        self, ref: ServiceRef, name: AccessName, decide: Callable[[Secrets], AccessChange],
        *, idempotency: IdempotencyClaim | None = None,
    ) -> AccessConfig:
        key: CacheKey = (*ref.key, name.value)

        def tx(conn: sqlite3.Connection) -> AccessConfig:
            stored = self._current(conn, key, ref, name)
            if stored is None:
                raise NotFound(f"The service '{ref.name}' was not found.")
            service_id = stored.service_id
            if idempotency is not None:
                used = conn.execute(idem.SELECT, idem.key_args(idempotency)).fetchone()
                if used is not None and idem.is_live(used, idempotency):
                    exists = conn.execute(idem.VERSION_EXISTS, (used[2], service_id)).fetchone() is not None
                    raise idem.replay(used, version_exists=exists)
                if used is not None:
                    conn.execute(idem.DELETE, idem.key_args(idempotency))
            current = stored.secrets
            change = decide(current)
            version_ids = {KeySlot.PRIMARY: current.config.primary_version_id,
                           KeySlot.SECONDARY: current.config.secondary_version_id}
            for version in change.new_versions:
                self._insert_version(conn, service_id, version)
                conn.execute(
                    "UPDATE key_versions SET secret = NULL, superseded_at = ? WHERE id = ?",
                    (ts(version.created_at), version_ids[version.slot]),
                )
                version_ids[version.slot] = version.id
            conn.execute(
                "UPDATE access_configs SET principal_id = ?, enabled = ?, etag = ?, updated_at = ?, "
                "primary_version_id = ?, secondary_version_id = ? WHERE service_id = ? AND name = ?",
                (change.principal_id, int(change.enabled), change.etag, ts(change.updated_at),
                 version_ids[KeySlot.PRIMARY], version_ids[KeySlot.SECONDARY], service_id, name.value),
            )
            if change.audit is not None:
                _insert_audit(conn, change.audit)
            self._insert_events(conn, ref, change.events)
            if change.policy_outcome is not None:
                at, outcome = change.policy_outcome
                conn.execute(policy_sql.SET_OUTCOME, policy_sql.outcome_args(ref, name, at, outcome, None))
            if idempotency is not None:
                conn.execute(idem.INSERT, idem.insert_args(idempotency, current, change))
                conn.execute(idem.PURGE, idem.purge_args(idempotency))
            # What was just written, without reading it back: the last step, so a failure above
            # leaves the cache as it was (and a transaction that fails as a whole empties it).
            changed = applied(current, change)
            if stored.lifetime is not None:  # a policy's expiryTime: keys expire that long after their creation
                changed = dataclasses.replace(changed, expires_at=expiry(changed.config, stored.lifetime))
            self._written.put(self._written.ticket(key), _Current(changed, service_id, stored.lifetime))
            return changed.config

        return await self._write(tx, keeps_written=True)


@dataclass(frozen=True, slots=True)
class _Current:
    """A configuration's stored state, as the write connection knows it."""

    secrets: Secrets
    service_id: str
    #: How long its keys live under its rotation policy's expiryTime (None: forever).
    lifetime: _dt.timedelta | None = None


def _build_new(path: Path) -> None:
    """A new database is built whole beside its name, then linked into place. Its schema is
    written with no fsync at all, then made durable by one fsync of the file and one of the
    directory, where building it in place costs six (a rollback journal's four to switch the new
    file to WAL, then the log and the directory for the schema's commit). It appears complete or
    not at all: a crash leaves no database (the next start builds again) and, at most, the build's
    file, which a later build removes (:func:`_remove_stale_builds`).

    Servers starting together each build; the first link wins (``os.link`` never replaces a
    file), and the others drop their copy and open the winner's, as they would a file made by an
    older version in place (which an existing file, even an empty one, always is).
    """
    _remove_stale_builds(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{_BUILDING}")
    _create_private(tmp)
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            # Nothing here needs to survive a crash until the fsync below: no journal on disk, no syncs.
            conn.execute("PRAGMA journal_mode=MEMORY")
            conn.execute("PRAGMA synchronous=OFF")
            migrate(conn)
            conn.execute("PRAGMA journal_mode=WAL")  # recorded in the file: every later opening finds WAL
        finally:
            conn.close()
        _fsync(tmp)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    _fsync(path.parent)  # the link (and the build file's removal) survive a power loss


_BUILDING = ".building"


def _remove_stale_builds(path: Path) -> None:
    """Build files (:func:`_build_new`) of processes that no longer run: a crash left them."""
    prefix = f".{path.name}."
    with contextlib.suppress(OSError):
        for name in os.listdir(path.parent):
            if not (name.startswith(prefix) and name.endswith(_BUILDING)):
                continue
            pid = name[len(prefix):].split(".", 1)[0]
            if pid.isdigit() and int(pid) != os.getpid() and not _running(int(pid)):
                for leftover in (name, name + "-journal", name + "-wal", name + "-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        (path.parent / leftover).unlink()


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create_private(path: Path) -> None:
    """Create a new database file as 0600 whatever the umask: SQLite gives its -wal and -shm files the
    database file's mode, so all three stay private to the owner."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _data_version(conn: sqlite3.Connection) -> int:
    version: int = conn.execute("PRAGMA data_version").fetchone()[0]
    return version


def _insert_audit(conn: sqlite3.Connection, event: AuditEvent) -> None:
    conn.execute(AUDIT_INSERT, audit_args(event))


def check_master_key(conn: sqlite3.Connection, cipher: Cipher) -> None:
    """Refuse to open a store with the wrong master key (see :func:`~tenant_access.storage.sql.verify_master_key`)."""
    def execute(sql: str, args: Sequence[Any]) -> None:
        conn.execute(sql, args)

    verify_master_key(execute, lambda sql, args: conn.execute(sql, args).fetchone(), cipher)


#: SQLite's primary result codes for conditions of the storage that pass, after which a retry can
#: succeed: BUSY, LOCKED, NOMEM, READONLY, IOERR, FULL, CANTOPEN, PROTOCOL.
_TRANSIENT = frozenset({5, 6, 7, 8, 10, 13, 14, 15})


def _storage_error(exc: sqlite3.Error) -> TenantAccessError:
    """Busy, full-disk and I/O conditions are transient: 503, and the client may retry. Anything
    else (a constraint, a corrupt file) is ours: 500."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        transient = code & 0xFF in _TRANSIENT
    else:  # raised without a result code (by the sqlite3 module itself, or a test double)
        text = str(exc).lower()
        transient = isinstance(exc, sqlite3.OperationalError) and any(
            word in text for word in ("locked", "busy", "full", "disk i/o", "unable to open", "readonly"))
    if transient:
        return ServiceUnavailable("The store is temporarily unavailable; retry shortly.", retry_after=1)
    return InternalError("The store failed to complete the request.")


def pending(conn: sqlite3.Connection) -> list[int]:
    """Versions of the migrations this code has that the database has not applied."""
    done: set[int] = set()
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'").fetchone():
        done = {int(r[0]) for r in conn.execute("SELECT version FROM schema_migrations").fetchall()}
    return [m.version for m in migrations.load() if m.version not in done]


def migrate(conn: sqlite3.Connection) -> list[int]:
    """Apply pending migrations; answers the versions applied.

    A new database gets its whole schema in one transaction: one commit, so one fsync instead of
    one per migration (a first start makes a new database), and a crash leaves either no schema
    or all of it. On an existing database each pending migration is its own transaction, as it
    always was, so a long upgrade keeps what it finished."""
    conn.execute("BEGIN IMMEDIATE")  # decided under the lock: replicas may start together
    try:
        fresh = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                             "AND name = 'schema_migrations'").fetchone() is None
        everything = migrations.load()
        if fresh:
            conn.execute(_SCHEMA_MIGRATIONS)
            for migration in everything:
                _apply(conn, migration)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    if fresh:
        for migration in everything:
            log.info("applied migration %04d_%s", migration.version, migration.name)
        return [migration.version for migration in everything]
    applied = []
    for migration in everything:
        conn.execute("BEGIN IMMEDIATE")  # re-checked under the lock: replicas may start together
        try:
            if conn.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (migration.version,)).fetchone():
                conn.execute("COMMIT")
                continue
            _apply(conn, migration)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        log.info("applied migration %04d_%s", migration.version, migration.name)
        applied.append(migration.version)
    return applied


_SCHEMA_MIGRATIONS = "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"


def _apply(conn: sqlite3.Connection, migration: migrations.Migration) -> None:
    for statement in migration.statements:
        conn.execute(statement)
    conn.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                 (migration.version, ts(_dt.datetime.now(_dt.UTC))))
