"""HTTPS: the self-signed certificate made on first start, reused after, and the user's own.

azure-core refuses to send a bearer token over plain HTTP, so without this the SDK cannot talk to
the server at all. The certificate must pass Python's strict verification mode too (3.13 turns it
on by default), which is why its extensions are checked one by one.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import os
import socket
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tenant_access import tls
from tenant_access.config import Settings
from tests.serverproc import ServerProcess


def _strict_context(cert: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cert))
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    return context


def _handshake(port: int, host: str, context: ssl.SSLContext) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=host) as wrapped:
        assert wrapped.version() in ("TLSv1.2", "TLSv1.3")


def test_first_start_makes_a_certificate_clients_can_trust(azure_server: ServerProcess, cert: Path) -> None:
    assert cert == azure_server.data_dir / "tls" / "cert.pem"
    assert azure_server.url.startswith("https://127.0.0.1:")
    key = cert.with_name("key.pem")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert f"TLS certificate: {cert} (generated now;" in azure_server.log()

    parsed = x509.load_pem_x509_certificate(cert.read_bytes())
    assert parsed.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "localhost"
    public = parsed.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.curve.name == "secp256r1"
    san = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert set(san.get_values_for_type(x509.IPAddress)) == {ipaddress.ip_address(a) for a in ("127.0.0.1", "::1")}
    assert parsed.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    usage = parsed.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign
    assert usage.digital_signature
    eku = parsed.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    ski = parsed.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = parsed.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski.digest

    for host in ("127.0.0.1", "localhost"):
        _handshake(azure_server.port, host, _strict_context(cert))


def test_plain_trust_store_refuses_the_self_signed_certificate(azure_server: ServerProcess) -> None:
    """The default trust store must not accept it: clients have to be told about it explicitly."""
    context = ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE") or None)
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(azure_server.port, "localhost", context)


def test_the_certificate_is_reused_on_restart(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", ["--api-style", "azure", "--tls"]).start()
    try:
        assert server.cert_path is not None
        first = server.cert_path.read_bytes()
        server.restart()
        assert server.cert_path.read_bytes() == first
        assert "(self-signed; trust it with" in server.log()
        with httpx.Client(verify=ssl.create_default_context(cafile=str(server.cert_path))) as http:
            assert http.get(f"{server.url}/healthz").status_code == 200
    finally:
        server.stop()


def test_an_expiring_certificate_is_replaced(tmp_path: Path) -> None:
    long_ago = _dt.datetime.now(_dt.UTC) - _dt.timedelta(days=tls.VALIDITY_DAYS)
    old = tls.ensure_self_signed(tmp_path, now=long_ago)
    assert old.generated
    old_bytes = old.cert.read_bytes()
    assert tls.ensure_self_signed(tmp_path, now=long_ago).generated is False  # still valid back then
    fresh = tls.ensure_self_signed(tmp_path)
    assert fresh.generated
    assert fresh.cert.read_bytes() != old_bytes


def test_own_certificate_and_key(tmp_path: Path) -> None:
    cert_pem, key_pem = tls.generate(_dt.datetime.now(_dt.UTC))
    cert, key = tmp_path / "mine.crt", tmp_path / "mine.key"
    cert.write_bytes(cert_pem)
    key.write_bytes(key_pem)
    server = ServerProcess(tmp_path / "data", ["--tls-cert", str(cert), "--tls-key", str(key)]).start()
    try:
        assert server.url.startswith("https://")
        assert server.cert_path == cert
        assert not (tmp_path / "data" / "tls").exists()
        with httpx.Client(verify=ssl.create_default_context(cafile=str(cert))) as http:
            assert http.get(f"{server.url}/healthz").status_code == 200
    finally:
        server.stop()


def test_tls_from_the_environment(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", env={"TENANT_ACCESS_TLS": "true"}).start()
    try:
        assert server.url.startswith("https://")
        assert server.cert_path == tmp_path / "data" / "tls" / "cert.pem"
    finally:
        server.stop()


@pytest.mark.parametrize(("args", "message"), [
    (["--tls-cert", "/nonexistent/cert.pem"], "give both a TLS certificate and its key"),
    (["--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem"], "TLS certificate file not found"),
])
def test_bad_tls_options_are_refused_with_a_message(tmp_path: Path, args: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tenant_access", "serve", "--port", "0", "--data-dir", str(tmp_path), *args],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_mismatched_certificate_and_key_are_refused(tmp_path: Path) -> None:
    now = _dt.datetime.now(_dt.UTC)
    cert, key = tmp_path / "a.crt", tmp_path / "b.key"
    cert.write_bytes(tls.generate(now)[0])
    key.write_bytes(tls.generate(now)[1])
    with pytest.raises(ValueError, match="do not load together"):
        tls.check_pair(cert, key)


def test_settings() -> None:
    assert Settings.from_env({}).tls is False
    assert Settings.from_env({"TENANT_ACCESS_TLS": "1"}).tls is True
    assert Settings.from_env({"TENANT_ACCESS_TLS": "off"}).tls is False
    assert Settings.from_env({}, tls_cert=Path("c"), tls_key=Path("k")).tls is True
    with pytest.raises(ValueError, match="true or false"):
        Settings.from_env({"TENANT_ACCESS_TLS": "maybe"})


def test_plain_http_start_does_not_load_cryptography() -> None:
    code = ("import sys, tenant_access.cli, tenant_access.config, tenant_access.tls, "
            "tenant_access.http.wire_azure; print('cryptography' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True)
    assert result.stdout.strip() == "False"
