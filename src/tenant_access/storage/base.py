"""The storage port: everything the use cases need from a database, and nothing more.

Writes take a *decide* function from the domain and run it inside the transaction that holds the
row, so a decision always sees the state it changes (no lost updates), and storage never makes
decisions of its own.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from tenant_access.domain.audit import AuditEvent, AuditQuery, AuditScan
from tenant_access.domain.events import Event
from tenant_access.domain.idempotency import IdempotencyClaim
from tenant_access.domain.models import AccessChange, AccessConfig, AccessName, Secrets, Service, ServiceRef
from tenant_access.domain.principals import ServicePrincipal
from tenant_access.domain.services import ServicePlan
from tenant_access.domain.subscriptions import Subscription
from tenant_access.storage.census import KeyCensus
from tenant_access.storage.outbox import Op, Outbox
from tenant_access.storage.policies import PolicyRecord
from tenant_access.storage.usage import Usage, UsageRow

T = TypeVar("T")


class Cipher(Protocol):
    """Encrypts key material at rest. ``aad`` binds a ciphertext to the record that holds it, so
    a ciphertext copied to another row fails to decrypt instead of yielding someone else's key."""

    def encrypt(self, plaintext: bytes, aad: bytes) -> str: ...

    def decrypt(self, token: str, aad: bytes) -> bytes: ...

    def needs_reencryption(self, token: str) -> bool:
        """Whether ``token`` is under a master key other than the current one."""
        ...


