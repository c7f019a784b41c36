"""The master keyring on disk: layout, adoption of the old layout from any interrupted state, the
pending key of a rotation, and a running process following changes."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from tenant_access.file_modes import make_private
from tenant_access.runtime import FileKeyring, environment_keys
from tenant_access.security.encryption import Keyring, MasterKey
from tenant_access.security.errors import MasterKeyError
from tenant_access.security.master_keys import MasterKeyDir

AAD = b"record"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _legacy(data_dir: Path, name: str, key: MasterKey) -> None:
    data_dir.mkdir(exist_ok=True)
    fd = os.open(data_dir / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, key.to_base64().reveal().encode() + b"\n")
    os.close(fd)


def test_a_new_data_directory_gets_one_private_key_and_a_pointer(tmp_path: Path) -> None:
    files = MasterKeyDir(tmp_path / "data")
    ring = files.load()
    assert files.key_ids() == [ring.current.id]
    assert files.current_id() == ring.current.id
    assert _mode(files.path) == 0o700
    assert all(_mode(p) == 0o600 for p in files.path.iterdir())
    assert files.load().current.id == ring.current.id  # read back, not made again
    with pytest.raises(MasterKeyError, match="holds no master key"):
        MasterKeyDir(tmp_path / "empty").load(create=False)


def test_the_old_layout_is_adopted_without_losing_either_key(tmp_path: Path) -> None:
    old, older = MasterKey.generate(), MasterKey.generate()
    _legacy(tmp_path, "master.key", old)
    _legacy(tmp_path, "master.key.previous", older)
    under_older = Keyring(older).encrypt(b"secret", AAD)
    ring = MasterKeyDir(tmp_path).load(create=False)
    assert ring.current.id == old.id
    assert set(ring.key_ids) == {old.id, older.id}
    assert ring.decrypt(under_older, AAD) == b"secret"
    assert not (tmp_path / "master.key").exists() and not (tmp_path / "master.key.previous").exists()


@pytest.mark.parametrize("state", ["keys-written", "pointer-written", "current-removed"])
def test_adoption_interrupted_at_any_step_completes_the_same_way(tmp_path: Path, state: str) -> None:
    old, older = MasterKey.generate(), MasterKey.generate()
    _legacy(tmp_path, "master.key", old)
    _legacy(tmp_path, "master.key.previous", older)
    files = MasterKeyDir(tmp_path)
    files.path.mkdir(mode=0o700)
    for key in (old, older):  # what adoption writes first
        _legacy(files.path, f"{key.id}.key", key)
    if state != "keys-written":
        (files.path / "current").write_text(old.id + "\n")
    if state == "current-removed":
        (tmp_path / "master.key").unlink()
    ring = files.load(create=False)
    assert ring.current.id == old.id and set(ring.key_ids) == {old.id, older.id}
    assert not (tmp_path / "master.key.previous").exists()


def test_a_pending_key_is_found_again_and_installed_once(tmp_path: Path) -> None:
    files = MasterKeyDir(tmp_path)
    first = files.load().current.id
    new = files.begin_new()
    assert files.begin_new().id == new.id  # an interrupted rotation's key, not another one
    assert files.load().current.id == first  # readers ignore the pending key
    assert new.id not in files.key_ids()
    files.install_new(new)
    files.install_new(new)  # repeatable
    assert files.load().current.id == new.id
    assert files.pending() is not None  # until the rotation has verified every value
    files.complete_new()
    assert files.pending() is None
    assert files.key_ids() == sorted([first, new.id])


def test_a_key_file_must_hold_the_key_its_name_says(tmp_path: Path) -> None:
    files = MasterKeyDir(tmp_path)
    files.load()
    stray = MasterKey.generate()
    _legacy(files.path, "0badc0de.key", stray)
    with pytest.raises(MasterKeyError, match=f"holds master key {stray.id}, not 0badc0de"):
        files.load()


def test_leftover_temporary_files_are_ignored_then_removed(tmp_path: Path) -> None:
    files = MasterKeyDir(tmp_path)
    ring = files.load()
    (files.path / ".abcd1234.key.0011223344556677.tmp").write_bytes(b"half")
    assert files.load().key_ids == ring.key_ids
    with files.exclusive():
        with pytest.raises(MasterKeyError, match="another"), files.exclusive():
            pass
        assert files.remove_leftovers() == [".abcd1234.key.0011223344556677.tmp"]
    assert not list(files.path.glob("*.tmp"))


def test_retire_refuses_the_current_key(tmp_path: Path) -> None:
    files = MasterKeyDir(tmp_path)
    current = files.load().current.id
    with pytest.raises(MasterKeyError, match="current"):
        files.retire(current)


def test_a_running_process_follows_rotation_and_retirement(tmp_path: Path) -> None:
    keyring = FileKeyring(tmp_path, None)
    old = keyring.current_id
    other = MasterKeyDir(tmp_path)  # another process: the rotate command
    new = other.begin_new()
    other.install_new(new)
    # A value written by a server that already follows the new key: decrypting it reloads at once.
    assert keyring.decrypt(Keyring(new).encrypt(b"v", AAD), AAD) == b"v"
    assert keyring.current_id == new.id
    other.complete_new()
    other.retire(old)
    keyring.reload()
    assert keyring.key_ids == (new.id,)


def test_keys_from_the_environment_take_several_previous_keys(tmp_path: Path) -> None:
    a, b, c = (MasterKey.generate() for _ in range(3))
    text = [k.to_base64().reveal() for k in (a, b, c)]
    current, older = environment_keys(text[0], f"{text[1]}, {text[2]},")
    assert current.id == a.id and [k.id for k in older] == [b.id, c.id]
    keyring = FileKeyring(tmp_path, text[0], f"{text[1]},{text[2]}")
    assert keyring.decrypt(Keyring(c).encrypt(b"v", AAD), AAD) == b"v"
    assert not (tmp_path / "master-keys").exists()
    with pytest.raises(MasterKeyError):
        environment_keys(text[0], "not base64!")
    assert base64.b64decode(text[0])


def test_make_private_stays_inside_the_data_directory(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("x")
    os.chmod(outside, 0o644)
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    os.chmod(data_dir, 0o755)
    (data_dir / "link").symlink_to(outside)
    (data_dir / "db").write_text("x")
    os.chmod(data_dir / "db", 0o644)
    (data_dir / "tls").mkdir(mode=0o755)
    (data_dir / "tls" / "key.pem").write_text("x")
    os.chmod(data_dir / "tls", 0o755)
    os.chmod(data_dir / "tls" / "key.pem", 0o644)
    (data_dir / "someone-elses").mkdir(mode=0o755)
    os.chmod(data_dir / "someone-elses", 0o755)
    changed = make_private(data_dir)
    assert sorted(changed) == sorted([f"{data_dir} (0755 -> 0700)", f"{data_dir / 'db'} (0644 -> 0600)",
                                      f"{data_dir / 'tls'} (0755 -> 0700)",
                                      f"{data_dir / 'tls' / 'key.pem'} (0644 -> 0600)"])
    assert _mode(outside) == 0o644  # a symbolic link is never followed
    assert _mode(data_dir / "someone-elses") == 0o755  # not a directory this program makes
    assert make_private(data_dir) == []
