"""What a refused credential is told: an RFC 6750 challenge and a one-line description.

A bare 401 sends the user to the server log for the reason (a token made for another data
directory looked exactly like no token at all). So a *bearer* failure names its kind: missing,
malformed, expired, not yet valid, signed with a key this server does not have, another audience,
another issuer, claims lacking. None of these helps an attacker: each is something the holder of the
token can read from the token itself, and a forger learns nothing about our keys.

A *SharedAccessSignature* failure is always described the same way, whatever went wrong: its
checks start by looking up the addressed service, so "no such service" and "bad signature" would
otherwise tell an unauthenticated caller which services exist (issue 12).

The description goes into the ``error_description`` of ``WWW-Authenticate`` and into the error
message of the active wire format; with no credential at all there is no error code (RFC 6750
section 3.1: a request without authentication information gets none).
"""

from __future__ import annotations

from dataclasses import dataclass

REALM = 'realm="tenant-access"'
HOW = "Send 'Authorization: Bearer <token>' or 'Authorization: SharedAccessSignature uid=...&ex=...&sn=...'."

#: (substring of an InvalidCredential reason, description), first match wins. The reasons are our own
#: constant phrases (security/tokens.py, security/headers.py, http/auth.py).
_BEARER: tuple[tuple[str, str], ...] = (
    ("too long", "the credential is too long"),
    ("expired", "the bearer token has expired"),
    ("not yet valid", "the bearer token is not valid yet (nbf)"),
    ("issued in the future", "the bearer token is not valid yet (iat)"),
    ("signature matches no", "the bearer token is signed with a key this server does not have"),
    ("rejected by jws", "the bearer token is signed with a key this server does not have"),
    ("algorithm not accepted", "the bearer token is signed with a key this server does not have"),
    (" key with that kid", "the bearer token is signed with a key this server does not have"),
    ("audience not accepted", "the bearer token is for another audience (aud)"),
    ("issuer not accepted", "the bearer token is from an issuer this server does not accept (iss)"),
    ("no role", "the bearer token lacks a role, scope or sub claim"),
    ("no scope", "the bearer token lacks a role, scope or sub claim"),
    ("no sub", "the bearer token lacks a role, scope or sub claim"),
    ("no exp", "the bearer token lacks an exp claim"),
    ("role, scope or sub", "the bearer token has a role, scope or sub claim that is not valid"),
)
MALFORMED_BEARER = "the bearer token is malformed (not a signed JWT)"
SAS = "the SharedAccessSignature is not valid for this resource"
UNSUPPORTED = "unsupported authorization scheme"


@dataclass(frozen=True, slots=True)
class Refusal:
    """``error`` is the RFC 6750 code, ``None`` when no credential was sent."""

    error: str | None
    description: str
    scheme: str = "Bearer"

    @property
    def message(self) -> str:
        """The wire message: the kind of failure first, then how to authenticate."""
        if self.error is None:
            return f"Authentication failed: no credential was sent. {HOW}"
        return f"Authentication failed: {self.description}. {HOW}"

    @property
    def challenge(self) -> str:
        """Both schemes are offered; the error parameters go on the scheme that was tried."""
        bearer, sas = f"Bearer {REALM}", f"SharedAccessSignature {REALM}"
        if self.error is not None:
            params = f', error="{self.error}", error_description="{self.description}"'
            if self.scheme == "SharedAccessSignature":
                sas += params
            else:
                bearer += params
        return f"{bearer}, {sas}"


def refusal(header: str | None, reason: str) -> Refusal:
    """The refusal for an ``Authorization`` header refused with ``reason`` (never echoed)."""
    if header is None or not header.strip() or reason == "no credential":
        return Refusal(None, "no credential")
    name = header.strip().split(" ", 1)[0].lower()
    if name == "sharedaccesssignature":
        return Refusal("invalid_token", SAS, "SharedAccessSignature")
    if name != "bearer":
        return Refusal("invalid_request", UNSUPPORTED)
    if "without a credential" in reason:
        return Refusal("invalid_request", "the Bearer scheme was sent without a token")
    lowered = reason.lower()
    for needle, description in _BEARER:
        if needle in lowered:
            return Refusal("invalid_token", description)
    if lowered.startswith("bearer: no ") and lowered.endswith(" key"):
        return Refusal("invalid_token", "the bearer token is signed with a key this server does not have")
    return Refusal("invalid_token", MALFORMED_BEARER)
