"""The master keyring on disk: every master key ever used, until an operator retires it.

Layout, inside the data directory::

    master-keys/            0700
      1a2b3c4d.key          0600, base64 of one 32-byte key; the name is the key's id
      5e6f7a8b.key
      current               0600, the id of the key that encrypts (the others only decrypt)
      pending.key           0600, the new key, only while a rotation is unfinished

Why a directory of keys named by id rather than "current" and "previous" files: every ciphertext
names the key it is under, so a key file is needed exactly as long as some stored value names it,
whatever happened in between (an interrupted rotation, a second rotation before the first one
finished). Nothing here ever overwrites or deletes a key file except :meth:`MasterKeyDir.retire`,
which the caller runs only after proving no stored value uses the key.

Every change is crash-safe: a file is written whole (temporary file, fsync, rename, fsync of the
directory), and a key file is written *before* the pointer names it, so at every instant the
pointer's key is on disk. A new key is first written as ``pending.key`` (which readers ignore) and
that file stays until the rotation has moved and verified every stored value, so a rotation
interrupted anywhere finds the same key again and finishes with it.

The layout of earlier versions (``master.key`` and ``master.key.previous`` directly in the data
directory) is adopted on first use: both keys are copied in (durably), the pointer names the old
``master.key``, and only then are the old files removed. Each step can be repeated, so a crash
anywhere in it loses nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from tenant_access.security.encryption import KEY_BYTES, Keyring, MasterKey
from tenant_access.security.errors import MasterKeyError
from tenant_access.security.keyfiles import (
    DIR_MODE,
    create_exclusively,
    read_key_file,
    remove_durably,
    replace_atomically,
)

log = logging.getLogger("tenant_access.security")

KEYRING_DIR = "master-keys"
CURRENT_FILE = "current"
PENDING_FILE = "pending.key"
LOCK_FILE = ".lock"
KEY_SUFFIX = ".key"
LEGACY_CURRENT = "master.key"
LEGACY_PREVIOUS = "master.key.previous"
_ID_CHARS = frozenset("0123456789abcdef")


class MasterKeyDir:
    """The keyring files of one data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / KEYRING_DIR

    def key_path(self, key_id: str) -> Path:
        return self.path / f"{key_id}{KEY_SUFFIX}"

    # -- reading ---------------------------------------------------------------------------------

    def load(self, *, create: bool = True) -> Keyring:
        """The keyring on disk (adopting the old layout first); with ``create``, a new one with one
        random key when the data directory has none. Raises :class:`MasterKeyError`."""
        self.adopt_legacy()
        current = self.current_id()
        if current is None:
            if not create:
                raise MasterKeyError(f"{self.path} holds no master key (start the server once to create one)")
            self._create_first()
            current = self.current_id()
            if current is None:  # pragma: no cover - the pointer was just created
                raise MasterKeyError(f"{self.path / CURRENT_FILE} could not be created")
        # Pointer first, then the keys: a key file always exists before a pointer names it.
        keys = self.keys()
        if current not in keys:
            raise MasterKeyError(f"{self.path / CURRENT_FILE} names master key {current}, "
                                 f"but {self.key_path(current)} does not exist")
        return Keyring(keys[current], [key for key_id, key in keys.items() if key_id != current])

    def current_id(self) -> str | None:
        """The id in the pointer file, or None when there is no pointer yet."""
        try:
            text = (self.path / CURRENT_FILE).read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise MasterKeyError(f"{self.path / CURRENT_FILE} cannot be read: {exc}") from None
        if not _is_key_id(text):
            raise MasterKeyError(f"{self.path / CURRENT_FILE} does not hold a master key id")
        return text

    def key_ids(self) -> list[str]:
        """The ids of the key files present, sorted (temporary files of a write in progress are skipped)."""
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return []
        return sorted(name[: -len(KEY_SUFFIX)] for name in names
                      if name.endswith(KEY_SUFFIX) and _is_key_id(name[: -len(KEY_SUFFIX)]))

    def keys(self) -> dict[str, MasterKey]:
        """Every key on disk by id; a file whose content is not the key its name says is refused."""
        out: dict[str, MasterKey] = {}
        for key_id in self.key_ids():
            path = self.key_path(key_id)
            try:
                raw = read_key_file(path, min_bytes=KEY_BYTES, max_bytes=KEY_BYTES, error=MasterKeyError)
            except MasterKeyError:
                if not path.exists():  # retired while we listed: it was unused, so it is not needed
                    continue
                raise
            key = MasterKey(raw)
            if key.id != key_id:
                raise MasterKeyError(f"{path} holds master key {key.id}, not {key_id}: rename it to {key.id}.key")
            out[key_id] = key
        return out

    def stamp(self) -> tuple[int, ...]:
        """Changes whenever a key file or the pointer is added, replaced or removed (all are renames or
        unlinks in the directory), so a running server re-reads the keyring only when it changed."""
        parts: list[int] = []
        for path in (self.path, self.path / CURRENT_FILE, self.data_dir / LEGACY_CURRENT):
            try:
                info = path.stat()
            except FileNotFoundError:
                parts += [0, 0]
            else:
                parts += [info.st_mtime_ns, info.st_ino]
        return tuple(parts)

    # -- changing --------------------------------------------------------------------------------

    def begin_new(self) -> MasterKey:
        """Step 1 of making a new current key: write it as ``pending.key``, which no reader loads.

        A rotation interrupted after this finds the same key again (:meth:`pending`) and finishes
        making it current, instead of starting over with yet another key.
        """
        existing = self.pending()
        if existing is not None:
            return existing
        key = MasterKey.generate()
        if self.key_path(key.id).exists():  # a 1 in 4 billion id collision: never overwrite a key
            raise MasterKeyError(f"a master key with id {key.id} exists already; run the command again")
        replace_atomically(self.path / PENDING_FILE, _key_text(key))
        return key

    def pending(self) -> MasterKey | None:
        """The new key of a rotation that wrote it but had not yet made it current."""
        path = self.path / PENDING_FILE
        if not path.exists():
            return None
        return MasterKey(read_key_file(path, min_bytes=KEY_BYTES, max_bytes=KEY_BYTES, error=MasterKeyError))

    def install_new(self, key: MasterKey, step: Callable[[str], None] = lambda _: None) -> None:
        """Steps 2 and 3: the key file under its id, then the pointer. Repeatable: running it again
        after a crash at any point completes the same change. ``pending.key`` stays, marking the
        rotation unfinished, until :meth:`complete_new` (after every value was moved and checked)."""
        path = self.key_path(key.id)
        if not path.exists():
            replace_atomically(path, _key_text(key))
            step(f"wrote {path}")
        if self.current_id() != key.id:
            replace_atomically(self.path / CURRENT_FILE, key.id.encode("ascii") + b"\n")
            step(f"master key {key.id} is now current")

    def complete_new(self) -> None:
        """Step 4: the rotation is over (the caller verified every stored value is under the new key)."""
        remove_durably(self.path / PENDING_FILE)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Held by ``master-key rotate`` and ``retire`` (one at a time per data directory); raises
        :class:`MasterKeyError` at once when another holds it. Released by the kernel on a crash."""
        import fcntl

        self.path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise MasterKeyError("another `tenant-access master-key` command is running on this data "
                                     "directory") from None
            yield
        finally:
            os.close(fd)

    def remove_leftovers(self) -> list[str]:
        """Temporary files of writes a crash interrupted (they may hold a key). Only under
        :meth:`exclusive`: the writers of new key files are the commands that hold it."""
        removed = []
        for name in os.listdir(self.path):
            if name.startswith(".") and name.endswith(".tmp"):
                remove_durably(self.path / name)
                removed.append(name)
        return removed

    def retire(self, key_id: str) -> None:
        """Delete a key file. The caller has proved that no stored value is under this key."""
        if key_id == self.current_id():
            raise MasterKeyError(f"master key {key_id} is the current one; rotate to a new key first")
        if not self.key_path(key_id).exists():
            raise MasterKeyError(f"there is no master key {key_id} in {self.path}")
        remove_durably(self.key_path(key_id))

    def adopt_legacy(self) -> list[str]:
        """Move ``master.key`` (current) and ``master.key.previous`` into the keyring; answers the ids
        adopted. Repeatable: every step either is already done or is redone the same way."""
        legacy = [(self.data_dir / LEGACY_CURRENT, True), (self.data_dir / LEGACY_PREVIOUS, False)]
        present = [(path, is_current) for path, is_current in legacy if path.exists()]
        if not present:
            return []
        adopted: list[str] = []
        current: str | None = None
        for path, is_current in present:
            try:
                raw = read_key_file(path, min_bytes=KEY_BYTES, max_bytes=KEY_BYTES, error=MasterKeyError)
            except MasterKeyError:
                if not path.exists():  # another process adopted it meanwhile
                    continue
                raise
            key = MasterKey(raw)
            target = self.key_path(key.id)
            if target.exists():
                known = read_key_file(target, min_bytes=KEY_BYTES, max_bytes=KEY_BYTES, error=MasterKeyError)
                if known != raw:
                    raise MasterKeyError(f"{path} and {target} are different keys with the same id {key.id}")
            else:
                replace_atomically(target, _key_text(key))
            if is_current:
                current = key.id
            adopted.append(key.id)
        # The pointer after every key file, and never replaced here.
        if current is not None and self.current_id() is None:
            with contextlib.suppress(FileExistsError):
                create_exclusively(self.path / CURRENT_FILE, current.encode("ascii") + b"\n")
        # Only now, with every key durably in the keyring, do the old files go.
        for path, _ in present:
            remove_durably(path)
        log.warning("moved the master key files %s into %s/ (keys %s); nothing else changed",
                    " and ".join(p.name for p, _ in present), self.path, ", ".join(adopted))
        return adopted

    def _create_first(self) -> None:
        """The first key of a new data directory. Two processes starting together agree: only one
        pointer can be linked into place, and the loser removes the key it made (nothing uses it)."""
        self.path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        key = MasterKey.generate()
        replace_atomically(self.key_path(key.id), _key_text(key))
        try:
            create_exclusively(self.path / CURRENT_FILE, key.id.encode("ascii") + b"\n")
        except FileExistsError:
            remove_durably(self.key_path(key.id))


def _key_text(key: MasterKey) -> bytes:
    return key.to_base64().reveal().encode("ascii") + b"\n"


def _is_key_id(text: str) -> bool:
    return len(text) == 8 and set(text) <= _ID_CHARS

