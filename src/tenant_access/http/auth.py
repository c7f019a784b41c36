"""Who is calling, and may they: authentication and authorization for every route.

Three credentials are understood (``docs/security.md`` has the threat model):

* ``Bearer <JWT>``: signed by the server's own signing secret (``tenant-access token``, the token
  endpoint) or by configured RSA/EC/HMAC keys; in ``--auth emulator`` any well-formed unexpired
  token is accepted whatever its signature, as Azurite's ``--oauth basic`` does.
* ``SharedAccessSignature uid=...&ex=...&sn=...``: signed with a key of the addressed service's
  ``access`` configuration; always fully checked, in every mode but ``none``.
* nothing, only with ``--auth none``.

A refused bearer token is told the kind of failure (expired, another key, another audience...;
:mod:`.challenges`), a refused SharedAccessSignature always the same thing, so that nothing tells
whether a service exists; failures are counted per client address and answered 429 past a limit.
The limit is checked again after every await and before the failure is recorded, with no await
in between, so a burst of concurrent bad credentials cannot all pass the check before the first
failure counts.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tenant_access.clock import Clock
from tenant_access.config import Settings
from tenant_access.domain.errors import AuthenticationFailed, FieldError, Forbidden, TooManyRequests, ValidationFailed
from tenant_access.domain.models import AccessName, Secrets, ServiceRef
from tenant_access.http.challenges import Refusal, refusal
from tenant_access.http.request import Request
from tenant_access.http.routing import Route
from tenant_access.memo import Memo
from tenant_access.security import sas
from tenant_access.security.authorization import Principal, Role, authorize
from tenant_access.security.errors import InvalidCredential
from tenant_access.security.gate import VerificationGate
from tenant_access.security.headers import Scheme, read_authorization
from tenant_access.security.limits import FailureLimiter, RateLimiter
from tenant_access.security.signing_keys import SigningKeyring
from tenant_access.security.tokens import TokenVerifier, Verified
from tenant_access.storage.base import Store
from tenant_access.usage import UsageRecorder

log = logging.getLogger("tenant_access.auth")

#: How many verified bearer tokens are remembered (a few hundred bytes each).
VERIFIED_TOKENS = 4096
#: How many authorization decisions are remembered, and for paths of at most how many bytes.
DECISIONS = 8192
MAX_REMEMBERED_PATH = 512


@dataclass(frozen=True, slots=True)
class _VerifiedSignature:
    service: tuple[str, str, str]
    uid: str
    version_id: str
    expiry: _dt.datetime
    principal: Principal


class Unauthenticated(AuthenticationFailed):
    def __init__(self, refused: Refusal, reason: str = "") -> None:
        super().__init__(refused.message, azure_code="AuthenticationFailed")
        self.headers["WWW-Authenticate"] = refused.challenge
        #: Why, for the audit record and the log (our own fixed phrases); the answer says only
        #: what :mod:`.challenges` lets it say.
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
    _verified: dict[str, Verified] = field(default_factory=dict)
    _signatures: dict[str, _VerifiedSignature] = field(default_factory=dict)
    _decisions: Memo[tuple[Principal, str, bytes], bool] = field(default_factory=lambda: Memo(DECISIONS))
    #: Makes a token of the server's own signing key, verified once by :meth:`warm` and then dropped.
    warm_token: Callable[[], str] | None = field(default=None, repr=False)
    #: Told of every refused or throttled credential (the Authorization header, the reason), for metrics.
    on_failure: Callable[[str | None, str], None] | None = None
    #: The server's own signing keys (``None`` with ``--auth none``): the token endpoint signs with them.
    signing: SigningKeyring | None = None
    #: How far ahead a shared access signature's expiry may lie.
    max_sas_lifetime: _dt.timedelta | None = None
    #: Client-secret verifications (scrypt) at the token endpoint: bounded, one at a time per address.
    sign_ins: VerificationGate = field(default_factory=VerificationGate)
    #: "Now" for shared access signatures (their expiry, the keys' expiry): the emulator can move it.
    clock: Clock = field(default_factory=Clock)
    #: Told of every accepted signature's key version (key usage, issue 14); ``None``: not counted.
    usage: UsageRecorder | None = None

    async def authenticate(self, request: Request, route: Route, params: dict[str, str]) -> Principal:
        if request.repeats("authorization"):
            raise ValidationFailed(
                "Send one Authorization header, not several.",
                details=[FieldError("header.Authorization", "given more than once")],
                target="Authorization",
            )
        if self.mode == "none":
            return Principal.anonymous()
        self._admit(request)
        header = request.headers.get("authorization")
        try:
            if header is None:
                raise InvalidCredential("no credential")
            # A bearer token seen before is recognised by the whole header, before any parsing.
            remembered = self._verified.get(header)
            if remembered is not None and self._still_valid(remembered):
                principal = remembered.principal
                if remembered.app is not None:
                    await self._check_app(remembered.app)
            else:
                credential = read_authorization(header)
                if credential is None:
                    raise InvalidCredential("no credential")
                if credential.scheme is Scheme.BEARER:
                    principal = await self._bearer(credential.value, header)
                else:
                    principal = await self._sas(credential.value, params, request)
        except InvalidCredential as exc:
            self.failures.record_failure(request.client)
            log.info("authentication failed from %s: %s", request.client, exc.reason)
            if self.on_failure is not None:
                self.on_failure(request.headers.get("authorization"), exc.reason)
            raise Unauthenticated(refusal(header, exc.reason), exc.reason) from None
        if log.isEnabledFor(logging.DEBUG):
            log.debug("request %s: %s principal %s, role %s, scope %s", request.request_id, principal.kind.value,
                      principal.sub, principal.role.value, principal.scope)
        return principal

    def _admit(self, request: Request) -> None:
        """429 when the address has used up its failures; lock-free for an address without any."""
        decision = self.failures.check(request.client)
        if not decision.allowed:
            if self.on_failure is not None:
                self.on_failure(request.headers.get("authorization"), "throttled")
            raise TooManyRequests(
                "Too many failed authentication attempts from this address; retry later.",
                retry_after=decision.retry_after,
            )

    def warm(self) -> None:
        """Load what the first request would otherwise load (PyJWT, the HMAC and SAS code paths), so
        that the first call after start is as fast as any other. It costs a few tens of
        milliseconds, so the server runs it on a thread of its own while it opens the store
        (:meth:`~tenant_access.http.app.App.startup`), and waits for it before answering."""
        if self.verifier is None:
            return
        import jwt  # noqa: F401

        from tenant_access.security import sas as _sas  # noqa: F401

        with contextlib.suppress(InvalidCredential):
            self.verifier.verify("e30.e30.e30")
        make, self.warm_token = self.warm_token, None
        if make is not None:
            # A whole verification (decoding, HMAC, claims) of a short-lived token made for this
            # alone and forgotten at once; nothing is remembered of it.
            with contextlib.suppress(InvalidCredential):
                self.verifier.verify(make())

    async def _bearer(self, token: str, header: str) -> Principal:
        """Verified tokens are remembered (by the whole ``Authorization`` header) until they
        expire: a signature check costs more than the rest of a read. What can change before
        ``exp`` is checked again on every use (:meth:`_still_valid`, :meth:`_check_app`): the
        server's own signing keys (a rotation, a retired key's window closing) and the service
        principal a token was issued to. Only successes are remembered, and only a bounded number."""
        assert self.verifier is not None
        verified = self.verifier.check(token, now=time.time())
        if verified.app is not None:
            await self._check_app(verified.app)
        if len(self._verified) >= VERIFIED_TOKENS:
            self._verified.pop(next(iter(self._verified)))
        self._verified[header] = verified
        return verified.principal

    def _still_valid(self, remembered: Verified) -> bool:
        if time.time() >= remembered.until:
            return False
        own = self.verifier.own if self.verifier is not None else None
        if remembered.epoch is not None and own is not None:
            own.refresh()
            return remembered.epoch == own.epoch
        return True

    async def _check_app(self, app: tuple[str, int]) -> None:
        """A service principal's token is good only while the principal exists, is enabled and has
        the secret generation the token was issued under. Read through the store's cache, which
        every replica drops as soon as it learns of a change (as for SAS keys), so a disabled,
        deleted or rotated principal's tokens are refused everywhere within a second."""
        found = await self.store.get_principal_cached(app[0])
        if found is None or found.disabled_at is not None or found.generation != app[1]:
            raise InvalidCredential("bearer: service principal disabled, deleted or its secret rotated")

    async def _sas(self, value: str, params: dict[str, str], request: Request) -> Principal:
        """A SAS is valid only for routes of its own service, while ``access`` is enabled, until
        expiry, and only while the key it was signed with is current.

        A verified signature is remembered with the key *version* that matched; it is accepted again
        only while that version is still one of the configuration's two current keys (read through
        the store's invalidated cache), the configuration is enabled, its principal id unchanged and
        the expiry ahead. So a regeneration revokes it exactly as a full check would.

        Reading the keys may wait for the database, and other attempts from the same address may
        fail meanwhile: the limit is checked again once they are read, and from there to the
        verdict nothing awaits.
        """
        if "serviceName" not in params:
            raise InvalidCredential("sas: this route is not a service's")
        ref = ServiceRef(params["subscriptionId"], params["resourceGroupName"], params["serviceName"])
        # Cached: the store drops an entry as soon as it learns of a change (see Store.get_secrets_cached).
        secrets = await self.store.get_secrets_cached(ref, AccessName.ACCESS)
        self._admit(request)
        now = self.clock.now()
        if secrets is None or not secrets.config.enabled:
            # The checks that need no key first, as for a service that exists: a malformed or expired
            # signature fails for the same reason whether or not the service is there.
            sas.check_expiry(sas.parse_sas(value), now, max_lifetime=self.max_sas_lifetime)
            raise InvalidCredential("sas: no enabled access configuration")
        config = secrets.config
        remembered = self._signatures.get(value)
        if (remembered is not None and remembered.service == ref.key and remembered.uid == config.principal_id
                and remembered.version_id in (config.primary_version_id, config.secondary_version_id)
                and now < remembered.expiry):
            if secrets.expires_at != _NEVER:
                _check_key_expiry(secrets, remembered.version_id, now)
            if self.usage is not None:
                self.usage.record(remembered.version_id, now)
            return remembered.principal
        token = sas.parse_sas(value)
        sas.check_expiry(token, now, max_lifetime=self.max_sas_lifetime)
        if token.uid != config.principal_id:
            raise InvalidCredential("sas: uid is not the configuration's principal id")
        version_id = sas.verify_sas(
            token,
            [(config.primary_version_id, secrets.primary_key), (config.secondary_version_id, secrets.secondary_key)],
            now,
            max_lifetime=self.max_sas_lifetime,
        )
        principal = Principal.for_sas(token.uid, ref.resource_id)
        if len(self._signatures) >= VERIFIED_TOKENS:
            self._signatures.pop(next(iter(self._signatures)))
        if secrets.expires_at != _NEVER:
            _check_key_expiry(secrets, version_id, now)
        self._signatures[value] = _VerifiedSignature(ref.key, token.uid, version_id, token.expiry, principal)
        if self.usage is not None:
            self.usage.record(version_id, now)
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
        """One bucket per principal *and* the scope it acts on: every SAS caller's subject is its
        configuration's principal id (``integration`` by default), so the subject alone would put
        the callers of unrelated services in one bucket."""
        key = (principal.kind, principal.sub, principal.scope)
        decision = self.requests.acquire(key)
        if decision.allowed and "regenerate" in route.operation:
            decision = self.regenerations.acquire(key)
        if not decision.allowed:
            raise TooManyRequests("Request rate limit reached; retry later.", retry_after=decision.retry_after)


