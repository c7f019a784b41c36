"""Bearer tokens (JWT): issuing our own and verifying anyone's, against configured keys.

Claims we issue and read::

    sub    the principal (a service principal's client id, a user name)
    role   reader | key-operator | owner
    scope  an ARM path prefix: /, /subscriptions/{id}, .../resourceGroups/{rg},
           .../providers/Microsoft.ApiManagement/service/{name}
           (note: not the space-separated OAuth ``scope`` of RFC 9068; Entra uses ``scp`` for that)
    aud    https://management.azure.com/ by default: what the Azure SDK asks a token for
    iss    the issuer: this server's public URL for its own tokens
    exp, nbf, iat, jti
    idtyp, azp, sgen   only in tokens issued to a service principal (see below)

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

**The server's own tokens** (signed by :class:`~.signing_keys.SigningKeyring`'s keys) must carry
the server's own issuer, its public URL, whatever ``--token-issuer`` says (that option is for
tokens verified by ``--token-keys``). Tokens a service principal got at the token endpoint also
carry ``idtyp: app``, ``azp`` (its client id) and ``sgen`` (its secret generation), so the caller
can refuse them once the principal is disabled, deleted or has its secret rotated.

**Lifetimes** are bounded at verification: ``exp - iat`` and ``exp - now`` may not exceed the
maximum lifetime, so a token with ``exp=10^30`` is refused however validly it is signed.

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
from tenant_access.security.secret import Secret, plain
from tenant_access.security.signing_keys import OwnKey, SigningKeyring, load_current
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
#: The default maximum token lifetime (``--max-token-lifetime``), enforced when issuing and verifying.
MAX_LIFETIME = 24 * 3600
SIGNING_KEY_FILE = "signing-key"
SIGNING_KEY_BYTES = 32
APP_IDENTITY_TYPE = "app"
MAX_CLAIM_CHARS = 1024
EMULATOR_SUBJECT = "anonymous"

_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*", re.ASCII)


def load_or_create_signing_key(data_dir: Path, *, create: bool = True) -> Secret[bytes]:
    """The HS256 secret in ``<data_dir>/signing-key`` (mode 0600), made on first start from
    :mod:`secrets`. Tokens survive restarts because the key does. Raises :class:`KeyMaterialError`."""
    return load_current(data_dir, create=create)


def own_audiences(base_url: str) -> tuple[str, ...]:
    """What the server's own audiences are without ``--token-audience``: the Azure management
    audiences (what the Azure SDK asks for) and its public URL, with and without the slash."""
    return (*ARM_AUDIENCES, base_url.rstrip("/"), base_url.rstrip("/") + "/")


def mint(data_dir: Path, base_url: str, sub: str, role: Role | str, scope: str, expires_in: int, *,
         max_lifetime: int = MAX_LIFETIME, aud: str = DEFAULT_AUDIENCE, create: bool = False) -> str:
    """A token of the server whose data directory and public URL these are, as ``tenant-access token``
    makes: signed by its current signing key, issued by its public URL."""
    return issue_token(load_current(data_dir, create=create), sub, role, scope, expires_in, aud=aud,
                       iss=base_url.rstrip("/"), max_lifetime=max_lifetime)


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
    max_lifetime: int = MAX_LIFETIME,
    app: tuple[str, int] | None = None,
) -> str:
    """An HS256 token for ``sub`` with ``role`` on ``scope``, valid for ``expires_in`` seconds.

    ``kid`` defaults to the secret's derived id (:func:`~.verification_keys.signing_key_id`), so a
    verifier holding several secrets during a signing-key rotation picks the right one. Arguments
    are validated (``ValueError``), so a token we issue always passes our own verifier.
    ``app``: (client id, secret generation) of the service principal the token is issued to.
    """
    raw = plain(secret)
    if len(raw) < MIN_HMAC_BYTES:
        raise ValueError(f"the signing secret must be at least {MIN_HMAC_BYTES} bytes")
    if not isinstance(sub, str) or not 0 < len(sub) <= 256:
        raise ValueError("sub must be 1 to 256 characters")
    if isinstance(expires_in, bool) or not isinstance(expires_in, int) or not 0 < expires_in <= max_lifetime:
        raise ValueError(f"expires_in must be 1 to {max_lifetime} seconds (the maximum token lifetime)")
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
    if app is not None:
        claims.update({"idtyp": APP_IDENTITY_TYPE, "azp": app[0], "sgen": app[1]})
    import jwt

    headers = {"kid": kid if kid is not None else signing_key_id(raw)}
    return jwt.encode(claims, raw, algorithm="HS256", headers=headers)


@dataclass(frozen=True, slots=True)
class Verified:
    """A verified token: who it speaks for, until when that answer holds (its ``exp``, or sooner
    when the key that signed it is retired), and what a caller must still re-check when it reuses
    the answer: the keyring ``epoch`` it was verified under (own tokens) and the service principal
    (client id, secret generation) it was issued to."""

    principal: Principal
    until: float
    epoch: int | None = None
    app: tuple[str, int] | None = None


@dataclass(frozen=True, slots=True)
class TokenVerifier:
    """Checks bearer tokens and turns them into a :class:`Principal`.

    ``keys``: other parties' verification keys (``--token-keys``); ``own``: the server's own
    signing keys, whose tokens must be issued by ``own_issuer``.
    ``audiences``: accepted ``aud`` values, any one suffices; empty means ``aud`` is not checked.
    ``issuer`` / ``issuers``: the accepted ``iss`` of tokens verified by ``keys``; none given means
    ``iss`` is not checked for them.
    ``max_lifetime``: the longest a token may live (``exp - iat``) or have left (``exp - now``).
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
    issuers: tuple[str, ...] = ()
    own: SigningKeyring | None = None
    own_issuer: str | None = None
    max_lifetime: int = MAX_LIFETIME

    def __post_init__(self) -> None:
        if not self.emulate and not self.keys and self.own is None:
            raise KeyMaterialError("token verification needs at least one key (or emulator mode)")
        if self.own is not None and not self.own_issuer:
            raise ValueError("the server's own keys need its own issuer")
        if not 0 <= self.leeway <= 600:
            raise ValueError("leeway must be 0 to 600 seconds")
        if self.max_lifetime <= 0:
            raise ValueError("the maximum lifetime must be positive")
        if self.issuer is not None:
            object.__setattr__(self, "issuers", (*self.issuers, self.issuer))
        if self.default_scope is not None:
            object.__setattr__(self, "default_scope", normalize_scope(self.default_scope))

    @classmethod
    def with_keys(
        cls,
        keys: Iterable[VerificationKey],
        *,
        audiences: Iterable[str] = ARM_AUDIENCES,
        issuer: str | None = None,
        issuers: Iterable[str] = (),
        leeway: int = DEFAULT_LEEWAY,
        own: SigningKeyring | None = None,
        own_issuer: str | None = None,
        max_lifetime: int = MAX_LIFETIME,
    ) -> TokenVerifier:
        return cls(tuple(keys), tuple(audiences), issuer, leeway, issuers=tuple(issuers), own=own,
                   own_issuer=own_issuer, max_lifetime=max_lifetime)

    @classmethod
    def emulator(
        cls,
        *,
        audiences: Iterable[str] = ARM_AUDIENCES,
        issuer: str | None = None,
        issuers: Iterable[str] = (),
        leeway: int = DEFAULT_LEEWAY,
        default_role: Role = Role.OWNER,
        default_scope: str = "/",
        max_lifetime: int = MAX_LIFETIME,
    ) -> TokenVerifier:
        """Signatures ignored, everything else checked; see the module docstring for why."""
        return cls((), tuple(audiences), issuer, leeway, True, default_role, default_scope, tuple(issuers),
                   max_lifetime=max_lifetime)

    def verify(self, token: str, *, now: float | None = None) -> Principal:
        """The principal ``token`` speaks for, or :class:`InvalidCredential` whatever went wrong."""
        return self.check(token, now=now).principal

    def verify_until(self, token: str, *, now: float | None = None) -> tuple[Principal, float]:
        """:meth:`verify`, and the time until which the answer holds (see :meth:`check`)."""
        verified = self.check(token, now=now)
        return verified.principal, verified.until

    def check(self, token: str, *, now: float | None = None) -> Verified:
        """Everything about ``token`` a caller needs to remember it safely (see :class:`Verified`)."""
        moment = time.time() if now is None else now
        try:
            header, claims = _decode_unverified(token)
            own: OwnKey | None = None
            epoch = None
            if not self.emulate:
                if self.own is not None:
                    epoch = self.own.epoch
                own = self._check_signature(token, header, moment)
            self._check_claims(claims, moment, own is not None)
            until = float(claims["exp"]) if own is None else min(float(claims["exp"]), own.valid_until)
            app = self._app(claims) if own is not None else None
            return Verified(self._principal(claims), until, epoch if own is not None else None, app)
        except InvalidCredential:
            raise
        except (ValueError, TypeError, KeyError, OverflowError, RecursionError) as exc:
            # Fail closed on anything odd the parsers raise; the type name is enough for debugging
            # and, unlike the message, cannot echo part of the token.
            raise InvalidCredential(f"bearer: malformed ({type(exc).__name__})") from None

    def _check_signature(self, token: str, header: Mapping[str, Any], now: float) -> OwnKey | None:
        """The own key that signed ``token`` (``None``: one of ``keys`` did), or :class:`InvalidCredential`."""
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALGORITHMS:
            raise InvalidCredential("bearer: algorithm not accepted")
        if kid is not None and not isinstance(kid, str):
            raise InvalidCredential("bearer: kid is not a string")
        own_keys = self.own.own_keys(now) if self.own is not None else ()
        candidates: list[tuple[VerificationKey, OwnKey | None]] = [(o.key, o) for o in own_keys]
        candidates += [(k, None) for k in self.keys]
        candidates = [(k, o) for k, o in candidates
                      if k.algorithm == alg and (kid is None or k.kid in (None, kid))]
        if not candidates:
            raise InvalidCredential(f"bearer: no {alg} key" + (" with that kid" if kid is not None else ""))
        import jwt

        for key, own in candidates:
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
            return own
        raise InvalidCredential("bearer: signature matches no key")

    def _check_claims(self, claims: Mapping[str, Any], now: float, own: bool) -> None:
        exp = _number(claims, "exp")
        if exp is None:
            raise InvalidCredential("bearer: no exp")
        if now - self.leeway >= exp:
            raise InvalidCredential("bearer: expired")
        if exp - now > self.max_lifetime + self.leeway:
            raise InvalidCredential("bearer: expires too far ahead (exp)")
        nbf = _number(claims, "nbf")
        if nbf is not None and nbf > now + self.leeway:
            raise InvalidCredential("bearer: not yet valid (nbf)")
        iat = _number(claims, "iat")
        if iat is not None and iat > now + self.leeway:
            raise InvalidCredential("bearer: issued in the future (iat)")
        if iat is not None and exp - iat > self.max_lifetime:
            raise InvalidCredential("bearer: lifetime too long (exp - iat)")
        if self.audiences:
            aud = claims.get("aud")
            given = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
            if not any(isinstance(a, str) and a in self.audiences for a in given):
                raise InvalidCredential("bearer: audience not accepted")
        if own:
            if claims.get("iss") != self.own_issuer:
                raise InvalidCredential("bearer: issuer not accepted (not this server's own)")
        elif self.issuers and claims.get("iss") not in self.issuers:
            raise InvalidCredential("bearer: issuer not accepted")

    def _app(self, claims: Mapping[str, Any]) -> tuple[str, int] | None:
        """The service principal an own token was issued to, if any."""
        if claims.get("idtyp") != APP_IDENTITY_TYPE:
            return None
        client_id, generation = _text(claims, "azp"), claims.get("sgen")
        if client_id is None or isinstance(generation, bool) or not isinstance(generation, int):
            raise InvalidCredential("bearer: app token without azp or sgen")
        return client_id, generation

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
