from __future__ import annotations

import subprocess
import sys

import pytest

from tenant_access.domain.errors import AuthenticationFailed, TenantAccessError
from tenant_access.security.errors import (
    DecryptionError,
    InvalidCredential,
    KeyMaterialError,
    MasterKeyError,
    SecurityError,
    UnknownMasterKey,
)


def test_invalid_credential_is_the_domains_401_with_one_public_message() -> None:
    first, second = InvalidCredential("sas: expired"), InvalidCredential("bearer: no kid")
    for error in (first, second):
        assert isinstance(error, AuthenticationFailed)
        assert isinstance(error, TenantAccessError)
        assert isinstance(error, SecurityError)
        assert error.status == 401
        assert error.azure_code == "InvalidAuthenticationToken"
    assert (first.message, str(first), first.details) == (second.message, str(second), second.details)
    assert first.reason != second.reason
    assert "sas: expired" in repr(first)


def test_tree() -> None:
    assert issubclass(MasterKeyError, KeyMaterialError)
    assert issubclass(UnknownMasterKey, DecryptionError)
    for cls in (KeyMaterialError, DecryptionError):
        assert issubclass(cls, SecurityError)
        assert not issubclass(cls, TenantAccessError)  # faults of ours or of configuration, never 4xx
    assert UnknownMasterKey("1a2b3c4d").key_id == "1a2b3c4d"


@pytest.mark.parametrize("module", ["sas", "tokens", "authorization", "limits", "headers",
                                    "service_principals", "encryption"])
def test_importing_a_block_does_not_load_pyjwt(module: str) -> None:
    """PyJWT costs ~80 ms of the 0.5 s start-up budget; it loads when the first token is seen."""
    code = f"import sys, tenant_access.security.{module}; print('jwt' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
