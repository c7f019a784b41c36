"""Assembling the parts a running server needs from its settings, in one place."""

from __future__ import annotations

import base64
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tenant_access.config import Settings
from tenant_access.security.errors import UnknownMasterKey
from tenant_access.storage.base import Store, open_store

if TYPE_CHECKING:
    from tenant_access.security.encryption import Keyring

PREVIOUS_KEY_FILE = "master.key.previous"
RELOAD_INTERVAL = 1.0


class FileKeyring:
    """The master keyring, re-read when its files change, so a running server follows
    ``tenant-access rotate-master-key`` without a restart.

    The current key encrypts; the previous one (``master.key.previous``, kept by the rotation)
    only decrypts. A ciphertext under a key this process does not hold yet triggers an immediate
    reload, and the key file's modification time is checked at most once a second otherwise.
    With ``TENANT_ACCESS_MASTER_KEY`` set, the keys come from the environment and never reload.
    """

    def __init__(self, data_dir: Path, configured: str | None, previous: str | None = None) -> None:
        self.data_dir = data_dir
        self.configured = configured
        self.previous = previous
        self._lock = threading.Lock()
        self._stamp: tuple[float, float] | None = None
        self._checked = 0.0
        self._keyring = self._load()

    def _files(self) -> tuple[Path, Path]:
        from tenant_access.security.encryption import MASTER_KEY_FILE

        return self.data_dir / MASTER_KEY_FILE, self.data_dir / PREVIOUS_KEY_FILE

    def _mtimes(self) -> tuple[float, float]:
        return tuple(p.stat().st_mtime if p.exists() else 0.0 for p in self._files())  # type: ignore[return-value]

    def _load(self) -> Keyring:
        from tenant_access.security.encryption import Keyring, MasterKey, load_master_key

        current = load_master_key(self.data_dir, self.configured)
        previous = []
        if self.configured:
            if self.previous:
                previous.append(MasterKey.from_base64(self.previous))
        else:
            self._stamp = self._mtimes()
            old = self._files()[1]
            if old.exists():
                previous.append(MasterKey.from_base64(old.read_text().strip()))
        return Keyring(current, previous)

    def _maybe_reload(self, force: bool = False) -> None:
        if self.configured:
            return
        now = time.monotonic()
        if not force and now - self._checked < RELOAD_INTERVAL:
            return
        with self._lock:
            self._checked = now
            if force or self._mtimes() != self._stamp:
                self._keyring = self._load()

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


def open_store_for(settings: Settings) -> Store:
    """The configured store, encrypting under the configured master key.

    There is no plaintext fallback: a missing key file is created (first start), a wrong key makes
    the store refuse to open.
    """
    keyring = FileKeyring(settings.data_dir, settings.master_key, settings.previous_master_key)
    return open_store(settings.database_url, settings.data_dir, keyring, migrate=settings.migrate,
                      pool_size=settings.database_pool_size)


def write_key_file(path: Path, key: bytes) -> None:
    """Replace a key file atomically with a 0600 file: it never exists half-written or world-readable."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, base64.b64encode(key) + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def begin_master_key_rotation(data_dir: Path) -> tuple[str, str]:
    """Make a new current master key; the old one becomes ``master.key.previous`` (decrypt-only).

    Answers the (old, new) key ids. The previous file is written first, so at every instant both
    keys are on disk and every stored value stays readable.
    """
    import secrets

    from tenant_access.security.encryption import MASTER_KEY_FILE, MasterKey, load_master_key

    old = load_master_key(data_dir, None, create=False)
    new = MasterKey(secrets.token_bytes(32))
    write_key_file(data_dir / PREVIOUS_KEY_FILE, base64.b64decode(old.to_base64().reveal()))
    write_key_file(data_dir / MASTER_KEY_FILE, base64.b64decode(new.to_base64().reveal()))
    return old.id, new.id
