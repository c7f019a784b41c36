"""Assembling the parts a running server needs from its settings, in one place."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tenant_access.config import Settings
from tenant_access.security.errors import MasterKeyError, UnknownMasterKey
from tenant_access.storage.base import Store, open_store

if TYPE_CHECKING:
    from tenant_access.security.encryption import Keyring, MasterKey

log = logging.getLogger("tenant_access.security")

RELOAD_INTERVAL = 1.0


def environment_keys(configured: str, previous: str | None) -> tuple[MasterKey, list[MasterKey]]:
    """``TENANT_ACCESS_MASTER_KEY`` and the comma-separated ``TENANT_ACCESS_PREVIOUS_MASTER_KEY``:
    several previous keys, so a second rotation may start before the first one's key is dropped."""
    from tenant_access.security.encryption import MasterKey

    current = MasterKey.from_base64(configured)
    older = [MasterKey.from_base64(part) for part in (previous or "").split(",") if part.strip()]
    return current, older


class FileKeyring:
    """The master keyring, re-read when its files change, so a running server follows
    ``tenant-access master-key rotate`` (and ``retire``) without a restart.

    The current key encrypts; every other key in ``<data-dir>/master-keys/`` only decrypts (see
    :mod:`tenant_access.security.master_keys`). A ciphertext under a key this process does not hold
    yet triggers an immediate reload, and the keyring directory is checked at most once a second
    otherwise. With ``TENANT_ACCESS_MASTER_KEY`` set, the keys come from the environment (the
    current one and any previous ones) and never reload; the files are then not used at all.
    """

    def __init__(self, data_dir: Path, configured: str | None, previous: str | None = None, *,
                 create: bool = True) -> None:
        from tenant_access.security.master_keys import MasterKeyDir

        self.data_dir = data_dir
        self.configured = configured if configured and configured.strip() else None
        self.previous = previous
        self.files = MasterKeyDir(data_dir)
        self._create = create
        self._lock = threading.Lock()
        self._stamp: tuple[int, ...] | None = None
        self._checked = 0.0
        self._keyring = self._load()

    @property
    def from_environment(self) -> bool:
        return self.configured is not None

    def _load(self) -> Keyring:
        from tenant_access.security.encryption import Keyring

        if self.configured is not None:
            current, older = environment_keys(self.configured, self.previous)
            return Keyring(current, older)
        stamp = self.files.stamp()
        keyring = self.files.load(create=self._create)
        self._stamp = stamp if stamp == self.files.stamp() else None  # changed while loading: look again
        return keyring

    def _maybe_reload(self, force: bool = False) -> None:
        if self.configured is not None:
            return
        now = time.monotonic()
        if not force and now - self._checked < RELOAD_INTERVAL:
            return
        with self._lock:
            self._checked = now
            if force or self.files.stamp() != self._stamp:
                try:
                    self._keyring = self._load()
                except MasterKeyError as exc:
                    # Keep serving with the keys already held: a half-edited keyring must not stop a server.
                    log.error("the master keyring could not be re-read, keeping the keys held: %s", exc)

    def reload(self) -> None:
        """Re-read the files now (after this process changed them)."""
        self._maybe_reload(force=True)

    def encrypt(self, plaintext: bytes, aad: bytes) -> str:
        self._maybe_reload()
        return self._keyring.encrypt(plaintext, aad)

    def decrypt(self, token: str, aad: bytes) -> bytes:
        try:
            return self._keyring.decrypt(token, aad)
        except UnknownMasterKey:
            self._maybe_reload(force=True)
            return self._keyring.decrypt(token, aad)

    def needs_reencryption(self, token: str) -> bool:
        return self._keyring.needs_reencryption(token)

    @property
    def current_id(self) -> str:
        return self._keyring.current.id

    @property
    def key_ids(self) -> tuple[str, ...]:
        return self._keyring.key_ids


def open_store_for(settings: Settings, keyring: FileKeyring | None = None) -> Store:
    """The configured store, encrypting under the configured master keyring.

    There is no plaintext fallback: a missing keyring is created (first start), a wrong key makes
    the store refuse to open. The data directory (and a SQLite file kept elsewhere) is made private
    to this user first: it holds the audit trail, client-secret hashes and the keys.
    """
    from tenant_access.file_modes import make_private

    make_private(settings.data_dir, database_files(settings))
    if keyring is None:
        keyring = FileKeyring(settings.data_dir, settings.master_key, settings.previous_master_key)
    return open_store(settings.database_url, settings.data_dir, keyring, migrate=settings.migrate,
                      pool_size=settings.database_pool_size)


def database_files(settings: Settings) -> list[Path]:
    """The SQLite file (and its -wal and -shm) when it is kept outside the data directory."""
    url = settings.database_url
    if not url or not url.startswith("sqlite:///"):
        return []
    path = Path(url.removeprefix("sqlite:///"))
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
