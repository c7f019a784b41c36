"""Credentials against a server that checks them: real 401, 403 and 429 answers, and a shared
access signature made by the client from keys the client read."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenant_access.client import (
    AuthenticationError,
    Client,
    PermissionDenied,
    RateLimited,
    ServiceRef,
    SharedAccessSignature,
)
from tests.client.conftest import ClientFactory, bearer_for, new_service_ref
from tests.serverproc import ServerProcess


def test_no_credential_is_an_authentication_error(make_client: ClientFactory, style: str) -> None:
    with pytest.raises(AuthenticationError) as caught:
        make_client(credential=None).get_service(new_service_ref())
    assert caught.value.status == 401
    assert caught.value.code == ("UNAUTHORIZED" if style == "seed" else "AuthenticationFailed")
    assert caught.value.request_id
    assert caught.value.retry_after is None


def test_a_reader_may_not_regenerate(make_client: ClientFactory, service: ServiceRef, style: str) -> None:
    reader = make_client(credential=bearer_for(make_client.data_dir, role="reader", issuer=make_client.issuer))
    assert reader.get_access(service.access()).name == "access"
    with pytest.raises(PermissionDenied) as caught:
        reader.regenerate_primary_key(service.access())
    assert caught.value.status == 403
    assert caught.value.code == ("FORBIDDEN" if style == "seed" else "AuthorizationFailed")


def test_a_shared_access_signature_from_the_access_key_is_accepted(
    make_client: ClientFactory, client: Client, service: ServiceRef,
) -> None:
    target = service.access()
    client.enable(target)
    secrets = client.list_secrets(target)
    assert secrets.principal_id
    signed = make_client(credential=SharedAccessSignature(secrets.principal_id, secrets.primary_key))
    assert signed.get_access(target).enabled is True
    assert signed.regenerate_secondary_key(target).slot == "secondary"

    forged = make_client(credential=SharedAccessSignature(secrets.principal_id, "x" * 88))
    with pytest.raises(AuthenticationError):
        forged.get_access(target)


def test_repeated_failures_are_rate_limited_with_retry_after(make_client: ClientFactory,
                                                             backend: tuple[str, str], tmp_path: Path) -> None:
    server = None
    if backend[0] == "live":
        # A server of its own: locking out 127.0.0.1 on the shared one would fail the other tests.
        args = ["--auth-failures-per-minute", "5"] + (["--api-style", "azure"] if backend[1] == "azure" else [])
        server = ServerProcess(tmp_path, args).start()
        anonymous = Client(endpoint=server.url, api_style=backend[1])  # type: ignore[arg-type]
    else:
        anonymous = make_client(credential=None)
    try:
        with pytest.raises(RateLimited) as caught:  # noqa: PT012  (the loop is the test)
            for _ in range(100):
                with pytest.raises(AuthenticationError):
                    anonymous.get_service(new_service_ref())
        assert caught.value.status == 429
        assert caught.value.retry_after is not None and caught.value.retry_after > 0
    finally:
        if server is not None:
            anonymous.close()
            server.stop()
