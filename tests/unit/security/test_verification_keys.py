from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from tenant_access.security.errors import KeyMaterialError
from tenant_access.security.secret import Secret
from tenant_access.security.tokens import TokenVerifier
from tenant_access.security.verification_keys import (
    hmac_key,
    load_jwks,
    load_pem_keys,
    parse_jwks,
    public_key,
    signing_key_id,
)

NOW = 1_800_000_000
CLAIMS = {"sub": "a", "role": "reader", "scope": "/", "aud": "https://management.azure.com/", "exp": NOW + 60}


def pem_public(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def pem_private(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def certificate(key: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuer")])
    start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(start).not_valid_after(start + dt.timedelta(days=3650))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def jwk_of(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, **extra: Any) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        text = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())
    else:
        text = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key())
    data: dict[str, Any] = json.loads(text)
    data.update(extra)
    return data


def test_hmac_key_minimum_length_and_masking() -> None:
    with pytest.raises(KeyMaterialError):
        hmac_key(b"x" * 31)
    key = hmac_key(Secret(b"x" * 32))
    assert key.algorithm == "HS256"
    assert key.kid == signing_key_id(b"x" * 32)
    assert hmac_key(b"x" * 32, "mine").kid == "mine"
    assert hmac_key(b"x" * 32, any_kid=True).kid is None
    assert "xxxx" not in repr(key)


def test_signing_key_id_is_stable_and_distinct() -> None:
    assert signing_key_id(b"a" * 32) == signing_key_id(Secret(b"a" * 32))
    assert signing_key_id(b"a" * 32) != signing_key_id(b"b" * 32)
    assert len(signing_key_id(b"a" * 32)) == 16


def test_public_keys_are_pinned_to_one_algorithm(rsa_private: rsa.RSAPrivateKey,
                                                 ec_private: ec.EllipticCurvePrivateKey) -> None:
    assert public_key(rsa_private.public_key()).algorithm == "RS256"
    assert public_key(ec_private.public_key()).algorithm == "ES256"


@pytest.mark.parametrize("make", [
    lambda: rsa.generate_private_key(65537, 1024).public_key(),
    lambda: ec.generate_private_key(ec.SECP384R1()).public_key(),
    lambda: ec.generate_private_key(ec.SECP256R1()),
    lambda: b"not a key",
])
def test_weak_unsupported_or_private_keys_are_refused(make: Any) -> None:
    with pytest.raises(KeyMaterialError):
        public_key(make())


def test_pem_file_with_several_blocks_and_a_certificate(
    tmp_path: Path, rsa_private: rsa.RSAPrivateKey, ec_private: ec.EllipticCurvePrivateKey,
    other_rsa_private: rsa.RSAPrivateKey,
) -> None:
    path = tmp_path / "keys.pem"
    path.write_bytes(b"comment line\n" + pem_public(rsa_private) + pem_public(ec_private)
                     + certificate(other_rsa_private))
    keys = load_pem_keys(path, kid="k")
    assert [k.algorithm for k in keys] == ["RS256", "ES256", "RS256"]
    assert {k.kid for k in keys} == {"k"}
    verifier = TokenVerifier.with_keys(keys)
    for private, alg in ((rsa_private, "RS256"), (ec_private, "ES256"), (other_rsa_private, "RS256")):
        assert verifier.verify(jwt.encode(CLAIMS, private, alg), now=NOW).sub == "a"


def test_pkcs1_rsa_public_key(tmp_path: Path, rsa_private: rsa.RSAPrivateKey) -> None:
    path = tmp_path / "pkcs1.pem"
    path.write_bytes(rsa_private.public_key().public_bytes(serialization.Encoding.PEM,
                                                           serialization.PublicFormat.PKCS1))
    assert load_pem_keys(path)[0].algorithm == "RS256"


def test_pem_private_key_file_is_refused(tmp_path: Path, rsa_private: rsa.RSAPrivateKey) -> None:
    path = tmp_path / "private.pem"
    path.write_bytes(pem_private(rsa_private))
    with pytest.raises(KeyMaterialError, match="private key"):
        load_pem_keys(path)


@pytest.mark.parametrize("content", [
    b"",
    b"not pem at all",
    b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n",
])
def test_bad_pem_files(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.pem"
    path.write_bytes(content)
    with pytest.raises(KeyMaterialError):
        load_pem_keys(path)


def test_missing_and_huge_key_files(tmp_path: Path) -> None:
    with pytest.raises(KeyMaterialError, match="cannot be read"):
        load_pem_keys(tmp_path / "absent.pem")
    huge = tmp_path / "huge.pem"
    huge.write_bytes(b"A" * (1024 * 1024 + 1))
    with pytest.raises(KeyMaterialError, match="too large"):
        load_pem_keys(huge)


def test_jwks_file_selects_by_kid(
    tmp_path: Path, rsa_private: rsa.RSAPrivateKey, other_rsa_private: rsa.RSAPrivateKey,
    ec_private: ec.EllipticCurvePrivateKey,
) -> None:
    document = {"keys": [
        jwk_of(rsa_private, kid="r1", use="sig", alg="RS256"),
        jwk_of(other_rsa_private, kid="r2"),
        jwk_of(ec_private, kid="e1"),
        jwk_of(other_rsa_private, kid="enc", use="enc"),              # skipped: encryption key
        jwk_of(other_rsa_private, kid="ps", alg="PS256"),              # skipped: another algorithm
        {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "ed"},
    ]}
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(document))
    keys = load_jwks(path)
    assert [(k.kid, k.algorithm) for k in keys] == [("r1", "RS256"), ("r2", "RS256"), ("e1", "ES256")]
    verifier = TokenVerifier.with_keys(keys)
    assert verifier.verify(jwt.encode(CLAIMS, other_rsa_private, "RS256", {"kid": "r2"}), now=NOW).sub == "a"
    assert verifier.verify(jwt.encode(CLAIMS, ec_private, "ES256", {"kid": "e1"}), now=NOW).sub == "a"


@pytest.mark.parametrize(("document", "match"), [
    ([], "'keys' list"),
    ({"keys": {}}, "'keys' list"),
    ({"keys": []}, "no RS256 or ES256"),
    ({"keys": [5]}, "not an object"),
    ({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}, "symmetric"),
    ({"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB", "d": "AQAB"}]}, "private"),
    ({"keys": [{"kty": "RSA", "e": "AQAB"}]}, "not a valid RSA key"),
    ({"keys": [{"kty": "RSA", "n": "!!!", "e": "AQAB"}]}, "not a valid RSA key"),
    ({"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": 3}]}, "'kid' must be a string"),
    ({"keys": [{"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}]}, "not a valid EC key"),
    ({"keys": [{"kty": "EC", "crv": "P-256", "x": "A" * 43, "y": "A" * 43}]}, "not a valid EC key"),
])
def test_bad_jwks_documents(document: Any, match: str) -> None:
    with pytest.raises(KeyMaterialError, match=match):
        parse_jwks(document)


def test_jwks_with_a_small_rsa_key_is_refused() -> None:
    weak = rsa.generate_private_key(65537, 1024)
    with pytest.raises(KeyMaterialError, match="2048"):
        parse_jwks({"keys": [jwk_of(weak)]})


def test_jwks_not_json(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_bytes(b"\xff{not json")
    with pytest.raises(KeyMaterialError, match="not JSON"):
        load_jwks(path)


def test_jwks_ec_point_must_be_on_the_curve(ec_private: ec.EllipticCurvePrivateKey) -> None:
    data = jwk_of(ec_private)
    y = bytearray(base64.urlsafe_b64decode(data["y"] + "=="))
    y[-1] ^= 1
    data["y"] = base64.urlsafe_b64encode(bytes(y)).rstrip(b"=").decode()
    with pytest.raises(KeyMaterialError, match="not a valid EC key"):
        parse_jwks({"keys": [data]})
