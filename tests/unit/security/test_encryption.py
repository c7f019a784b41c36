from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from tenant_access.runtime import FileKeyring
from tenant_access.security.encryption import (
    KEY_ID_BYTES,
    NONCE_BYTES,
    PREFIX,
    Keyring,
    MasterKey,
    make_check,
    record_aad,
    verify_check,
)
from tenant_access.security.errors import DecryptionError, MasterKeyError, UnknownMasterKey
from tenant_access.security.secret import Secret

AAD = record_aad("/subscriptions/s/resourcegroups/rg/providers/microsoft.apimanagement/service/svc",
                 "access", "primary", "5600b59375ff190048030003")


@pytest.fixture
def keyring() -> Keyring:
    return Keyring(MasterKey.generate())


def raw(ciphertext: str) -> bytearray:
    return bytearray(base64.b64decode(ciphertext.removeprefix(PREFIX)))


def pack(data: bytes) -> str:
    return PREFIX + base64.b64encode(data).decode()


def test_round_trip_bytes_and_text(keyring: Keyring) -> None:
    assert keyring.decrypt(keyring.encrypt(b"\x00key\xff", AAD), AAD) == b"\x00key\xff"
    assert keyring.decrypt_text(keyring.encrypt_text("ключ-€", AAD), AAD) == "ключ-€"
    assert keyring.decrypt_text(keyring.encrypt_text(Secret("s"), AAD), AAD) == "s"
    assert keyring.decrypt(keyring.encrypt(b"", AAD), AAD) == b""


def test_format_is_versioned_and_names_the_key(keyring: Keyring) -> None:
    ciphertext = keyring.encrypt(b"k" * 88, AAD)
    assert ciphertext.startswith("v1:")
    data = raw(ciphertext)
    assert bytes(data[:KEY_ID_BYTES]) == keyring.current.id_bytes
    assert len(data) == KEY_ID_BYTES + NONCE_BYTES + 88 + 16
    assert b"k" * 8 not in data
    assert keyring.key_id_of(ciphertext) == keyring.current.id


def test_every_encryption_uses_a_fresh_nonce(keyring: Keyring) -> None:
    values = [keyring.encrypt(b"same", AAD) for _ in range(200)]
    assert len(set(values)) == 200
    nonces = {bytes(raw(v)[KEY_ID_BYTES:KEY_ID_BYTES + NONCE_BYTES]) for v in values}
    assert len(nonces) == 200


def test_a_ciphertext_copied_to_another_record_does_not_decrypt(keyring: Keyring) -> None:
    ciphertext = keyring.encrypt(b"primary key", AAD)
    for other in (
        record_aad("/subscriptions/s/resourcegroups/rg/providers/microsoft.apimanagement/service/svc",
                   "access", "secondary", "5600b59375ff190048030003"),
        record_aad("/subscriptions/s/resourcegroups/rg/providers/microsoft.apimanagement/service/other",
                   "access", "primary", "5600b59375ff190048030003"),
        record_aad("/subscriptions/s/resourcegroups/rg/providers/microsoft.apimanagement/service/svc",
                   "gitAccess", "primary", "5600b59375ff190048030003"),
        b"",
    ):
        with pytest.raises(DecryptionError) as caught:
            keyring.decrypt(ciphertext, other)
        assert not isinstance(caught.value, UnknownMasterKey)


def test_record_aad_is_unambiguous() -> None:
    assert record_aad("ab", "c") != record_aad("a", "bc")
    assert record_aad("a", "") != record_aad("a")
    assert record_aad("é") == record_aad("é")
    assert record_aad("A") != record_aad("a")  # callers lower-case; the function does not guess


def test_every_tampered_byte_is_detected(keyring: Keyring) -> None:
    ciphertext = keyring.encrypt(b"secret", AAD)
    data = raw(ciphertext)
    for index in range(KEY_ID_BYTES, len(data)):  # the key id itself is covered by the next test
        tampered = bytearray(data)
        tampered[index] ^= 0x01
        with pytest.raises(DecryptionError):
            keyring.decrypt(pack(bytes(tampered)), AAD)
    with pytest.raises(DecryptionError):
        keyring.decrypt(pack(bytes(data[:-1])), AAD)
    with pytest.raises(DecryptionError):
        keyring.decrypt(pack(bytes(data) + b"\x00"), AAD)


def test_a_wrong_master_key_is_reported_as_unknown_not_as_plaintext(keyring: Keyring) -> None:
    ciphertext = keyring.encrypt(b"secret", AAD)
    other = Keyring(MasterKey.generate())
    with pytest.raises(UnknownMasterKey) as caught:
        other.decrypt(ciphertext, AAD)
    assert caught.value.key_id == keyring.current.id
    # Even if the ids collided, the wrong key fails authentication instead of returning garbage.
    data = raw(ciphertext)
    data[:KEY_ID_BYTES] = other.current.id_bytes
    with pytest.raises(DecryptionError):
        other.decrypt(pack(bytes(data)), AAD)


