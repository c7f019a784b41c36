"""The SQL every adapter shares: column lists, row mapping, the audit query, key binding, and the
master key check.

Statements here use ``?`` placeholders (SQLite's); :func:`pyformat` turns them into psycopg's
``%s``. Keeping one copy is what keeps the SQLite and PostgreSQL adapters answering alike.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from tenant_access.domain.audit import READ_OPERATION, AuditEvent, AuditKind, AuditQuery, AuditScan
from tenant_access.domain.errors import InternalError
from tenant_access.domain.keys import id_floor
from tenant_access.domain.models import AccessConfig, AccessName, KeySlot, Secrets, Service, ServiceRef
from tenant_access.domain.principals import ServicePrincipal
from tenant_access.memo import Memo

log = logging.getLogger("tenant_access.storage")


class _Cipher(Protocol):
    def encrypt(self, plaintext: bytes, aad: bytes) -> str: ...

    def decrypt(self, token: str, aad: bytes) -> bytes: ...

    def needs_reencryption(self, token: str) -> bool: ...


_last_ts: tuple[_dt.datetime | None, str] = (None, "")


def ts(value: _dt.datetime) -> str:
    """Timestamps are stored as fixed-width UTC text, so they sort and compare as strings.

    A rotation stores its one "now" five or six times (the new key, the old one's end, the
    configuration, the audit record, the event): the last value is remembered by identity, and
    a UTC value is formatted without the two conversions (together, most of a rotation's time
    in date formatting)."""
    global _last_ts  # noqa: PLW0603 - a one-entry memo; a race can only recompute the same text
    last, text = _last_ts
    if value is last:
        return text
    if value.tzinfo is _dt.UTC:
        text = value.isoformat(timespec="microseconds")[:-6] + "Z"
    else:
        text = value.astimezone(_dt.UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    _last_ts = (value, text)
    return text


def parse_ts(value: str) -> _dt.datetime:
    return _dt.datetime.fromisoformat(value)


def pyformat(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s`` (the shared statements contain no other ``?`` or ``%``)."""
    assert "%" not in sql, "a literal % would need escaping for psycopg"
    return sql.replace("?", "%s")


CONFIG_SELECT = """
SELECT s.subscription_id, s.resource_group, s.name, c.name, c.principal_id, c.enabled, c.etag,
       c.created_at, c.updated_at, p.id, p.created_at, q.id, q.created_at, p.secret, q.secret, s.id
FROM services s
JOIN access_configs c ON c.service_id = s.id
JOIN key_versions p ON p.id = c.primary_version_id
JOIN key_versions q ON q.id = c.secondary_version_id
WHERE s.subscription_key = ? AND s.resource_group_key = ? AND s.name_key = ?
"""

#: :data:`CONFIG_SELECT` plus the rotation policy's document (NULL when there is none), for the
#: reads that hand keys out (listSecrets, the key caches): the keys' expiry is read with the keys,
#: so whatever holds them holds their expiry too, and follows a policy change exactly as it
#: follows a rotation. Changes read without it (their decisions do not depend on expiry).
SECRETS_SELECT = """
SELECT s.subscription_id, s.resource_group, s.name, c.name, c.principal_id, c.enabled, c.etag,
       c.created_at, c.updated_at, p.id, p.created_at, q.id, q.created_at, p.secret, q.secret, s.id, r.document
FROM services s
JOIN access_configs c ON c.service_id = s.id
JOIN key_versions p ON p.id = c.primary_version_id
JOIN key_versions q ON q.id = c.secondary_version_id
LEFT JOIN rotation_policies r ON r.service_id = s.id AND r.access_name = c.name
WHERE s.subscription_key = ? AND s.resource_group_key = ? AND s.name_key = ?
"""

SERVICE_COLUMNS = (
    "subscription_id, resource_group, name, location, sku_name, sku_capacity, publisher_email, "
    "publisher_name, tags, etag, created_at, updated_at"
)

AUDIT_COLUMNS = (
    "id, at, principal, role, scope, operation, target, outcome, status, request_id, client, "
    "subscription_key, resource_group_key, service_key, old_version_id, new_version_id, detail, occurrences"
)

