"""The keys bearer tokens are verified with: an HMAC secret, PEM public keys, or a JWKS document.

Each key is pinned to exactly one algorithm when it is loaded (HMAC → HS256, RSA ≥ 2048 bits →
RS256, EC P-256 → ES256). The verifier then only tries keys whose algorithm equals the token's
``alg``, which closes the classic confusion attacks: an RS256 public key can never be used as an
HS256 secret, and ``alg: none`` matches no key at all.

Problems are found at start-up and raised as :class:`KeyMaterialError`; nothing here ever sees a
token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tenant_access.security.errors import KeyMaterialError
from tenant_access.security.secret import Secret, plain

if TYPE_CHECKING:  # imported where used: a server with only its own HS256 keys never needs them at start
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

Algorithm = Literal["HS256", "RS256", "ES256"]
ALGORITHMS: tuple[Algorithm, ...] = ("HS256", "RS256", "ES256")
MIN_HMAC_BYTES = 32  # RFC 7518 §3.2: an HS256 key at least as long as the hash output
MIN_RSA_BITS = 2048
MAX_KEY_FILE_BYTES = 1024 * 1024

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL)
_KID_LABEL = b"tenant-access signing key id"


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """One key, the one algorithm it verifies, and its ``kid`` (``None``: used whatever the token's kid)."""

    kid: str | None
    algorithm: Algorithm
    key: Secret[bytes] | rsa.RSAPublicKey | ec.EllipticCurvePublicKey = field(repr=False)


def signing_key_id(secret: bytes | Secret[bytes]) -> str:
    """A stable ``kid`` for an HMAC secret, derived from it (so it needs no storage and leaks nothing):
    lets a verifier holding an old and a new signing secret pick the right one without trying both."""
    return hmac.new(plain(secret), _KID_LABEL, hashlib.sha256).hexdigest()[:16]


def hmac_key(
    secret: bytes | Secret[bytes], kid: str | None = None, *, any_kid: bool = False,
) -> VerificationKey:
    """An HS256 key. Its ``kid`` is ``kid`` or, by default, :func:`signing_key_id` (which
    :func:`~.tokens.issue_token` also puts in the tokens it signs); ``any_kid=True`` accepts tokens
    whatever their ``kid``, for issuers that set their own."""
    raw = plain(secret)
    if not isinstance(raw, bytes) or len(raw) < MIN_HMAC_BYTES:
        raise KeyMaterialError(f"an HS256 secret must be at least {MIN_HMAC_BYTES} bytes")
    chosen = None if any_kid else (kid if kid is not None else signing_key_id(raw))
    return VerificationKey(chosen, "HS256", Secret(raw))


def public_key(key: object, kid: str | None = None, *, what: str = "key") -> VerificationKey:
    """Pin a public key to its algorithm, refusing weak or unsupported ones."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise KeyMaterialError(
                f"{what}: RSA keys must have at least {MIN_RSA_BITS} bits, not {key.key_size}"
            )
        return VerificationKey(kid, "RS256", key)
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise KeyMaterialError(f"{what}: only P-256 EC keys (ES256) are supported, not {key.curve.name}")
        return VerificationKey(kid, "ES256", key)
    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise KeyMaterialError(f"{what} is a private key; give the verifier the public key only")
    raise KeyMaterialError(f"{what}: unsupported key type {type(key).__name__}; use RSA or EC P-256")


def load_pem_keys(path: Path, kid: str | None = None) -> list[VerificationKey]:
    """Every public key in a PEM file: ``PUBLIC KEY``, ``RSA PUBLIC KEY`` or ``CERTIFICATE`` blocks.

    A file holding a private key is refused rather than silently reduced to its public half: a
    private key has no business on a verifier, and its presence usually means a mix-up.
    """
    # Imported here: x509 alone costs ~20 ms of start-up, and PEM files are read once.
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    data = _read(path)
    blocks = [(m.group(1).decode("ascii"), m.group(0)) for m in _PEM_BLOCK.finditer(data)]
    if not blocks:
        raise KeyMaterialError(f"{path} holds no PEM block")
    keys: list[VerificationKey] = []
    for index, (label, block) in enumerate(blocks, start=1):
        what = f"{path} block {index} ({label})"
        if "PRIVATE" in label:
            raise KeyMaterialError(f"{what} is a private key; give the verifier the public key only")
        try:
            if label == "CERTIFICATE":
                loaded: object = x509.load_pem_x509_certificate(block).public_key()
            elif label in ("PUBLIC KEY", "RSA PUBLIC KEY"):
                loaded = load_pem_public_key(block)
            else:
                raise KeyMaterialError(f"{what}: unsupported PEM block")
        except ValueError:
            raise KeyMaterialError(f"{what} cannot be parsed") from None
        keys.append(public_key(loaded, kid, what=what))
    return keys


def load_jwks(path: Path) -> list[VerificationKey]:
    """The signature keys of a JWKS file (``{"keys": [...]}``), each with its ``kid``."""
    try:
        document = json.loads(_read(path))
    except (UnicodeDecodeError, ValueError):
        raise KeyMaterialError(f"{path} is not JSON") from None
    return parse_jwks(document, what=str(path))


def parse_jwks(document: object, *, what: str = "JWKS") -> list[VerificationKey]:
    """Keys from an already-parsed JWKS document.

    Keys marked for encryption (``use: enc``) and key types we do not verify (``OKP``, ...) are
    skipped, since identity providers publish those alongside signing keys; symmetric (``oct``) and
    private keys are refused, since a JWKS is meant to be public. At least one usable key must remain.
    """
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise KeyMaterialError(f"{what}: a JWKS is an object with a 'keys' list")
    keys: list[VerificationKey] = []
    for index, jwk in enumerate(document["keys"]):
        where = f"{what} key {index}"
        if not isinstance(jwk, Mapping):
            raise KeyMaterialError(f"{where} is not an object")
        key = _jwk(jwk, where)
        if key is not None:
            keys.append(key)
    if not keys:
        raise KeyMaterialError(f"{what} holds no RS256 or ES256 signature key")
    return keys


def _jwk(jwk: Mapping[str, Any], where: str) -> VerificationKey | None:
    kty, kid, alg, use = jwk.get("kty"), jwk.get("kid"), jwk.get("alg"), jwk.get("use")
    if kid is not None and not isinstance(kid, str):
        raise KeyMaterialError(f"{where}: 'kid' must be a string")
    if kty == "oct":
        raise KeyMaterialError(f"{where} is a symmetric key; give HMAC secrets separately, not in a JWKS")
    if any(name in jwk for name in ("d", "p", "q", "dp", "dq", "qi")):
        raise KeyMaterialError(f"{where} contains private key material")
    if use not in (None, "sig") or kty not in ("RSA", "EC"):
        return None
    expected = "RS256" if kty == "RSA" else "ES256"
    if alg is not None and alg != expected:
        return None  # e.g. an RSA key published for PS256 or RSA-OAEP only
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    try:
        if kty == "RSA":
            numbers: object = rsa.RSAPublicNumbers(_int(jwk, "e"), _int(jwk, "n")).public_key()
        else:
            if jwk.get("crv") != "P-256":
                return None
            x, y = _coordinate(jwk, "x"), _coordinate(jwk, "y")
            numbers = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
    except ValueError as exc:
        raise KeyMaterialError(f"{where} is not a valid {kty} key ({exc})") from None
    return public_key(numbers, kid, what=where)


def _b64url(jwk: Mapping[str, Any], name: str) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str) or not value:
        raise ValueError(f"'{name}' is missing")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise ValueError(f"'{name}' is not base64url") from None


def _int(jwk: Mapping[str, Any], name: str) -> int:
    return int.from_bytes(_b64url(jwk, name), "big")


def _coordinate(jwk: Mapping[str, Any], name: str) -> int:
    raw = _b64url(jwk, name)
    if len(raw) != 32:
        raise ValueError(f"'{name}' must be 32 bytes for P-256")
    return int.from_bytes(raw, "big")


def _read(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise KeyMaterialError(f"{path} cannot be read: {exc.strerror}") from None
    if len(data) > MAX_KEY_FILE_BYTES:
        raise KeyMaterialError(f"{path} is too large to be a key file")
    return data