class Store(Protocol):
    #: Whether every change writes its events to the outbox (True, the default), or only those of
    #: services with a subscription while no ``events tail`` runs (the server, unless its emulator
    #: controls are on: ``docs/events.md``).
    all_events: bool

    def describe(self) -> str:
        """Where the data lives, for the start-up line (never a password)."""
        ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise if the database cannot answer."""

    async def put_service(self, ref: ServiceRef, decide: Callable[[Service | None], ServicePlan]) -> ServicePlan: ...

    async def get_service(self, ref: ServiceRef) -> Service | None: ...

    async def list_services(self, subscription_id: str, resource_group: str) -> list[Service]: ...

    async def list_all_services(self) -> list[Service]:
        """Every service of every subscription: the emulator's state dump, and Resource Manager's
        subscription listings (Azure mode)."""
        ...

    async def put_subscription(self, subscription: Subscription) -> None:
        """Declare a subscription, or rename a declared one (by id, case-insensitively)."""
        ...

    async def list_subscriptions(self) -> list[Subscription]:
        """The declared subscriptions (not those that merely hold services), by id."""
        ...

    async def reset(self) -> None:
        """Delete every service, key and audit record in one transaction (the emulator's reset).

        Service principals and the master key check stay: they are credentials and configuration,
        not emulated state, so tokens and keys held by a test rig keep working across a reset.
        """
        ...

    async def delete_service(self, ref: ServiceRef, audit: AuditEvent,
                             events: Sequence[Event] = ()) -> Service | None:
        """Delete with everything it holds; ``audit`` (and ``events``, to the outbox) written only
        if something was deleted."""
        ...

    @property
    def outbox(self) -> Outbox:
        """The event delivery side's operations (``storage/outbox.py``), for :meth:`run_outbox`."""
        ...

    async def run_outbox(self, op: Op[T], *, write: bool = False, durable: bool = False) -> T:
        """Run one outbox operation in a transaction of its own (committed if ``write``; flushed to
        disk before this returns only if ``durable`` too)."""
        ...

    async def record(self, event: AuditEvent, *, durable: bool = True) -> None:
        """Write one audit record (reads of secrets, refused requests), committed before this
        returns. ``durable=False`` skips the flush to disk: a process crash cannot lose the record,
        a power loss may lose the last ones."""

    async def list_audit(self, query: AuditQuery) -> list[AuditEvent]: ...

    async def add_audit_counts(self, counts: Sequence[tuple[str, int]]) -> None:
        """Add ``n`` to the count of record ``id`` for each ``(id, n)``, in one transaction, not
        flushed (the refusal summaries' periodic flush); a record that is gone is skipped."""

    async def scan_audit(self, scan: AuditScan) -> list[AuditEvent]:
        """One page of records of every service, oldest first (export, prune with export)."""
        ...

    async def count_audit(self, scan: AuditScan) -> int:
        """How many records the whole scan would yield (``after`` and ``limit`` ignored)."""
        ...

    async def delete_audit(self, ids: Sequence[str]) -> int:
        """Delete these records (at most a few hundred) in one transaction; answers how many went."""
        ...

    async def add_principal(self, principal: ServicePrincipal, audit: AuditEvent | None = None) -> None:
        """``audit``: the record of the change, written in the same transaction (as for every
        principal change below: written only if there was a principal to change)."""
        ...

    async def reencrypt(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Re-encrypt every stored key (and the check value) under the current master key, a batch
        per transaction so the server keeps answering; ``progress(done, total)``. Answers how many
        values were rewritten."""
        ...

    async def census(self, progress: Callable[[int, int], None] | None = None) -> KeyCensus:
        """Open every stored key and the check value with the current keyring, counting them by the
        master key they are under (reads only, in batches); ``progress(done, total)``."""
        ...

    async def get_principal(self, client_id: str) -> ServicePrincipal | None: ...

    async def get_principal_cached(self, client_id: str) -> ServicePrincipal | None:
        """``get_principal`` for checking tokens on every request, possibly from a cache that is
        dropped exactly as :meth:`get_secrets_cached`'s is (so a revocation is seen everywhere
        within a second)."""
        ...

    async def list_principals(self) -> list[ServicePrincipal]: ...

    async def set_principal_disabled(self, client_id: str, disabled_at: _dt.datetime | None,
                                     audit: AuditEvent | None = None) -> bool:
        """Disable (``disabled_at``) or enable (``None``) a principal; ``False`` if there is none."""
        ...

    async def replace_principal_secret(self, client_id: str, secret_hash: str,
                                       audit: AuditEvent | None = None) -> ServicePrincipal | None:
        """Store a new secret hash and move the generation on; ``None`` if there is no such principal."""
        ...

    async def delete_principal(self, client_id: str, audit: AuditEvent | None = None) -> bool: ...

    async def list_access(self, ref: ServiceRef) -> list[AccessConfig] | None:
        """None when the service does not exist (an empty list cannot happen: there are always two)."""

    async def get_access(self, ref: ServiceRef, name: AccessName) -> AccessConfig | None: ...

    async def get_secrets(self, ref: ServiceRef, name: AccessName) -> Secrets | None: ...

    async def read_secrets(self, ref: ServiceRef, name: AccessName, audit: AuditEvent) -> Secrets | None:
        """The keys, read in the transaction that records ``audit`` (committed, though not
        necessarily fsynced, before this returns): no record, no keys. ``None``, and no record,
        when the configuration does not exist."""
        ...

    async def get_secrets_cached(self, ref: ServiceRef, name: AccessName) -> Secrets | None:
        """``get_secrets`` for checking credentials (shared access signatures), possibly from a cache.

        A cached answer is dropped as soon as the store learns of a change: at once on SQLite (even a
        change by another process), within milliseconds on PostgreSQL (``LISTEN/NOTIFY``), and never
        used for more than a second while the PostgreSQL listener is down. ``listSecrets`` never uses it.
        """
        ...

    async def add_key_usage(self, rows: Sequence[UsageRow]) -> None:
        """Add one batch of key uses (a replica's flush), in one transaction, not flushed to disk:
        counts add up and last-used times only move forward, whatever other replicas write. A row
        of a key version that no longer exists is skipped."""
        ...

    async def get_key_usage(self, version_ids: Sequence[str]) -> dict[str, Usage]:
        """The stored usage of these key versions (those never used are absent)."""
        ...

    async def put_rotation_policy(self, ref: ServiceRef, name: AccessName, document: dict[str, Any],
                                  now: _dt.datetime, audit: AuditEvent) -> PolicyRecord | None:
        """Create or replace a policy (clearing its blocked state) with its audit record, in one
        transaction; ``None`` when the service does not exist."""
        ...

    async def get_rotation_policy(self, ref: ServiceRef, name: AccessName) -> PolicyRecord | None: ...

    async def delete_rotation_policy(self, ref: ServiceRef, name: AccessName, audit: AuditEvent) -> bool:
        """``audit`` is written only if there was a policy to delete."""
        ...

    async def list_rotation_policies(self) -> list[PolicyRecord]:
        """Every policy of every service (the scheduler's pass, key expiry, the emulator's state)."""
        ...

    async def set_policy_outcome(self, ref: ServiceRef, name: AccessName, at: _dt.datetime, outcome: str,
                                 blocked_since: _dt.datetime | None, audit: AuditEvent | None = None) -> bool:
        """Record what the scheduler did. With ``blocked_since``, only a policy that was not blocked
        yet is updated, and ``audit`` is written with it: one record per blocked episode across
        replicas. Answers whether the row was updated."""
        ...

    async def modify_access(
        self, ref: ServiceRef, name: AccessName, decide: Callable[[Secrets], AccessChange],
        *, idempotency: IdempotencyClaim | None = None,
    ) -> AccessConfig:
        """Run ``decide`` on the locked current state and persist its change atomically.

        Raises :class:`~tenant_access.domain.errors.NotFound` when the service does not exist, and
        whatever ``decide`` raises (nothing is written then).

        With ``idempotency``, the claim's key is looked up first, in the same transaction: if it was
        used before and has not expired, :class:`~tenant_access.domain.idempotency.IdempotentReplay`
        is raised with the stored outcome and nothing is written; otherwise the outcome of this change
        (which must create exactly one key version) is stored with it, in the same transaction, and
        expired keys are purged. ``storage/idempotency.py`` has the SQL.
        """
        ...


def open_store(
    database_url: str | None, data_dir: Path, cipher: Cipher, *, migrate: bool = True, pool_size: int = 10,
) -> Store:
    """Pick the adapter for a URL; the embedded SQLite file in ``data_dir`` when there is none.

    ``migrate``: apply pending schema migrations when the store opens; when false, opening fails on
    a schema that lacks any (``tenant-access db upgrade`` applies them). ``pool_size``: at most this
    many database connections (PostgreSQL), besides the one that listens for changes.
    """
    if database_url is None or database_url.startswith("sqlite:"):
        from tenant_access.storage.sqlite import SqliteStore

        path = data_dir / "tenant-access.db"
        if database_url and database_url.startswith("sqlite:///"):
            path = Path(database_url.removeprefix("sqlite:///"))
        return SqliteStore(path, cipher, migrate=migrate)
    if database_url.startswith(("postgresql://", "postgres://")):
        try:
            from tenant_access.storage.postgres import PostgresStore, unsafe_row_locks_disabled
        except ImportError as exc:  # psycopg is a dependency; a broken install should say what is missing
            raise ValueError(f"PostgreSQL needs the psycopg package: {exc}") from None
        return PostgresStore(database_url, cipher, migrate=migrate, pool_size=pool_size,
                             row_locks=not unsafe_row_locks_disabled())
    raise ValueError(f"unsupported database URL scheme: {database_url.split(':', 1)[0]}")
