"""The server's own HTTPS certificate: made once, kept in the data directory, reused after.

Azure clients refuse to send a bearer token over plain HTTP, so the Azure mode needs HTTPS even on
a laptop. A self-signed certificate is enough as long as the client is told to trust it; this module
makes one that both Python's default verification and its stricter 3.13+ ``VERIFY_X509_STRICT``
mode accept (hence CA:TRUE, key usage, and subject/authority key identifiers on a leaf that is its
own issuer). ``cryptography`` is imported only here, and only when TLS is switched on, so a plain
HTTP server does not pay for it at start-up.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import ipaddress
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"
#: Long enough not to expire under a developer, short enough to stay within what browsers accept.
VALIDITY_DAYS = 825
#: A certificate this close to expiry is replaced at start rather than served.
RENEW_BEFORE = _dt.timedelta(days=7)


@dataclass(frozen=True, slots=True)
class CertificatePair:
    cert: Path
    key: Path
    #: True when this start made the files (so the server can say so).
    generated: bool = False


def tls_dir(data_dir: Path) -> Path:
    return data_dir / "tls"


def ensure_self_signed(data_dir: Path, *, now: _dt.datetime | None = None) -> CertificatePair:
    """The certificate in ``<data_dir>/tls``, made on first use and whenever it is about to expire.

    A lock serialises two servers starting on the same data directory, so they cannot end up with
    one's key next to the other's certificate.
    """
    directory = tls_dir(data_dir)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    cert_path, key_path = directory / CERT_FILE, directory / KEY_FILE
    moment = now or _dt.datetime.now(_dt.UTC)
    with _locked(directory / ".lock"):
        if _usable(cert_path, key_path, moment):
            return CertificatePair(cert_path, key_path)
        cert_pem, key_pem = generate(moment)
        _write(key_path, key_pem, 0o600)
        _write(cert_path, cert_pem, 0o644)
    return CertificatePair(cert_path, key_path, generated=True)


def generate(now: _dt.datetime, *, common_name: str = "localhost") -> tuple[bytes, bytes]:
    """A P-256 self-signed certificate for localhost, 127.0.0.1 and ::1; answers (cert, key) as PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tenant-access (self-signed)"),
    ])
    public = key.public_key()
    ski = x509.SubjectKeyIdentifier.from_public_key(public)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=VALIDITY_DAYS))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName(common_name),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, crl_sign=False, encipher_only=False,
            decipher_only=False,
        ), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert_pem, key_pem


def check_pair(cert: Path, key: Path) -> None:
    """Refuse to start with files that are missing or unreadable, with a message naming the file,
    instead of letting the TLS library fail later with an OpenSSL error code."""
    for label, path in (("certificate", cert), ("key", key)):
        if not path.is_file():
            raise ValueError(f"TLS {label} file not found: {path}")
        if not os.access(path, os.R_OK):
            raise ValueError(f"TLS {label} file is not readable: {path}")
    import ssl

    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise ValueError(f"the TLS certificate {cert} and key {key} do not load together: {exc.reason}") from None


def _usable(cert_path: Path, key_path: Path, now: _dt.datetime) -> bool:
    if not (cert_path.is_file() and key_path.is_file()):
        return False
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except ValueError:
        return False
    return cert.not_valid_after_utc - RENEW_BEFORE > now


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write next to the target and rename, so a crash never leaves half a key; the mode is set at
    creation, so the private key is never readable by others, not even for an instant."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no second server to race with in practice
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
