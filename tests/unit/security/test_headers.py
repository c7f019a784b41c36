from __future__ import annotations

import pytest

from tenant_access.security.errors import InvalidCredential
from tenant_access.security.headers import Scheme, read_authorization


@pytest.mark.parametrize("header", [None, "", "   "])
def test_no_header_is_none(header: str | None) -> None:
    assert read_authorization(header) is None


@pytest.mark.parametrize(("header", "scheme", "value"), [
    ("Bearer abc.def.ghi", Scheme.BEARER, "abc.def.ghi"),
    ("bearer   abc  ", Scheme.BEARER, "abc"),
    ("BEARER x", Scheme.BEARER, "x"),
    ("SharedAccessSignature uid=a&ex=b&sn=c", Scheme.SAS, "uid=a&ex=b&sn=c"),
    ("sharedaccesssignature integration&201808020500&sig", Scheme.SAS, "integration&201808020500&sig"),
])
def test_schemes_are_case_insensitive(header: str, scheme: Scheme, value: str) -> None:
    credential = read_authorization(header)
    assert credential is not None
    assert credential.scheme is scheme
    assert credential.value == value


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "SharedAccessSignature",
                                    "Bearerabc", "é abc", "Bearer " + "a" * 20_000])
def test_unusable_headers_raise_the_one_error(header: str) -> None:
    with pytest.raises(InvalidCredential):
        read_authorization(header)


def test_repr_hides_the_credential() -> None:
    credential = read_authorization("Bearer top-secret-token")
    assert "top-secret-token" not in repr(credential)
