"""Who is calling, and may they: authentication and authorization for every route.

Three credentials are understood (``docs/security.md`` has the threat model):

* ``Bearer <JWT>``: signed by the server's own signing secret (``tenant-access token``, the token
  endpoint) or by configured RSA/EC/HMAC keys; in ``--auth emulator`` any well-formed unexpired
  token is accepted whatever its signature, as Azurite's ``--oauth basic`` does.
* ``SharedAccessSignature uid=...&ex=...&sn=...``: signed with a key of the addressed service's
  ``access`` configuration; always fully checked, in every mode but ``none``.
* nothing, only with ``--auth none``.

Every failure answers the same 401, whatever went wrong, so a caller cannot tell a bad signature
from an unknown key id; failures are counted per client address and answered 429 past a limit.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tenant_access.config import Settings
from tenant_access.domain.errors import AuthenticationFailed, Forbidden, TooManyRequests
from tenant_access.domain.models import AccessName, ServiceRef
from tenant_access.http.request import Request
from tenant_access.http.routing import Route
from tenant_access.memo import Memo
from tenant_access.security import sas
from tenant_access.security.authorization import Principal, Role, authorize
from tenant_access.security.errors import InvalidCredential
from tenant_access.security.headers import Scheme, read_authorization
from tenant_access.security.limits import FailureLimiter, RateLimiter
from tenant_access.security.tokens import TokenVerifier
from tenant_access.storage.base import Store

log = logging.getLogger("tenant_access.auth")

#: How many verified bearer tokens are remembered (a few hundred bytes each).
VERIFIED_TOKENS = 4096
#: How many authorization decisions are remembered, and for paths of at most how many bytes.
DECISIONS = 8192
MAX_REMEMBERED_PATH = 512
UNAUTHORIZED_MESSAGE = (
    "Authentication failed. Send 'Authorization: Bearer <token>' or "
    "'Authorization: SharedAccessSignature uid=...&ex=...&sn=...'."
)
#: Every refused credential gets exactly this challenge, whatever the reason.
CHALLENGE = 'Bearer realm="tenant-access", error="invalid_token", SharedAccessSignature realm="tenant-access"'


@dataclass(frozen=True, slots=True)
class _VerifiedSignature:
    service: tuple[str, str, str]
    uid: str
    version_id: str
    expiry: _dt.datetime
    principal: Principal


class Unauthenticated(AuthenticationFailed):
    def __init__(self, reason: str = "") -> None:
        super().__init__(UNAUTHORIZED_MESSAGE, azure_code="AuthenticationFailed")
        self.headers["WWW-Authenticate"] = CHALLENGE
        #: Why, for the audit record and the log (never the answer): our own fixed phrases.
        self.reason = reason


def forbidden(principal: Principal, operation: str) -> Forbidden:
    """ARM's wording, which names the caller and the action but nothing about the resource."""
    return Forbidden(
        f"The client '{principal.sub}' with role '{principal.role.value}' does not have authorization to perform "
        f"action '{operation}' over this scope, or the scope is outside '{principal.scope}'.",
        azure_code="AuthorizationFailed",
    )


