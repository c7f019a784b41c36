"""Service principals: the client id and client secret an OAuth client-credentials caller presents.

The secret is shown once, when created, and stored only as a salted scrypt hash. The stored string
carries its own parameters (``$scrypt$ln=14,r=8,p=1$<salt>$<hash>``, the PHC string format) so they
can be raised later without breaking existing secrets; :func:`needs_rehash` says when to re-hash on
the next successful login.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass

from tenant_access.security.secret import Secret, plain

SCHEME = "scrypt"
LOG2_N = 14  # N = 16384: about 16 MiB and a few tens of milliseconds per check
BLOCK_SIZE = 8
PARALLELISM = 1
SALT_BYTES = 16
HASH_BYTES = 32
MAX_SECRET_CHARS = 1024

# Bounds on what a stored string may ask for: a tampered row must not turn a login into a
# gigabyte allocation or a minute of CPU.
_MAX_LOG2_N = 20
_MAX_BLOCK_SIZE = 16
_MAX_PARALLELISM = 4
_MAXMEM = 64 * 1024 * 1024

_STORED = re.compile(
    r"\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d)\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)", re.ASCII,
)


@dataclass(frozen=True, slots=True, repr=False)
class NewServicePrincipal:
    """A freshly created service principal: ``secret`` goes to the caller once, ``secret_hash`` to storage."""

    client_id: str
    secret: Secret[str]
    secret_hash: str

    def __repr__(self) -> str:
        return f"NewServicePrincipal(client_id={self.client_id!r}, secret={self.secret!r})"


def new_client_id() -> str:
    """A random (version 4) UUID, the shape Entra gives application ids."""
    return str(uuid.uuid4())


def new_client_secret() -> Secret[str]:
    """32 random bytes, URL-safe base64 (43 characters): safe in form bodies and shell variables."""
    return Secret(secrets.token_urlsafe(32))


def create_service_principal() -> NewServicePrincipal:
    secret = new_client_secret()
    return NewServicePrincipal(new_client_id(), secret, hash_client_secret(secret))


def hash_client_secret(secret: str | Secret[str], *, log2_n: int = LOG2_N) -> str:
    """The storable hash of ``secret``, with a fresh random salt and the parameters used."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(_utf8(plain(secret)), salt, log2_n, BLOCK_SIZE, PARALLELISM)
    return f"${SCHEME}$ln={log2_n},r={BLOCK_SIZE},p={PARALLELISM}${_b64(salt)}${_b64(digest)}"


def verify_client_secret(secret: str | Secret[str], stored: str | None) -> bool:
    """Whether ``secret`` is the one ``stored`` was made from, compared in constant time.

    Pass ``stored=None`` for an unknown client id: the same scrypt work is still done, so response
    time does not tell an attacker which client ids exist. A malformed ``stored`` is ``False``.
    """
    candidate = plain(secret)
    parsed = _parse(stored) if stored is not None else None
    if parsed is None or not isinstance(candidate, str) or len(candidate) > MAX_SECRET_CHARS:
        _scrypt(b"", _DUMMY_SALT, LOG2_N, BLOCK_SIZE, PARALLELISM)
        return False
    log2_n, block_size, parallelism, salt, expected = parsed
    actual = _scrypt(_utf8(candidate), salt, log2_n, block_size, parallelism, len(expected))
    return hmac.compare_digest(actual, expected)


def needs_rehash(stored: str) -> bool:
    """Whether ``stored`` was made with other parameters than today's (or cannot be read)."""
    parsed = _parse(stored)
    return parsed is None or parsed[:3] != (LOG2_N, BLOCK_SIZE, PARALLELISM)


_DUMMY_SALT = b"\x00" * SALT_BYTES


def _parse(stored: str) -> tuple[int, int, int, bytes, bytes] | None:
    match = _STORED.fullmatch(stored) if isinstance(stored, str) else None
    if match is None:
        return None
    log2_n, block_size, parallelism = (int(g) for g in match.group(1, 2, 3))
    if not (1 <= log2_n <= _MAX_LOG2_N and 1 <= block_size <= _MAX_BLOCK_SIZE
            and 1 <= parallelism <= _MAX_PARALLELISM):
        return None
    if _memory(log2_n, block_size, parallelism) > _MAXMEM:
        return None
    try:
        salt = _unb64(match.group(4))
        expected = _unb64(match.group(5))
    except (binascii.Error, ValueError):
        return None
    if len(salt) < 8 or not 16 <= len(expected) <= 64:
        return None
    return log2_n, block_size, parallelism, salt, expected


def _memory(log2_n: int, r: int, p: int) -> int:
    """What OpenSSL's scrypt allocates (its ``maxmem`` check), so oversized parameters are refused
    before hashlib raises on them."""
    return 128 * r * ((1 << log2_n) + 2) + 128 * r * p


def _scrypt(data: bytes, salt: bytes, log2_n: int, r: int, p: int, dklen: int = HASH_BYTES) -> bytes:
    return hashlib.scrypt(data, salt=salt, n=1 << log2_n, r=r, p=p, maxmem=_MAXMEM, dklen=dklen)


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
