from __future__ import annotations

import base64
import re
import time
import uuid

import pytest

from tenant_access.security import service_principals as sp
from tenant_access.security.secret import Secret

SALT = "A" * 22
HASH = "A" * 43


@pytest.fixture(scope="module")
def created() -> sp.NewServicePrincipal:
    return sp.create_service_principal()


def test_client_id_is_a_uuid4_and_secret_is_43_urlsafe_characters(created: sp.NewServicePrincipal) -> None:
    assert uuid.UUID(created.client_id).version == 4
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", created.secret.reveal())
    assert sp.new_client_id() != sp.new_client_id()
    assert sp.new_client_secret() != sp.new_client_secret()


def test_repr_never_shows_the_secret_or_its_hash(created: sp.NewServicePrincipal) -> None:
    text = repr(created)
    assert created.secret.reveal() not in text
    assert created.secret_hash not in text
    assert created.client_id in text


def test_stored_form_carries_its_parameters_and_not_the_secret(created: sp.NewServicePrincipal) -> None:
    assert re.fullmatch(r"\$scrypt\$ln=14,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}", created.secret_hash)
    assert created.secret.reveal() not in created.secret_hash


def test_salts_differ_so_equal_secrets_hash_differently() -> None:
    assert sp.hash_client_secret("same", log2_n=4) != sp.hash_client_secret("same", log2_n=4)


def test_verify_accepts_the_secret_and_nothing_else(created: sp.NewServicePrincipal) -> None:
    secret = created.secret.reveal()
    assert sp.verify_client_secret(secret, created.secret_hash)
    assert sp.verify_client_secret(Secret(secret), created.secret_hash)
    for wrong in ("", secret[:-1], secret + "x", secret.upper(), "é" * 43, "\udc80", "x" * 10_240):
        assert not sp.verify_client_secret(wrong, created.secret_hash)


def test_every_byte_of_the_stored_hash_counts(created: sp.NewServicePrincipal) -> None:
    """A comparison that stopped early (a prefix, the first byte) would still accept these."""
    prefix, _, digest = created.secret_hash.rpartition("$")
    raw = bytearray(base64.b64decode(digest + "="))
    for index in (0, len(raw) // 2, len(raw) - 1):
        altered = bytearray(raw)
        altered[index] ^= 0x80
        stored = prefix + "$" + base64.b64encode(bytes(altered)).decode().rstrip("=")
        assert not sp.verify_client_secret(created.secret, stored)


def test_verify_honours_older_parameters_and_flags_them_for_rehash() -> None:
    old = sp.hash_client_secret("s3cret", log2_n=10)
    assert sp.verify_client_secret("s3cret", old)
    assert sp.needs_rehash(old)
    assert not sp.needs_rehash(sp.hash_client_secret("s3cret"))
    assert sp.needs_rehash("garbage")


@pytest.mark.parametrize("stored", [
    "", "plain-text-secret", "$scrypt$ln=14,r=8,p=1$$", f"$pbkdf2$ln=14,r=8,p=1${SALT}${HASH}",
    "$scrypt$ln=14,r=8,p=1$!!!$AAAA",
    f"$scrypt$ln=30,r=8,p=1${SALT}${HASH}",  # N = 2**30: refused
    f"$scrypt$ln=20,r=16,p=1${SALT}${HASH}",  # 2 GiB of memory: refused
    f"$scrypt$ln=0,r=8,p=1${SALT}${HASH}",
    f"$scrypt$ln=14,r=8,p=1$AAAA${HASH}",  # salt too short
    f"$scrypt$ln=14,r=8,p=1${SALT}$AAAA",  # hash too short
    f"$scrypt$ln=14,r=8,p=1${SALT}${HASH}\n",
])
def test_malformed_or_dangerous_stored_hashes_are_false_quickly(stored: str) -> None:
    started = time.perf_counter()
    assert not sp.verify_client_secret("anything", stored)
    assert time.perf_counter() - started < 2.0


def test_unknown_client_costs_about_the_same_as_a_known_one(created: sp.NewServicePrincipal) -> None:
    def timed(stored: str | None) -> float:
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            sp.verify_client_secret("wrong", stored)
            best = min(best, time.perf_counter() - started)
        return best

    known, unknown = timed(created.secret_hash), timed(None)
    assert unknown > known / 3  # the dummy hash really runs scrypt (a shortcut would be ~1000x faster)