@pytest.mark.parametrize("text", [
    "", "v1:", "v2:AAAA", "AAAA", "v1:not base64!", "v1:" + "A" * 20, "v1:é", "v1:\udc80",
    "v1:" + "A" * 70_000, None, b"v1:AAAA",
])
def test_garbled_ciphertexts_raise_decryption_error(keyring: Keyring, text: object) -> None:
    with pytest.raises(DecryptionError):
        keyring.decrypt(text, AAD)  # type: ignore[arg-type]


def test_rotation_with_old_and_new_keys() -> None:
    old, new = MasterKey.generate(), MasterKey.generate()
    before = Keyring(old)
    stored = before.encrypt(b"value", AAD)

    during = Keyring(new, [old])
    assert set(during.key_ids) == {old.id, new.id}
    assert during.decrypt(stored, AAD) == b"value"
    assert during.needs_reencryption(stored)
    fresh = during.reencrypt(stored, AAD)
    assert not during.needs_reencryption(fresh)
    assert during.key_id_of(fresh) == new.id
    assert during.key_id_of(during.encrypt(b"x", AAD)) == new.id

    after = Keyring(new)
    assert after.decrypt(fresh, AAD) == b"value"
    with pytest.raises(UnknownMasterKey):
        after.decrypt(stored, AAD)
    with pytest.raises(DecryptionError):
        during.reencrypt(stored, b"other record")


def test_keyring_refuses_two_different_keys_with_the_same_id(monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = MasterKey.generate(), MasterKey.generate()
    monkeypatch.setattr(b, "id_bytes", a.id_bytes)
    with pytest.raises(MasterKeyError, match="share the id"):
        Keyring(a, [b])
    assert Keyring(a, [a]).key_ids == (a.id,)


def test_check_value_detects_a_wrong_master_key(keyring: Keyring) -> None:
    stored = make_check(keyring)
    assert verify_check(keyring, stored)
    assert not verify_check(Keyring(MasterKey.generate()), stored)
    assert verify_check(Keyring(MasterKey.generate(), [keyring.current]), stored)  # mid-rotation
    assert not verify_check(keyring, "garbage")
    assert not verify_check(keyring, keyring.encrypt(b"tenant-access master key check", b"other aad"))
    assert not verify_check(keyring, keyring.encrypt(b"something else", b"tenant-access/master-key-check"))
    assert make_check(keyring) != stored  # fresh nonce each time


def test_master_key_repr_and_base64_do_not_leak() -> None:
    key = MasterKey.generate()
    assert repr(key) == f"MasterKey(id={key.id!r})"
    assert repr(key.to_base64()) == "Secret('**********')"
    assert MasterKey.from_base64(key.to_base64()).id == key.id
    assert len(key.id) == 2 * KEY_ID_BYTES


@pytest.mark.parametrize("text", [
    "", "not base64!", base64.b64encode(b"x" * 31).decode(), base64.b64encode(b"x" * 33).decode(),
    base64.urlsafe_b64encode(b"\xfb" * 32).decode(), "é" * 44,
])
def test_garbled_master_keys_are_refused(text: str) -> None:
    with pytest.raises(MasterKeyError):
        MasterKey.from_base64(text)


def test_master_key_needs_exactly_32_bytes() -> None:
    with pytest.raises(MasterKeyError):
        MasterKey(b"x" * 16)
    with pytest.raises(MasterKeyError):
        MasterKey("x" * 32)  # type: ignore[arg-type]


def test_the_variable_wins_over_the_keyring_files(tmp_path: Path) -> None:
    configured = MasterKey.generate().to_base64().reveal()
    assert FileKeyring(tmp_path, configured).current_id == MasterKey.from_base64(configured).id
    assert not (tmp_path / "master-keys").exists()
    with pytest.raises(MasterKeyError):
        FileKeyring(tmp_path, "garbage")
    assert not (tmp_path / "master-keys").exists()  # a bad variable never falls back to a new file


def test_the_keyring_is_created_once(tmp_path: Path) -> None:
    first = FileKeyring(tmp_path / "data", None)
    (path,) = (tmp_path / "data" / "master-keys").glob("*.key")
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert FileKeyring(tmp_path / "data", "").current_id == first.current_id  # empty variable means unset
    with pytest.raises(MasterKeyError, match="holds no master key"):
        FileKeyring(tmp_path / "elsewhere", None, create=False)


def test_a_garbled_or_open_master_key_file_is_refused(tmp_path: Path) -> None:
    FileKeyring(tmp_path, None)
    (path,) = (tmp_path / "master-keys").glob("*.key")
    path.write_text("garbled\n")
    with pytest.raises(MasterKeyError, match="base64"):
        FileKeyring(tmp_path, None)
    if os.name == "posix":
        path.write_text(MasterKey.generate().to_base64().reveal())
        path.chmod(0o644)
        with pytest.raises(MasterKeyError, match="chmod 600"):
            FileKeyring(tmp_path, None)