AUDIT_INSERT = (f"INSERT INTO audit_events ({AUDIT_COLUMNS}) VALUES "  # noqa: S608 - constant column list
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
#: Adds to a summary's count: flushes of the refusal summaries carry what arrived since the last one.
AUDIT_ADD_COUNT = "UPDATE audit_events SET occurrences = occurrences + ? WHERE id = ?"

#: The kinds of record (see domain/audit.py), as conditions on constant columns; ``kind_of`` is their twin.
_KIND_SQL: dict[str, str] = {
    "refusals": "outcome <> 'success'",
    "reads": f"(outcome = 'success' AND operation = '{READ_OPERATION}')",
    "changes": f"(outcome = 'success' AND operation <> '{READ_OPERATION}')",
}


def kind_sql(kinds: Sequence[AuditKind]) -> str:
    """One condition matching records of any of ``kinds`` (all three: always true)."""
    if set(kinds) >= set(_KIND_SQL):
        return "1 = 1"
    return "(" + " OR ".join(_KIND_SQL[k] for k in kinds) + ")" if kinds else "1 = 0"


def service_from_row(row: Sequence[Any]) -> Service:
    return Service(
        ServiceRef(row[0], row[1], row[2]), row[3], row[4], int(row[5]), row[6], row[7], json.loads(row[8]),
        row[9], parse_ts(row[10]), parse_ts(row[11]),
    )


def config_from_row(row: Sequence[Any]) -> AccessConfig:
    return AccessConfig(
        ServiceRef(row[0], row[1], row[2]), AccessName(row[3]), row[4], bool(row[5]), row[6],
        parse_ts(row[7]), parse_ts(row[8]), row[9], parse_ts(row[10]), row[11], parse_ts(row[12]),
    )


def aad(service_id: str, name: AccessName, slot: KeySlot, version_id: str) -> bytes:
    """What a key's ciphertext is bound to: its version, service, configuration and slot."""
    # The names are StrEnums: formatted, they are their values.
    return f"tenant-access/key-version/{version_id}/{service_id}/{name}/{slot}".encode()


def expiry(config: AccessConfig, lifetime: _dt.timedelta | None) -> tuple[_dt.datetime | None, _dt.datetime | None]:
    """When each key of ``config`` expires under a policy whose keys live ``lifetime`` (None: never)."""
    if lifetime is None:
        return (None, None)
    return (config.primary_created_at + lifetime, config.secondary_created_at + lifetime)


class OpenedKeys:
    """Keys already decrypted, by their exact ciphertext and associated data.

    Decryption is a pure function of those two and the master key, so answering a repeated
    ciphertext from memory gives exactly what decrypting it again would; anything altered, copied
    from another record or re-encrypted is a different entry and is decrypted (and verified) anew.
    It holds nothing the process could not already decrypt at will with the master key it holds.
    Bounded; emptied when full.
    """

    def __init__(self, max_entries: int = 512) -> None:
        self._keys: Memo[tuple[str, bytes], str] = Memo(max_entries)
        #: Key lifetimes by policy document text (a document is parsed once, not once per load).
        self._lifetimes: Memo[str, tuple[_dt.timedelta | None]] = Memo(max_entries)

    def secrets(self, cipher: _Cipher, row: Sequence[Any]) -> Secrets:
        """A configuration row of :data:`SECRETS_SELECT` with its two keys opened, and their expiry
        under its rotation policy's expiryTime (a row of :data:`CONFIG_SELECT`: keys without one)."""
        config = config_from_row(row)
        service_id = row[15]
        lifetime = self.lifetime(row[16]) if len(row) > 16 and row[16] is not None else None
        return Secrets(
            config,
            self.open(cipher, row[13], service_id, config.name, KeySlot.PRIMARY, config.primary_version_id),
            self.open(cipher, row[14], service_id, config.name, KeySlot.SECONDARY, config.secondary_version_id),
            expiry(config, lifetime),
        )

    def lifetime(self, document: str) -> _dt.timedelta | None:
        """How long keys live under the policy ``document`` (its expiryTime); None: forever."""
        known = self._lifetimes.get(document)
        if known is None:
            from tenant_access.domain.policy import load

            known = self._lifetimes.remember(document, (load(json.loads(document)).expiry,))
        return known[0]

    def open(self, cipher: _Cipher, token: str | None, service_id: str, name: AccessName, slot: KeySlot,
             version_id: str) -> str:
        if token is None:
            raise InternalError("A current key has no stored material.")
        bound = aad(service_id, name, slot, version_id)
        known = self._keys.get((token, bound))
        if known is not None:
            return known
        return self._keys.remember((token, bound), open_secret(cipher, token, service_id, name, slot, version_id))


def open_secret(cipher: _Cipher, token: str | None, service_id: str, name: AccessName, slot: KeySlot,
                version_id: str) -> str:
    if token is None:
        raise InternalError("A current key has no stored material.")
    try:
        return cipher.decrypt(token, aad(service_id, name, slot, version_id)).decode("utf-8")
    except Exception:
        log.error("key material of version %s failed to decrypt: refusing to use it", version_id)
        raise InternalError("Stored key material failed its integrity check.") from None


def audit_args(event: AuditEvent) -> tuple[Any, ...]:
    """The parameters of :data:`AUDIT_INSERT` for one record."""
    keys = event.service.key if event.service else (None, None, None)
    return (event.id, ts(event.at), event.principal, event.role, event.scope, event.operation, event.target,
            event.outcome, event.status, event.request_id, event.client, *keys, event.old_version_id,
            event.new_version_id, event.detail, event.count)


def audit_from_row(row: Sequence[Any], service: ServiceRef | None = None) -> AuditEvent:
    """A record; without ``service``, the one its row names, in the stored (lower-cased) spelling
    of its keys: the export's, which has no route to take the original spelling from."""
    if service is None and row[13] is not None:
        service = ServiceRef(row[11], row[12], row[13])
    return AuditEvent(
        id=row[0], at=parse_ts(row[1]), principal=row[2], role=row[3], scope=row[4], operation=row[5],
        target=row[6], outcome=row[7], status=int(row[8]), request_id=row[9], client=row[10], service=service,
        old_version_id=row[14], new_version_id=row[15], detail=row[16], count=int(row[17]),
    )


def audit_sql(query: AuditQuery) -> tuple[str, list[Any]]:
    """The one audit query, shared by every adapter (placeholders are ``?``)."""
    sql = (f"SELECT {AUDIT_COLUMNS} FROM audit_events "  # noqa: S608 - constant column list
           "WHERE subscription_key = ? AND resource_group_key = ? AND service_key = ?")
    args: list[Any] = list(query.service.key)
    if query.operation:
        sql += " AND operation = ?"
        args.append(query.operation)
    if query.since:
        sql += " AND at >= ?"
        args.append(ts(query.since))
    if query.until:
        sql += " AND at < ?"
        args.append(ts(query.until))
    if query.kind:
        sql += " AND " + kind_sql((query.kind,))
    sql += " ORDER BY at, id LIMIT ? OFFSET ?"
    args += [query.top, query.skip]
    return sql, args


#: The primary key range of each band of ids (see ``AuditScan.band``). Time-ordered ids begin with
#: their millisecond: from "018c" (2024) to "02" (2039). Random ids (builds before 2026-11-27) fall
#: outside it but for about 1 in 550, which sort among time-ordered ones and are found there when
#: their id falls in the range asked for.
ID_BANDS: dict[str, tuple[str | None, str | None]] = {
    "time": ("018c", "02"), "below": (None, "018c"), "above": ("02", None),
}


def _scan_where(scan: AuditScan) -> tuple[str, list[Any]]:
    """The conditions of a scan: always ranges of the primary key (so the index answers them,
    whatever the size of the table), and the time bounds on ``at`` itself (which is exact)."""
    where = [kind_sql(scan.kinds)]
    args: list[Any] = []
    low, high = ID_BANDS[scan.band]
    if scan.band == "time":
        if scan.since is not None:
            low = max(low or "", id_floor(scan.since))
        if scan.until is not None:
            # Ids of the millisecond of ``until`` may still be below it: bound the key by the next one.
            high = min(high or "~", id_floor(scan.until + _dt.timedelta(milliseconds=1)))
    if low is not None:
        where.append("id >= ?")
        args.append(low)
    if high is not None:
        where.append("id < ?")
        args.append(high)
    if scan.since is not None:
        where.append("at >= ?")
        args.append(ts(scan.since))
    if scan.until is not None:
        where.append("at < ?")
        args.append(ts(scan.until))
    if scan.after is not None:
        where.append("id > ?")
        args.append(scan.after)
    return " AND ".join(where), args


def scan_sql(scan: AuditScan) -> tuple[str, list[Any]]:
    """One page of an export (or of what a prune removes), in id order, i.e. oldest first."""
    where, args = _scan_where(scan)
    return (f"SELECT {AUDIT_COLUMNS} FROM audit_events WHERE {where} "  # noqa: S608 - constant fragments
            "ORDER BY id LIMIT ?", [*args, scan.limit])


def count_sql(scan: AuditScan) -> tuple[str, list[Any]]:
    """How many records a scan would yield (``limit`` and ``after`` aside: a dry run's count)."""
    where, args = _scan_where(AuditScan(scan.kinds, scan.since, scan.until, band=scan.band))
    return f"SELECT COUNT(*) FROM audit_events WHERE {where}", args  # noqa: S608 - constant fragments


def delete_sql(ids: Sequence[str]) -> tuple[str, list[Any]]:
    """Delete the records of ``ids`` (exported first by ``audit prune --export``)."""
    return f"DELETE FROM audit_events WHERE id IN ({', '.join('?' for _ in ids)})", list(ids)  # noqa: S608


CHECK_PLAINTEXT = b"tenant-access master key check"
CHECK_AAD = b"tenant-access/store-meta/master-key-check"

#: One batch of a master-key rotation: the stored keys after ``?`` in id order (PostgreSQL adds FOR UPDATE).
REENCRYPT_SELECT = ("SELECT id, service_id, access_name, slot, secret FROM key_versions "
                    "WHERE secret IS NOT NULL AND id > ? ORDER BY id LIMIT 200")
REENCRYPT_UPDATE = "UPDATE key_versions SET secret = ? WHERE id = ?"
CHECK_UPDATE = "UPDATE store_meta SET value = ? WHERE name = 'master_key_check'"


def reencrypted(cipher: _Cipher, rows: Sequence[Sequence[Any]]) -> list[tuple[str, str]]:
    """``(new ciphertext, version id)`` for each row of a :data:`REENCRYPT_SELECT` batch that is
    still under an older master key; the caller writes them with :data:`REENCRYPT_UPDATE`."""
    out = []
    for version_id, service_id, access_name, slot, token in rows:
        if cipher.needs_reencryption(token):
            bound = aad(service_id, AccessName(access_name), KeySlot(slot), version_id)
            out.append((cipher.encrypt(cipher.decrypt(token, bound), bound), version_id))
    return out

#: Runs one ``?``-style statement; answers its first row (None when there is none or it has no result).
FetchOne = Callable[[str, Sequence[Any]], "Sequence[Any] | None"]


def verify_master_key(execute: Callable[[str, Sequence[Any]], None], fetchone: FetchOne, cipher: _Cipher) -> None:
    """Refuse to open a store with the wrong master key, before any request can be answered.

    The first start stores a known value encrypted under the key; every later start must decrypt it.
    """
    select = "SELECT value FROM store_meta WHERE name = 'master_key_check'"
    row = fetchone(select, ())
    if row is None:
        execute(
            "INSERT INTO store_meta (name, value) VALUES ('master_key_check', ?) ON CONFLICT (name) DO NOTHING",
            (cipher.encrypt(CHECK_PLAINTEXT, CHECK_AAD),),
        )
        row = fetchone(select, ())
    try:
        ok = row is not None and cipher.decrypt(row[0], CHECK_AAD) == CHECK_PLAINTEXT
    except Exception:
        ok = False
    if not ok:
        raise WrongMasterKey(
            "the master key does not open this store: set TENANT_ACCESS_MASTER_KEY (or restore "
            "<data-dir>/master-keys/) to hold the key the store was written with"
        )


class WrongMasterKey(RuntimeError):
    """Raised at start-up; the server exits rather than run without its keys."""


PRINCIPAL_SELECT = ("SELECT client_id, role, scope, description, created_at, secret_hash, disabled_at, generation "
                    "FROM service_principals")
PRINCIPAL_DISABLE = "UPDATE service_principals SET disabled_at = ? WHERE client_id = ?"
PRINCIPAL_REHASH = ("UPDATE service_principals SET secret_hash = ?, generation = generation + 1 "
                        "WHERE client_id = ?")
PRINCIPAL_DELETE = "DELETE FROM service_principals WHERE client_id = ?"


def principal_from_row(row: Sequence[Any]) -> ServicePrincipal:
    return ServicePrincipal(row[0], row[1], row[2], row[3], parse_ts(row[4]), row[5],
                            parse_ts(row[6]) if row[6] else None, int(row[7]))


def principal_key(client_id: str) -> tuple[str, str, str, str]:
    """A service principal's key in the stores' caches (whose keys are 4-tuples), apart from any
    access configuration's."""
    return ("", "", "", client_id)
