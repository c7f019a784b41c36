"""Bearer tokens (JWT): issuing our own and verifying anyone's, against configured keys.

Claims we issue and read::

    sub    the principal (a service principal's client id, a user name)
    role   reader | key-operator | owner
    scope  an ARM path prefix: /, /subscriptions/{id}, .../resourceGroups/{rg},
           .../providers/Microsoft.ApiManagement/service/{name}
           (note: not the space-separated OAuth ``scope`` of RFC 9068; Entra uses ``scp`` for that)
    aud    https://management.azure.com/ by default: what the Azure SDK asks a token for
    iss, exp, nbf, iat, jti

Verification checks the signature (:mod:`.verification_keys` pins each key to one algorithm, and
the ``kid`` header selects among keys), then ``exp`` (required), ``nbf`` and ``iat`` with
:data:`DEFAULT_LEEWAY` of clock skew, then ``aud`` and ``iss`` when configured, then the claims
above. Every failure is the same :class:`InvalidCredential`.

**Emulator mode** (:meth:`TokenVerifier.emulator`) follows Azurite's ``--oauth basic``: the token
must be a well-formed, unexpired JWT for the configured audience, but its signature is not checked
at all, so any token from any tenant (or one made up by a test) works. Role and scope come from the
claims when present; when absent the caller is an owner of everything (``/``), because emulator
mode exists to let unmodified tools work against a local server, and those tools' tokens carry
no such claims. Never use it where the server is reachable by anyone you do not trust.

PyJWT is imported on first use: it costs ~80 ms, which matters for the start-up budget and not at
all once a token has been seen.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tenant_access.security.authorization import Principal, PrincipalKind, Role, normalize_scope
from tenant_access.security.errors import InvalidCredential, KeyMaterialError
from tenant_access.security.keyfiles import load_or_create_key_file
from tenant_access.security.secret import Secret, plain
from tenant_access.security.verification_keys import (
    ALGORITHMS,
    MIN_HMAC_BYTES,
    VerificationKey,
    signing_key_id,
)

DEFAULT_AUDIENCE = "https://management.azure.com/"
#: The audiences Entra puts in Azure Resource Manager tokens, with and without the slash.
ARM_AUDIENCES: tuple[str, ...] = (
    "https://management.azure.com/",
    "https://management.azure.com",
    "https://management.core.windows.net/",
)
DEFAULT_LEEWAY = 60  # seconds of clock skew tolerated on exp, nbf and iat
MAX_TOKEN_CHARS = 16 * 1024  # Entra tokens are 1-3 KB; this bounds the work garbage can cause
MAX_LIFETIME = 366 * 24 * 3600
SIGNING_KEY_FILE = "signing-key"
SIGNING_KEY_BYTES = 32
MAX_CLAIM_CHARS = 1024
EMULATOR_SUBJECT = "anonymous"

_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*", re.ASCII)


def load_or_create_signing_key(data_dir: Path, *, create: bool = True) -> Secret[bytes]:
    """The HS256 secret in ``<data_dir>/signing-key`` (mode 0600), made on first start from
    :mod:`secrets`. Tokens survive restarts because the key does. Raises :class:`KeyMaterialError`."""
    raw = load_or_create_key_file(
        data_dir / SIGNING_KEY_FILE, nbytes=SIGNING_KEY_BYTES, max_bytes=512, create=create,
    )
    return Secret(raw)


def issue_token(
    secret: bytes | Secret[bytes],
    sub: str,
    role: Role | str,
    scope: str,
    expires_in: int,
    aud: str | None = DEFAULT_AUDIENCE,
    iss: str | None = None,
    *,
    now: float | None = None,
    kid: str | None = None,
) -> str:
    """An HS256 token for ``sub`` with ``role`` on ``scope``, valid for ``expires_in`` seconds.

    ``kid`` defaults to the secret's derived id (:func:`~.verification_keys.signing_key_id`), so a
    verifier holding several secrets during a signing-key rotation picks the right one. Arguments
    are validated (``ValueError``), so a token we issue always passes our own verifier.
    """
    raw = plain(secret)
    if len(raw) < MIN_HMAC_BYTES:
        raise ValueError(f"the signing secret must be at least {MIN_HMAC_BYTES} bytes")
    if not isinstance(sub, str) or not 0 < len(sub) <= 256:
        raise ValueError("sub must be 1 to 256 characters")
    if isinstance(expires_in, bool) or not isinstance(expires_in, int) or not 0 < expires_in <= MAX_LIFETIME:
        raise ValueError(f"expires_in must be 1 to {MAX_LIFETIME} seconds")
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "sub": sub,
        "role": Role(role).value,
        "scope": normalize_scope(scope),
        "iat": issued,
        "nbf": issued,
        "exp": issued + expires_in,
        "jti": secrets.token_hex(16),
    }
    if aud is not None:
        claims["aud"] = aud
    if iss is not None:
        claims["iss"] = iss
    import jwt

    headers = {"kid": kid if kid is not None else signing_key_id(raw)}
    return jwt.encode(claims, raw, algorithm="HS256", headers=headers)


@dataclass(frozen=True, slots=True)
class TokenVerifier:
    """Checks bearer tokens and turns them into a :class:`Principal`.

    ``audiences``: accepted ``aud`` values, any one suffices; empty means ``aud`` is not checked.
    ``issuer``: the required ``iss``, or ``None`` to not check it.
    ``default_role`` / ``default_scope``: used when a token lacks the claim; ``None`` (the default
    outside emulator mode) makes the claim required, so an identity provider's token that grants
    nothing explicitly is refused rather than guessed at.
    """

    keys: tuple[VerificationKey, ...] = ()
    audiences: tuple[str, ...] = ARM_AUDIENCES
    issuer: str | None = None
    leeway: int = DEFAULT_LEEWAY
    emulate: bool = False
    default_role: Role | None = None
    default_scope: str | None = None

    def __post_init__(self) -> None:
        if not self.emulate and not self.keys:
            raise KeyMaterialError("token verification needs at least one key (or emulator mode)")
        if not 0 <= self.leeway <= 600:
            raise ValueError("leeway must be 0 to 600 seconds")
        if self.default_scope is not None:
            object.__setattr__(self, "default_scope", normalize_scope(self.default_scope))

    @classmethod
    def with_keys(
        cls,
        keys: Iterable[VerificationKey],
        *,
        audiences: Iterable[str] = ARM_AUDIENCES,
        issuer: str | None = None,
        leeway: int = DEFAULT_LEEWAY,
    ) -> TokenVerifier:
        return cls(tuple(keys), tuple(audiences), issuer, leeway)

    @classmethod
    def emulator(
        cls,
        *,
        audiences: Iterable[str] = ARM_AUDIENCES,
        issuer: str | None = None,
        leeway: int = DEFAULT_LEEWAY,
        default_role: Role = Role.OWNER,
        default_scope: str = "/",
    ) -> TokenVerifier:
        """Signatures ignored, everything else checked; see the module docstring for why."""
        return cls((), tuple(audiences), issuer, leeway, True, default_role, default_scope)

    def verify(self, token: str, *, now: float | None = None) -> Principal:
        """The principal ``token`` speaks for, or :class:`InvalidCredential` whatever went wrong."""
        return self.verify_until(token, now=now)[0]

    def verify_until(self, token: str, *, now: float | None = None) -> tuple[Principal, float]:
        """:meth:`verify`, and the time (``exp``) until which the answer holds, so a caller may
        cache it: nothing else about a verified token can change before then."""
        moment = time.time() if now is None else now
        try:
            header, claims = _decode_unverified(token)
            if not self.emulate:
                self._check_signature(token, header)
            self._check_claims(claims, moment)
            return self._principal(claims), float(claims["exp"])
        except InvalidCredential:
            raise
        except (ValueError, TypeError, KeyError, OverflowError, RecursionError) as exc:
            # Fail closed on anything odd the parsers raise; the type name is enough for debugging
            # and, unlike the message, cannot echo part of the token.
            raise InvalidCredential(f"bearer: malformed ({type(exc).__name__})") from None

    def _check_signature(self, token: str, header: Mapping[str, Any]) -> None:
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALGORITHMS:
            raise InvalidCredential("bearer: algorithm not accepted")
        if kid is not None and not isinstance(kid, str):
            raise InvalidCredential("bearer: kid is not a string")
        candidates = [k for k in self.keys if k.algorithm == alg and (kid is None or k.kid in (None, kid))]
        if not candidates:
            raise InvalidCredential(f"bearer: no {alg} key" + (" with that kid" if kid is not None else ""))
        import jwt

        for key in candidates:
            material = key.key.reveal() if isinstance(key.key, Secret) else key.key
            try:
                jwt.PyJWS().decode_complete(
                    token, material, algorithms=[alg],
                    options={"verify_signature": True, "enforce_minimum_key_length": True},
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError as exc:
                raise InvalidCredential(f"bearer: rejected by JWS check ({type(exc).__name__})") from None
            return
        raise InvalidCredential("bearer: signature matches no key")

    def _check_claims(self, claims: Mapping[str, Any], now: float) -> None:
        exp = _number(claims, "exp")
        if exp is None:
            raise InvalidCredential("bearer: no exp")
        if now - self.leeway >= exp:
            raise InvalidCredential("bearer: expired")
        nbf = _number(claims, "nbf")
        if nbf is not None and nbf > now + self.leeway:
            raise InvalidCredential("bearer: not yet valid (nbf)")
        iat = _number(claims, "iat")
        if iat is not None and iat > now + self.leeway:
            raise InvalidCredential("bearer: issued in the future (iat)")
        if self.audiences:
            aud = claims.get("aud")
            given = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
            if not any(isinstance(a, str) and a in self.audiences for a in given):
                raise InvalidCredential("bearer: audience not accepted")
        if self.issuer is not None and claims.get("iss") != self.issuer:
            raise InvalidCredential("bearer: issuer not accepted")

    def _principal(self, claims: Mapping[str, Any]) -> Principal:
        sub = _text(claims, "sub")
        if sub is None:
            if not self.emulate:
                raise InvalidCredential("bearer: no sub")
            sub = _text(claims, "oid") or EMULATOR_SUBJECT
        role_claim, scope = _text(claims, "role"), _text(claims, "scope") or self.default_scope
        try:
            role = Role(role_claim) if role_claim is not None else self.default_role
            if role is None or scope is None:
                raise InvalidCredential("bearer: no role" if role is None else "bearer: no scope")
            return Principal(sub, role, scope, PrincipalKind.BEARER)
        except ValueError:
            raise InvalidCredential("bearer: role, scope or sub not valid") from None


def _decode_unverified(token: object) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWS, checked for shape only. Cheap checks come first so
    that garbage is refused before any base64 or JSON work."""
    if not isinstance(token, str):
        raise InvalidCredential("bearer: not text")
    if len(token) > MAX_TOKEN_CHARS:
        raise InvalidCredential("bearer: too long")
    if not _COMPACT_JWS.fullmatch(token):
        raise InvalidCredential("bearer: not a compact JWS")
    header_part, payload_part, _signature = token.split(".")
    header = _json_object(header_part, "header")
    claims = _json_object(payload_part, "claims")
    if header.get("b64", True) is not True or "crit" in header:
        raise InvalidCredential("bearer: unsupported header extension")
    return header, claims


def _json_object(part: str, what: str) -> dict[str, Any]:
    try:
        data = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        value = json.loads(data, parse_constant=_no_constants, object_pairs_hook=_no_duplicates)
    except (binascii.Error, ValueError, RecursionError):
        raise InvalidCredential(f"bearer: {what} is not base64url JSON") from None
    if not isinstance(value, dict):
        raise InvalidCredential(f"bearer: {what} is not a JSON object")
    return value


def _no_constants(name: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two "alg" or "exp" members would let different parsers read different tokens.
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate member")
    return result


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidCredential(f"bearer: {name} is not a number")
    return float(value)


def _text(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_CLAIM_CHARS:
        raise InvalidCredential(f"bearer: {name} is not a non-empty string")
    return value