def build(settings: Settings, store: Store) -> Authenticator:
    """The authenticator the settings describe; reads key files once, at start (the server's own
    signing keys are then followed as they rotate)."""
    verifier = None
    warm_token: Callable[[], str] | None = None
    signing = None
    if settings.auth != "none":
        from tenant_access.security.tokens import issue_token, own_audiences
        from tenant_access.security.verification_keys import load_jwks, load_pem_keys

        audiences = (tuple(a for a in (settings.token_audience or "").split(",") if a)
                     or own_audiences(settings.base_url))
        issuers = tuple(i.strip() for i in (settings.token_issuer or "").split(",") if i.strip())
        signing = SigningKeyring(settings.data_dir, settings.max_token_lifetime)
        if settings.auth == "emulator":
            verifier = TokenVerifier.emulator(audiences=audiences, issuers=issuers, default_role=Role.OWNER,
                                              default_scope="/", max_lifetime=settings.max_token_lifetime)
        else:
            own, audience = signing, audiences[0]

            def warm_token() -> str:  # made when warming: issuing one imports PyJWT
                return issue_token(own.current(), "warm-up", Role.READER, "/", 60, aud=audience,
                                   iss=settings.base_url)

            keys = []
            for path in token_key_paths(settings.token_keys):
                keys += load_jwks(path) if path.suffix.lower() == ".json" else load_pem_keys(path)
            verifier = TokenVerifier.with_keys(keys, audiences=audiences, issuers=issuers, own=signing,
                                               own_issuer=settings.base_url,
                                               max_lifetime=settings.max_token_lifetime)
    return Authenticator(
        mode=settings.auth,
        verifier=verifier,
        store=store,
        failures=FailureLimiter(settings.auth_failures_per_minute),
        requests=RateLimiter(settings.rate_limit or None),
        regenerations=RateLimiter(settings.regenerate_rate_limit or None),
        warm_token=warm_token,
        signing=signing,
        max_sas_lifetime=_dt.timedelta(seconds=settings.max_sas_lifetime),
    )


def token_key_paths(raw: str | None) -> tuple[Path, ...]:
    return tuple(Path(p).expanduser() for p in (raw or "").split(",") if p.strip())


#: The keys' expiry without a rotation policy's expiryTime (checked inline: the common case costs no call).
_NEVER = (None, None)


def _check_key_expiry(secrets: Secrets, version_id: str, now: _dt.datetime) -> None:
    """A key past its rotation policy's expiryTime signs nothing (the reason is for the audit
    record; the answer is the same as for any refused signature). The expiry came with the keys,
    from the same cached read, so it costs nothing more and follows a policy change as the keys do."""
    expires = secrets.expires_at[0 if version_id == secrets.config.primary_version_id else 1]
    if expires is not None and now >= expires:
        raise InvalidCredential("sas: the key expired (rotation policy expiryTime)")
