"""Reading the ``Authorization`` header: which scheme, and the credential after it.

Kept apart from the verifiers so the HTTP layer makes one call, then dispatches on the scheme.
Schemes are case-insensitive (RFC 9110 §11.1); the credential is returned untouched.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from tenant_access.security.errors import InvalidCredential

MAX_HEADER_CHARS = 16 * 1024 + 64


class Scheme(enum.StrEnum):
    BEARER = "Bearer"
    SAS = "SharedAccessSignature"


@dataclass(frozen=True, slots=True)
class Credential:
    """The parts of an ``Authorization`` header. ``value`` is a credential, so it is not in ``repr``."""

    scheme: Scheme
    value: str = field(repr=False)


def read_authorization(header: str | None) -> Credential | None:
    """``None`` when there is no header (the caller may allow anonymous access or answer 401);
    :class:`InvalidCredential` when there is one we cannot use."""
    if header is None or not header.strip():
        return None
    if len(header) > MAX_HEADER_CHARS:
        raise InvalidCredential("authorization header too long")
    name, _, value = header.strip().partition(" ")
    scheme = _SCHEMES.get(name.lower())
    if scheme is None:
        raise InvalidCredential("unsupported authorization scheme")
    value = value.strip()
    if not value:
        raise InvalidCredential(f"{scheme.value} without a credential")
    return Credential(scheme, value)


_SCHEMES = {scheme.value.lower(): scheme for scheme in Scheme}
