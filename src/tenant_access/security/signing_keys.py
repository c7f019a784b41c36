"""The server's own token signing keys: the current one, which signs, and retired ones, which only
verify until every token they signed can have expired.

Files in the data directory (mode 0600)::

    signing-key           base64 of the current HS256 secret (made on first start)
    signing-key.retired   JSON {"keys": [{"key": base64, "retired_at": unix seconds}, ...]}

``tenant-access signing-key rotate`` appends the current secret to the retired file first, then
replaces ``signing-key``, so at every instant both are on disk and no token in flight becomes
unverifiable. A retired key verifies until ``retired_at + max token lifetime + margin``; the margin
covers the second a running server may take to notice the rotation (and go on signing with the
old key meanwhile) and the clock-skew leeway on ``exp``. Running servers re-read the files when
their modification times change, checked at most once a second, as the master key is followed.

The key stays symmetric (HS256) because the server is the only party that verifies its own tokens;
there is no public half to publish, which is why the JWKS this server serves is honestly empty.
"""

from __future__ import annotations

import base64
import json
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tenant_access.security.errors import KeyMaterialError
from tenant_access.security.keyfiles import decode_key_text, load_or_create_key_file, replace_atomically
from tenant_access.security.secret import Secret
from tenant_access.security.verification_keys import VerificationKey, hmac_key, signing_key_id

SIGNING_KEY_FILE = "signing-key"
RETIRED_FILE = "signing-key.retired"
SIGNING_KEY_BYTES = 32
MAX_SIGNING_KEY_BYTES = 512
RELOAD_INTERVAL = 1.0
#: Seconds a retired key outlives the maximum token lifetime: the reload interval of running
#: servers (which may sign with the old key until they notice) plus the verifier's clock leeway.
OVERLAP_MARGIN = 2 * RELOAD_INTERVAL + 60
_MAX_RETIRED_FILE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class RetiredKey:
    secret: Secret[bytes]
    retired_at: float

    @property
    def kid(self) -> str:
        return signing_key_id(self.secret)


@dataclass(frozen=True, slots=True)
class OwnKey:
    """A key this server verifies its own tokens with, and until when (``inf``: the current key)."""

    key: VerificationKey
    valid_until: float


def load_current(data_dir: Path, *, create: bool = True) -> Secret[bytes]:
    """The current signing secret, made on first start from :mod:`secrets` when ``create``."""
    raw = load_or_create_key_file(data_dir / SIGNING_KEY_FILE, nbytes=SIGNING_KEY_BYTES,
                                  max_bytes=MAX_SIGNING_KEY_BYTES, create=create)
    return Secret(raw)


def load_retired(data_dir: Path) -> list[RetiredKey]:
    path = data_dir / RETIRED_FILE
    if not path.exists():
        return []
    text = _read_retired_text(path)
    try:
        document = json.loads(text)
        entries = document["keys"]
        if not isinstance(entries, list):
            raise TypeError
        retired = []
        for entry in entries:
            at = entry["retired_at"]
            if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
                raise TypeError
            raw = decode_key_text(entry["key"], min_bytes=SIGNING_KEY_BYTES, max_bytes=MAX_SIGNING_KEY_BYTES,
                                  what=str(path))
            retired.append(RetiredKey(Secret(raw), float(at)))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise KeyMaterialError(f"{path} is not a retired signing key list") from None
    return retired


def _read_retired_text(path: Path) -> str:
    info = path.stat()
    if os.name == "posix" and info.st_mode & 0o077:
        raise KeyMaterialError(f"{path} is readable by other users; run chmod 600 on it")
    if info.st_size > _MAX_RETIRED_FILE_BYTES:
        raise KeyMaterialError(f"{path} is too large")
    return path.read_text(encoding="ascii")


def rotate(data_dir: Path, max_lifetime: int, *, now: float | None = None) -> tuple[str, str]:
    """Make a new current signing key; the old one is retired (verify-only). Retired keys whose
    window has closed are dropped from the file. Answers the (old, new) key ids."""
    import secrets

    moment = time.time() if now is None else now
    old = load_current(data_dir, create=False)
    kept = [r for r in load_retired(data_dir) if moment < r.retired_at + max_lifetime + OVERLAP_MARGIN]
    kept.append(RetiredKey(old, moment))
    document = {"keys": [{"key": base64.b64encode(r.secret.reveal()).decode("ascii"), "retired_at": r.retired_at}
                         for r in kept]}
    replace_atomically(data_dir / RETIRED_FILE, json.dumps(document).encode("ascii") + b"\n")
    new = secrets.token_bytes(SIGNING_KEY_BYTES)
    replace_atomically(data_dir / SIGNING_KEY_FILE, base64.b64encode(new) + b"\n")
    return signing_key_id(old), signing_key_id(new)


class SigningKeyring:
    """The current key (to sign) and the keys still verifying, re-read when their files change.

    ``epoch`` moves whenever the files are re-read, so whoever remembers verified tokens can tell
    that the keys they were verified with may have changed.
    """

    def __init__(self, data_dir: Path, max_lifetime: int, *, create: bool = True) -> None:
        self.data_dir = data_dir
        self.max_lifetime = max_lifetime
        self.epoch = 0
        self._lock = threading.Lock()
        self._checked = time.monotonic()
        self._stamp = (0.0, 0.0)
        self._current, self._keys = self._load(create=create)

    def _mtimes(self) -> tuple[float, float]:
        def mtime(path: Path) -> float:
            try:
                return path.stat().st_mtime
            except FileNotFoundError:
                return 0.0

        return mtime(self.data_dir / SIGNING_KEY_FILE), mtime(self.data_dir / RETIRED_FILE)

    def _load(self, *, create: bool = False) -> tuple[Secret[bytes], tuple[OwnKey, ...]]:
        self._stamp = self._mtimes()
        current = load_current(self.data_dir, create=create)
        if create:
            self._stamp = self._mtimes()
        keys = [OwnKey(hmac_key(current), math.inf)]
        keys += [OwnKey(hmac_key(r.secret), r.retired_at + self.max_lifetime + OVERLAP_MARGIN)
                 for r in load_retired(self.data_dir)]
        return current, tuple(keys)

    def refresh(self, *, force: bool = False) -> None:
        """Re-read the files if they changed (looked at no more than once a second unless ``force``).
        A file caught half-replaced or unreadable keeps the keys already loaded."""
        now = time.monotonic()
        if not force and now - self._checked < RELOAD_INTERVAL:
            return
        with self._lock:
            self._checked = now
            if force or self._mtimes() != self._stamp:
                try:
                    self._current, self._keys = self._load()
                except (KeyMaterialError, OSError):
                    return
                self.epoch += 1

    def current(self) -> Secret[bytes]:
        self.refresh()
        return self._current

    def own_keys(self, now: float | None = None) -> tuple[OwnKey, ...]:
        """The current key, then each retired key whose overlap window is still open."""
        self.refresh()
        moment = time.time() if now is None else now
        return tuple(k for k in self._keys if moment < k.valid_until)


def status(data_dir: Path, max_lifetime: int, *, now: float | None = None) -> list[tuple[str, str, float | None]]:
    """(key id, state, verifies until) of each key on disk, for ``signing-key status``."""
    moment = time.time() if now is None else now
    rows: list[tuple[str, str, float | None]] = [(signing_key_id(load_current(data_dir, create=False)), "current",
                                                  None)]
    for retired in load_retired(data_dir):
        until = retired.retired_at + max_lifetime + OVERLAP_MARGIN
        rows.append((retired.kid, "retired, verifying" if moment < until else "retired, expired", until))
    return rows