@dataclass
class Authenticator:
    mode: str
    verifier: TokenVerifier | None
    store: Store
    failures: FailureLimiter
    requests: RateLimiter
    regenerations: RateLimiter
    _verified: dict[str, tuple[Principal, float]] = field(default_factory=dict)
    _signatures: dict[str, _VerifiedSignature] = field(default_factory=dict)
    _decisions: Memo[tuple[Principal, str, bytes], bool] = field(default_factory=lambda: Memo(DECISIONS))
    #: A token of the server's own signing key, verified once by :meth:`warm` and then dropped.
    warm_token: str | None = field(default=None, repr=False)
    #: Told of every refused or throttled credential (the Authorization header, the reason), for metrics.
    on_failure: Callable[[str | None, str], None] | None = None

    async def authenticate(self, request: Request, route: Route, params: dict[str, str]) -> Principal:
        if self.mode == "none":
            return Principal.anonymous()
        decision = self.failures.check(request.client)
        if not decision.allowed:
            if self.on_failure is not None:
                self.on_failure(request.headers.get("authorization"), "throttled")
            raise TooManyRequests(
                "Too many failed authentication attempts from this address; retry later.",
                retry_after=decision.retry_after,
            )
        header = request.headers.get("authorization")
        try:
            if header is None:
                raise InvalidCredential("no credential")
            # A bearer token seen before is recognised by the whole header, before any parsing.
            remembered = self._verified.get(header)
            if remembered is not None and time.time() < remembered[1]:
                principal = remembered[0]
            else:
                credential = read_authorization(header)
                if credential is None:
                    raise InvalidCredential("no credential")
                if credential.scheme is Scheme.BEARER:
                    principal = self._bearer(credential.value, header)
                else:
                    principal = await self._sas(credential.value, params)
        except InvalidCredential as exc:
            self.failures.record_failure(request.client)
            log.info("authentication failed from %s: %s", request.client, exc.reason)
            if self.on_failure is not None:
                self.on_failure(request.headers.get("authorization"), exc.reason)
            raise Unauthenticated(exc.reason) from None
        if log.isEnabledFor(logging.DEBUG):
            log.debug("request %s: %s principal %s, role %s, scope %s", request.request_id, principal.kind.value,
                      principal.sub, principal.role.value, principal.scope)
        return principal

    def warm(self) -> None:
        """Load what the first request would otherwise load (PyJWT, the HMAC and SAS code paths), so
        that the first call after start is as fast as any other; costs a few tens of milliseconds
        of start-up, before the server accepts connections."""
        if self.verifier is None:
            return
        import jwt  # noqa: F401

        from tenant_access.security import sas as _sas  # noqa: F401

        with contextlib.suppress(InvalidCredential):
            self.verifier.verify("e30.e30.e30")
        if self.warm_token is not None:
            # A whole verification (decoding, HMAC, claims) of a short-lived token made for this
            # alone and forgotten at once; nothing is remembered of it.
            with contextlib.suppress(InvalidCredential):
                self.verifier.verify(self.warm_token)
            self.warm_token = None

    def _bearer(self, token: str, header: str) -> Principal:
        """Verified tokens are remembered (by the whole ``Authorization`` header) until they
        expire: a signature check costs more than the rest of a read, and a token's verdict cannot
        change before its ``exp`` (keys are fixed for the life of the process). Only successes are
        remembered, and only a bounded number."""
        assert self.verifier is not None
        principal, expires = self.verifier.verify_until(token, now=time.time())
        if len(self._verified) >= VERIFIED_TOKENS:
            self._verified.pop(next(iter(self._verified)))
        self._verified[header] = (principal, expires)
        return principal

    async def _sas(self, value: str, params: dict[str, str]) -> Principal:
        """A SAS is valid only for routes of its own service, while ``access`` is enabled, until
        expiry, and only while the key it was signed with is current.

        A verified signature is remembered with the key *version* that matched; it is accepted again
        only while that version is still one of the configuration's two current keys (read through
        the store's invalidated cache), the configuration is enabled, its principal id unchanged and
        the expiry ahead. So a regeneration revokes it exactly as a full check would.
        """
        if "serviceName" not in params:
            raise InvalidCredential("sas: this route is not a service's")
        ref = ServiceRef(params["subscriptionId"], params["resourceGroupName"], params["serviceName"])
        # Cached: the store drops an entry as soon as it learns of a change (see Store.get_secrets_cached).
        secrets = await self.store.get_secrets_cached(ref, AccessName.ACCESS)
        now = _dt.datetime.now(_dt.UTC)
        if secrets is None or not secrets.config.enabled:
            # The checks that need no key first, as for a service that exists: a malformed or expired
            # signature fails for the same reason whether or not the service is there.
            sas.check_expiry(sas.parse_sas(value), now)
            raise InvalidCredential("sas: no enabled access configuration")
        config = secrets.config
        remembered = self._signatures.get(value)
        if (remembered is not None and remembered.service == ref.key and remembered.uid == config.principal_id
                and remembered.version_id in (config.primary_version_id, config.secondary_version_id)
                and now < remembered.expiry):
            return remembered.principal
        token = sas.parse_sas(value)
        sas.check_expiry(token, now)
        if token.uid != config.principal_id:
            raise InvalidCredential("sas: uid is not the configuration's principal id")
        version_id = sas.verify_sas(
            token,
            [(config.primary_version_id, secrets.primary_key), (config.secondary_version_id, secrets.secondary_key)],
            now,
        )
        principal = Principal.for_sas(token.uid, ref.resource_id)
        if len(self._signatures) >= VERIFIED_TOKENS:
            self._signatures.pop(next(iter(self._signatures)))
        self._signatures[value] = _VerifiedSignature(ref.key, token.uid, version_id, token.expiry, principal)
        return principal

    def authorize(self, principal: Principal, route: Route, request: Request) -> None:
        """The decision is a pure function of principal, operation and path, so it is remembered
        for short paths (a bounded number of them)."""
        key = (principal, route.operation, request.raw_path)
        allowed = self._decisions.get(key)
        if allowed is None:
            allowed = authorize(principal, route.operation, request.segments)
            if len(request.raw_path) <= MAX_REMEMBERED_PATH:
                self._decisions.remember(key, allowed)
        if not allowed:
            raise forbidden(principal, route.operation)
        if self.requests.enabled or self.regenerations.enabled:
            self._throttle(principal, route)

    def _throttle(self, principal: Principal, route: Route) -> None:
        decision = self.requests.acquire(principal.sub)
        if decision.allowed and "regenerate" in route.operation:
            decision = self.regenerations.acquire(principal.sub)
        if not decision.allowed:
            raise TooManyRequests("Request rate limit reached; retry later.", retry_after=decision.retry_after)


def build(settings: Settings, store: Store) -> Authenticator:
    """The authenticator the settings describe; reads key files once, at start."""
    verifier = None
    warm_token = None
    if settings.auth != "none":
        from tenant_access.security.tokens import ARM_AUDIENCES, issue_token, load_or_create_signing_key
        from tenant_access.security.verification_keys import hmac_key, load_jwks, load_pem_keys

        audiences = tuple(a for a in (settings.token_audience or "").split(",") if a) or ARM_AUDIENCES
        if settings.auth == "emulator":
            verifier = TokenVerifier.emulator(audiences=audiences, issuer=settings.token_issuer,
                                              default_role=Role.OWNER, default_scope="/")
        else:
            signing_key = load_or_create_signing_key(settings.data_dir)
            keys = [hmac_key(signing_key)]
            warm_token = issue_token(signing_key, "warm-up", Role.READER, "/", 60, iss=settings.token_issuer)
            for path in token_key_paths(settings.token_keys):
                keys += load_jwks(path) if path.suffix.lower() == ".json" else load_pem_keys(path)
            verifier = TokenVerifier.with_keys(keys, audiences=audiences, issuer=settings.token_issuer)
    return Authenticator(
        mode=settings.auth,
        verifier=verifier,
        store=store,
        failures=FailureLimiter(settings.auth_failures_per_minute),
        requests=RateLimiter(settings.rate_limit or None),
        regenerations=RateLimiter(settings.regenerate_rate_limit or None),
        warm_token=warm_token,
    )


def token_key_paths(raw: str | None) -> tuple[Path, ...]:
    return tuple(Path(p).expanduser() for p in (raw or "").split(",") if p.strip())
