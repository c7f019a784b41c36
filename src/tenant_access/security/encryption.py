"""Encryption of key material at rest: AES-256-GCM under a master key that never enters the database.

Ciphertext format (text, so it fits any column)::

    v1:<base64( key_id[4] || nonce[12] || ciphertext || tag[16] )>

* ``v1`` lets a later format coexist with this one.
* ``key_id`` names the master key (the first 4 bytes of an HMAC of it, so it needs no storage of
  its own and reveals nothing about it); rotation uses it to tell which values still need
  re-encrypting, and a wrong master key is reported as such instead of as corruption.
* The nonce is fresh and random for every encryption: with 96-bit random nonces one key can safely
  encrypt far more values than this service will ever hold.
* The caller's ``aad`` (the record's identity; build it with :func:`record_aad`) is authenticated
  but not stored, so a ciphertext copied onto another record, slot or service fails to decrypt
  instead of silently handing out the wrong key.

Nothing here ever returns unauthenticated bytes: every failure is a :class:`DecryptionError`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import struct
from collections.abc import Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tenant_access.security.errors import DecryptionError, KeyMaterialError, MasterKeyError, UnknownMasterKey
from tenant_access.security.keyfiles import decode_key_text
from tenant_access.security.secret import Secret, plain

MASTER_KEY_ENV = "TENANT_ACCESS_MASTER_KEY"
KEY_BYTES = 32
KEY_ID_BYTES = 4
NONCE_BYTES = 12
TAG_BYTES = 16
PREFIX = "v1:"
MAX_CIPHERTEXT_CHARS = 64 * 1024

_HEADER = b"tenant-access/v1\x00"  # binds the format version into the authenticated data
_KEY_ID_LABEL = b"tenant-access master key id"
_CHECK_PLAINTEXT = b"tenant-access master key check"
_CHECK_AAD = b"tenant-access/master-key-check"


class MasterKey:
    """A 256-bit AES key and its public id. Prints as its id only."""

    __slots__ = ("_aead", "_key", "id", "id_bytes")

    def __init__(self, key: bytes | Secret[bytes]) -> None:
        raw = plain(key)
        if not isinstance(raw, bytes) or len(raw) != KEY_BYTES:
            raise MasterKeyError(f"a master key is exactly {KEY_BYTES} bytes")
        self._key = Secret(raw)
        self._aead = AESGCM(raw)
        self.id_bytes = hmac.new(raw, _KEY_ID_LABEL, hashlib.sha256).digest()[:KEY_ID_BYTES]
        #: Hex id, safe to log and to show operators ("database encrypted under 1a2b3c4d").
        self.id = self.id_bytes.hex()

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def from_base64(cls, text: str | Secret[str]) -> MasterKey:
        """From the form used in ``TENANT_ACCESS_MASTER_KEY`` and the key file: base64 of 32 bytes."""
        try:
            raw = decode_key_text(plain(text), min_bytes=KEY_BYTES, max_bytes=KEY_BYTES,
                                  what="the master key")
        except KeyMaterialError as exc:
            raise MasterKeyError(str(exc)) from None
        return cls(raw)

    def to_base64(self) -> Secret[str]:
        """For backing the key up or moving it into the environment variable."""
        return Secret(base64.b64encode(self._key.reveal()).decode("ascii"))

    def __repr__(self) -> str:
        return f"MasterKey(id={self.id!r})"


def record_aad(*parts: str) -> bytes:
    """Unambiguous associated data from a record's identity, e.g. ``record_aad(service_key, "access",
    "primary", version_id)``. Each part is length-prefixed, so ``("ab", "c")`` and ``("a", "bc")``
    differ. Pass canonical spellings (lower-cased names): the bytes must be identical at decryption.
    """
    out = bytearray(b"tenant-access/aad/v1")
    for part in parts:
        data = part.encode("utf-8", "surrogatepass")
        out += struct.pack(">I", len(data)) + data
    return bytes(out)


class Keyring:
    """The current master key, which encrypts, and any previous ones, which only decrypt.

    Holding both during a rotation lets the server keep answering while stored values are
    re-encrypted one by one (:meth:`reencrypt`); once :meth:`needs_reencryption` is false for every
    value, the old key can be dropped.
    """

    __slots__ = ("_by_id", "current")

    def __init__(self, current: MasterKey, previous: Iterable[MasterKey] = ()) -> None:
        self.current = current
        self._by_id: dict[bytes, MasterKey] = {current.id_bytes: current}
        for key in previous:
            known = self._by_id.get(key.id_bytes)
            if known is not None and known.to_base64() != key.to_base64():
                raise MasterKeyError(f"two different master keys share the id {key.id}; generate another")
            self._by_id.setdefault(key.id_bytes, key)

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(key.id for key in self._by_id.values())

    def encrypt(self, plaintext: bytes, aad: bytes) -> str:
        """Encrypt under the current key with a fresh nonce; ``aad`` must be given again to decrypt."""
        key = self.current
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = key._aead.encrypt(nonce, plaintext, _HEADER + key.id_bytes + aad)
        return PREFIX + base64.b64encode(key.id_bytes + nonce + sealed).decode("ascii")

    def decrypt(self, ciphertext: str, aad: bytes) -> bytes:
        """The plaintext, or :class:`DecryptionError` (:class:`UnknownMasterKey` for a key not held)."""
        key_id, body = _split(ciphertext)
        key = self._by_id.get(key_id)
        if key is None:
            raise UnknownMasterKey(key_id.hex())
        nonce, sealed = body[:NONCE_BYTES], body[NONCE_BYTES:]
        try:
            return key._aead.decrypt(nonce, sealed, _HEADER + key_id + aad)
        except InvalidTag:
            raise DecryptionError(
                f"a value under master key {key_id.hex()} failed authentication: "
                "it was altered, or belongs to another record"
            ) from None

    def encrypt_text(self, plaintext: str | Secret[str], aad: bytes) -> str:
        return self.encrypt(plain(plaintext).encode("utf-8"), aad)

    def decrypt_text(self, ciphertext: str, aad: bytes) -> str:
        try:
            return self.decrypt(ciphertext, aad).decode("utf-8")
        except UnicodeDecodeError:
            raise DecryptionError("the decrypted value is not UTF-8 text") from None

    def key_id_of(self, ciphertext: str) -> str:
        """The id of the master key a value was encrypted under (no key needed to read it)."""
        return _split(ciphertext)[0].hex()

    def needs_reencryption(self, ciphertext: str) -> bool:
        """Whether ``ciphertext`` is under a key other than the current one."""
        return _split(ciphertext)[0] != self.current.id_bytes

    def reencrypt(self, ciphertext: str, aad: bytes) -> str:
        """The same plaintext under the current key (a fresh nonce even if it already was)."""
        return self.encrypt(self.decrypt(ciphertext, aad), aad)


def make_check(keyring: Keyring) -> str:
    """A known value encrypted under the current key; store it next to the data it vouches for."""
    return keyring.encrypt(_CHECK_PLAINTEXT, _CHECK_AAD)


def verify_check(keyring: Keyring, stored: str) -> bool:
    """Whether ``keyring`` can decrypt a :func:`make_check` value, i.e. holds the master key the
    database was written with. Lets the server refuse to start with a wrong key instead of failing
    on the first request that touches a key; ``keyring.key_id_of(stored)`` names the key it wants.
    """
    try:
        return hmac.compare_digest(keyring.decrypt(stored, _CHECK_AAD), _CHECK_PLAINTEXT)
    except DecryptionError:
        return False


def ciphertext_key_id(ciphertext: str) -> str:
    """The id of the master key a stored value is under; :class:`DecryptionError` if it is malformed."""
    return _split(ciphertext)[0].hex()


def _split(ciphertext: str) -> tuple[bytes, bytes]:
    """``(key_id, nonce || sealed)`` of a well-formed v1 value; :class:`DecryptionError` otherwise."""
    if not isinstance(ciphertext, str) or not ciphertext.startswith(PREFIX):
        raise DecryptionError("not a v1 ciphertext")
    if len(ciphertext) > MAX_CIPHERTEXT_CHARS:
        raise DecryptionError("ciphertext too long")
    try:
        raw = base64.b64decode(ciphertext[len(PREFIX):].encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise DecryptionError("ciphertext is not valid base64") from None
    if len(raw) < KEY_ID_BYTES + NONCE_BYTES + TAG_BYTES:
        raise DecryptionError("ciphertext too short")
    return raw[:KEY_ID_BYTES], raw[KEY_ID_BYTES:]
