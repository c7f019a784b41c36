"""Which master key each stored value is under, and whether the keyring held now opens it.

A rotation runs one before it changes any file (so it never starts on a store it cannot fully
read) and one after re-encrypting (so it only reports success when every value is under the new
key); ``master-key retire`` runs one to prove no value still needs the key it removes. Every value
is really decrypted and authenticated, not just its key id read: a key file with the right name and
the wrong content must not pass.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tenant_access.domain.models import AccessName, KeySlot
from tenant_access.storage.sql import CHECK_AAD, CHECK_PLAINTEXT, aad

#: One batch of a census: stored keys after ``?`` in id order.
CENSUS_SELECT = ("SELECT id, service_id, access_name, slot, secret FROM key_versions "
                 "WHERE secret IS NOT NULL AND id > ? ORDER BY id LIMIT 500")
CENSUS_COUNT = "SELECT count(*) FROM key_versions WHERE secret IS NOT NULL"
CHECK_SELECT = "SELECT value FROM store_meta WHERE name = 'master_key_check'"
MALFORMED = "malformed"


class _Opener(Protocol):
    def decrypt(self, token: str, aad: bytes) -> bytes: ...


@dataclass
class KeyCensus:
    """Stored values (key versions and the master key check value) by master key id."""

    values: Counter[str] = field(default_factory=Counter)
    #: Values that did not open, by the key id they name (``malformed`` when they name none).
    unreadable: Counter[str] = field(default_factory=Counter)
    check_key: str | None = None

    @property
    def total(self) -> int:
        return sum(self.values.values())

    def under_other_keys(self, current: str) -> int:
        """Values a rotation to ``current`` has still to move (readable or not)."""
        return self.total - self.values[current]

    def complete(self, current: str) -> bool:
        """Everything opens and everything is under ``current``: a rotation to it is finished."""
        return not self.unreadable and self.under_other_keys(current) == 0

    def add(self, opener: _Opener, token: str, bound: bytes, expected: bytes | None = None) -> None:
        from tenant_access.security.encryption import ciphertext_key_id
        from tenant_access.security.errors import DecryptionError

        try:
            key_id = ciphertext_key_id(token)
        except DecryptionError:
            key_id = MALFORMED
        self.values[key_id] += 1
        try:
            plaintext = opener.decrypt(token, bound)
        except Exception:
            self.unreadable[key_id] += 1
            return
        if expected is not None and plaintext != expected:
            self.unreadable[key_id] += 1

    def add_rows(self, opener: _Opener, rows: Sequence[Sequence[Any]]) -> None:
        """A batch of :data:`CENSUS_SELECT`."""
        for version_id, service_id, access_name, slot, token in rows:
            self.add(opener, token, aad(service_id, AccessName(access_name), KeySlot(slot), version_id))

    def add_check(self, opener: _Opener, token: str | None) -> None:
        if token is None:
            return
        self.add(opener, token, CHECK_AAD, CHECK_PLAINTEXT)
        from tenant_access.security.encryption import ciphertext_key_id
        from tenant_access.security.errors import DecryptionError

        try:
            self.check_key = ciphertext_key_id(token)
        except DecryptionError:
            self.check_key = MALFORMED
