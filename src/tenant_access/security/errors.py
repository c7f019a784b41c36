"""The exceptions of the security package, in one tree::

    SecurityError
    ├── InvalidCredential    a bearer token, SAS or client secret was not accepted (answer 401)
    ├── KeyMaterialError     a configured key (file, variable, PEM, JWKS) is missing, garbled or too open
    │   └── MasterKeyError   ... and it is the master key that encrypts keys at rest
    └── DecryptionError      a stored ciphertext cannot be authenticated: tampered, moved, garbled
        └── UnknownMasterKey ... because it was encrypted under a master key that is not loaded

Credential failures are deliberately one class with one public message: telling a caller *why* its
token failed (expired? wrong key? unknown kid?) helps an attacker more than an honest client. The
reason is kept on :attr:`InvalidCredential.reason` for debug logs and never contains the credential.
"""

from __future__ import annotations

from tenant_access.domain.errors import AuthenticationFailed


class SecurityError(Exception):
    """Base of everything this package raises on purpose."""


class InvalidCredential(SecurityError, AuthenticationFailed):
    """A credential was rejected. Subclasses the domain's 401 so the HTTP layer answers it unchanged.

    ``str()`` and the wire message are the same whatever went wrong; only :attr:`reason` differs.
    """

    PUBLIC_MESSAGE = "The access token is invalid."

    def __init__(self, reason: str) -> None:
        AuthenticationFailed.__init__(self, self.PUBLIC_MESSAGE, azure_code="InvalidAuthenticationToken")
        #: Why, for debug logs only. Built from fixed phrases and key ids, never from the credential.
        self.reason = reason

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reason={self.reason!r})"


class KeyMaterialError(SecurityError):
    """A configured key cannot be used. Raised at start-up so the server refuses to run half-secured."""


class MasterKeyError(KeyMaterialError):
    """The master key is missing, garbled, of the wrong length, or its file is readable by others."""


class DecryptionError(SecurityError):
    """A ciphertext failed authentication. Never accompanied by partial plaintext."""


class UnknownMasterKey(DecryptionError):
    """The ciphertext names a master key id the keyring does not hold: a wrong master key was
    configured, or a rotation's old key was dropped before every value was re-encrypted."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"the value was encrypted under master key {key_id}, which is not loaded")
        self.key_id = key_id
