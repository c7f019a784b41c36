"""``verify`` against a real HTTPS server with a self-signed certificate."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenant_access.client import Client, NotFound, TransportError
from tests.client.conftest import bearer_for, new_service_ref
from tests.serverproc import ServerProcess


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("tls-server"), ["--tls"]).start()
    yield server
    server.stop()


def _certificate(server: ServerProcess) -> Path:
    printed: Path | None = getattr(server, "cert_path", None)
    return printed or server.data_dir / "tls" / "cert.pem"


@pytest.mark.parametrize("as_context", [False, True])
def test_a_ca_file_or_context_is_trusted(tls_server: ServerProcess, as_context: bool) -> None:
    cert = _certificate(tls_server)
    verify: str | ssl.SSLContext = ssl.create_default_context(cafile=str(cert)) if as_context else str(cert)
    credential = bearer_for(tls_server.data_dir, issuer=tls_server.issuer)
    with Client(endpoint=tls_server.url, verify=verify, credential=credential) as client, \
            pytest.raises(NotFound):
        client.get_service(new_service_ref())


def test_an_untrusted_certificate_is_a_transport_error(tls_server: ServerProcess) -> None:
    credential = bearer_for(tls_server.data_dir, issuer=tls_server.issuer)
    with Client(endpoint=tls_server.url, credential=credential) as client, \
            pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
        client.get_service(new_service_ref())
