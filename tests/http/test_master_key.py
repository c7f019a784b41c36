"""Keys at rest: encrypted, refused under the wrong master key, re-encrypted online."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tenant_access.security.encryption import MasterKey
from tests.backends import Backend, DbServer
from tests.conftest import API, SERVICE_BODY, service_path


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tenant_access", *args], capture_output=True, text=True,
                          timeout=60, env=env, check=False)


def _key_files(data_dir: Path) -> set[str]:
    return {p.name for p in (data_dir / "master-keys").glob("*.key")}


def _current(data_dir: Path) -> str:
    return (data_dir / "master-keys" / "current").read_text().strip()


def test_rotation_of_the_master_key_while_the_server_runs(db_backend: Backend, tmp_path: Path) -> None:
    server = db_backend.server(tmp_path).start()
    path = service_path("masterkey")
    try:
        with httpx.Client(base_url=server.url, headers=server.auth()) as http:
            assert http.put(f"{path}?{API}", json=SERVICE_BODY).status_code == 201
            before = {a: http.post(f"{path}/tenant/{a}/listSecrets?{API}").json()["data"] for a in
                      ("access", "gitAccess")}
            old_id = _current(tmp_path)
            rotated = _cli("rotate-master-key", "--data-dir", str(tmp_path), *server.database.args())
            assert rotated.returncode == 0, rotated.stderr
            assert "re-encrypted 4 stored key(s)" in rotated.stdout
            new_id = _current(tmp_path)
            assert new_id != old_id
            assert _key_files(tmp_path) == {f"{old_id}.key", f"{new_id}.key"}  # the old key stays
            assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in (tmp_path / "master-keys").iterdir())
            assert not (tmp_path / "master-keys" / "pending.key").exists()
            # The running server follows: reads, and a rotation under the new key.
            after = {a: http.post(f"{path}/tenant/{a}/listSecrets?{API}").json()["data"] for a in
                     ("access", "gitAccess")}
            assert after == before
            assert http.post(f"{path}/tenant/access/regenerateSecondaryKey?{API}").status_code == 200
        status = _cli("master-key", "status", "--data-dir", str(tmp_path), *server.database.args())
        assert status.returncode == 0, status.stderr
        assert f"{old_id}         0 stored value(s)  unused: can be retired" in status.stdout
        assert f"{new_id}         5 stored value(s)  current" in status.stdout  # 4 current keys + the check
        assert "rotation: none unfinished" in status.stdout
        # Everything is now under the new key alone: retire the old one and restart.
        retired = _cli("master-key", "retire", old_id, "--data-dir", str(tmp_path), *server.database.args())
        assert retired.returncode == 0, retired.stderr
        assert _key_files(tmp_path) == {f"{new_id}.key"}
        server.restart()
        with httpx.Client(base_url=server.url, headers=server.auth()) as http:
            keys = http.post(f"{path}/tenant/gitAccess/listSecrets?{API}")
            assert keys.status_code == 200
            assert keys.json()["data"]["primary_key"] == before["gitAccess"]["primary_key"]
    finally:
        server.stop()


def test_retire_is_refused_while_values_use_the_key_and_rotate_finishes_the_move(
        db_backend: Backend, tmp_path: Path) -> None:
    """A new key made current by hand (as an interrupted rotation leaves it): the old one still holds
    every value, so retiring it is refused with the count, and a plain rotate resumes to that key."""
    server = db_backend.server(tmp_path).start()
    server.stop()
    args = ["--data-dir", str(tmp_path), *server.database.args()]
    old_id = _current(tmp_path)
    new = MasterKey.generate()
    keys = tmp_path / "master-keys"
    fd = os.open(keys / f"{new.id}.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, new.to_base64().reveal().encode() + b"\n")
    os.close(fd)
    (keys / "current").write_text(new.id + "\n")

    status = _cli("master-key", "status", *args)
    assert status.returncode == 0, status.stderr
    assert f"{old_id}         1 stored value(s)" in status.stdout  # the check value: no service yet
    assert "rotation: unfinished (1 stored value(s) under older keys)" in status.stdout
    refused = _cli("master-key", "retire", old_id, *args)
    assert refused.returncode == 1
    assert f"1 stored value(s) still use master key {old_id}" in refused.stderr
    assert f"{old_id}.key" in _key_files(tmp_path)
    current = _cli("master-key", "retire", new.id, *args)
    assert current.returncode == 1 and "is the current one" in current.stderr

    resumed = _cli("master-key", "rotate", *args)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming the unfinished rotation to master key {new.id}" in resumed.stdout
    assert _current(tmp_path) == new.id and len(_key_files(tmp_path)) == 2  # no third key
    again = _cli("master-key", "rotate", "--resume", *args)
    assert again.returncode == 0 and "no unfinished rotation" in again.stdout
    retired = _cli("master-key", "retire", old_id, *args)
    assert retired.returncode == 0, retired.stderr
    assert _key_files(tmp_path) == {f"{new.id}.key"}


def test_keys_from_the_environment_with_several_previous_keys(db_backend: Backend, tmp_path: Path) -> None:
    """Rotating twice with keys in the environment: the previous-key variable takes a list."""
    a, b, c = (base64.b64encode(secrets.token_bytes(32)).decode() for _ in range(3))
    server = db_backend.server(tmp_path, env={"TENANT_ACCESS_MASTER_KEY": a}).start()
    path = service_path("envkeys")
    try:
        with httpx.Client(base_url=server.url, headers=server.auth()) as http:
            assert http.put(f"{path}?{API}", json=SERVICE_BODY).status_code == 201
            before = http.post(f"{path}/tenant/access/listSecrets?{API}").json()["data"]
    finally:
        server.stop()
    assert not (tmp_path / "master-keys").exists()  # keys from the environment never touch the files
    args = ["--data-dir", str(tmp_path), *server.database.args()]
    missing = _cli("master-key", "rotate", *args, env=_env(c, b))
    assert missing.returncode == 1 and "nothing was changed" in missing.stderr
    # Half a rotation to b (the variable changed, no re-encryption), then a second rotation to c.
    half = _cli("master-key", "status", *args, env=_env(b, a))
    assert half.returncode == 0 and "rotation: unfinished" in half.stdout
    done = _cli("master-key", "rotate", *args, env=_env(c, f"{b}, {a}"))
    assert done.returncode == 0, done.stderr
    assert "re-encrypted 4 stored key(s)" in done.stdout
    gone = _cli("master-key", "retire", MasterKey.from_base64(a).id, *args, env=_env(c, f"{b},{a}"))
    assert gone.returncode == 0 and "remove it from TENANT_ACCESS_PREVIOUS_MASTER_KEY" in gone.stdout
    server = DbServer(tmp_path, server.database, env={"TENANT_ACCESS_MASTER_KEY": c})
    server.start()
    try:
        with httpx.Client(base_url=server.url, headers=server.auth()) as http:
            assert http.post(f"{path}/tenant/access/listSecrets?{API}").json()["data"] == before
    finally:
        server.stop()


def _env(current: str, previous: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANT_ACCESS_")}
    env.update({"TENANT_ACCESS_MASTER_KEY": current, "TENANT_ACCESS_PREVIOUS_MASTER_KEY": previous})
    return env


def test_the_server_refuses_to_start_with_the_wrong_master_key(db_backend: Backend, tmp_path: Path) -> None:
    first = db_backend.server(tmp_path).start()
    first.stop()
    wrong = base64.b64encode(secrets.token_bytes(32)).decode()
    server = DbServer(tmp_path, first.database, env={"TENANT_ACCESS_MASTER_KEY": wrong})
    with pytest.raises(RuntimeError, match="master key does not open this store"):
        server.start(timeout=15)


def test_a_copied_or_altered_ciphertext_is_never_used(db_backend: Backend, tmp_path: Path) -> None:
    server = db_backend.server(tmp_path).start()
    path = service_path("tamper")
    try:
        with httpx.Client(base_url=server.url, headers=server.auth()) as http:
            assert http.put(f"{path}?{API}", json=SERVICE_BODY).status_code == 201
            db = server.database
            # Copy the gitAccess primary's ciphertext over the access primary's.
            db.execute("""UPDATE key_versions SET secret = (SELECT secret FROM key_versions
                          WHERE access_name = 'gitAccess' AND slot = 'primary')
                          WHERE access_name = 'access' AND slot = 'primary'""")
            copied = http.post(f"{path}/tenant/access/listSecrets?{API}")
            assert copied.status_code == 500
            assert copied.json()["error"]["code"] == "INTERNAL_ERROR"
            # Flip one byte of the gitAccess secondary.
            token = db.execute("SELECT secret FROM key_versions WHERE access_name = 'gitAccess' "
                               "AND slot = 'secondary'")[0][0]
            raw = bytearray(base64.b64decode(token[3:]))
            raw[-1] ^= 1
            db.execute("UPDATE key_versions SET secret = ? WHERE access_name = 'gitAccess' AND slot = 'secondary'",
                       ("v1:" + base64.b64encode(bytes(raw)).decode(),))
            assert http.post(f"{path}/tenant/gitAccess/listSecrets?{API}").status_code == 500
            assert http.post(f"{path}/tenant/gitAccess/regenerateSecondaryKey?{API}").status_code == 500
    finally:
        server.stop()
    assert "failed to decrypt" in server.log()


def test_key_files_are_private(db_backend: Backend, tmp_path: Path) -> None:
    db_backend.server(tmp_path).start().stop()
    for path in [tmp_path / "signing-key", *(tmp_path / "master-keys").iterdir()]:
        assert oct(path.stat().st_mode & 0o777) == "0o600", path
    assert oct((tmp_path / "master-keys").stat().st_mode & 0o777) == "0o700"


def test_a_data_directory_of_the_old_layout_is_adopted_without_loss(db_backend: Backend, tmp_path: Path) -> None:
    """``master.key`` and ``master.key.previous`` (an earlier version's layout) become the keyring."""
    server = db_backend.server(tmp_path).start()
    path = service_path("legacy")
    try:
        with httpx.Client(base_url=server.url, headers=server.auth()) as http:
            assert http.put(f"{path}?{API}", json=SERVICE_BODY).status_code == 201
            before = http.post(f"{path}/tenant/access/listSecrets?{API}").json()["data"]
    finally:
        server.stop()
    current = _current(tmp_path)
    older = MasterKey.generate()
    keys = tmp_path / "master-keys"
    os.rename(keys / f"{current}.key", tmp_path / "master.key")
    fd = os.open(tmp_path / "master.key.previous", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, older.to_base64().reveal().encode() + b"\n")
    os.close(fd)
    for leftover in keys.iterdir():
        leftover.unlink()
    keys.rmdir()

    status = _cli("master-key", "status", "--data-dir", str(tmp_path), *server.database.args())
    assert status.returncode == 0, status.stderr
    assert "moved the master key files master.key and master.key.previous" in status.stderr
    assert f"{current}         5 stored value(s)  current" in status.stdout
    assert f"{older.id}         0 stored value(s)  unused: can be retired" in status.stdout
    assert _current(tmp_path) == current and _key_files(tmp_path) == {f"{current}.key", f"{older.id}.key"}
    assert not (tmp_path / "master.key").exists() and not (tmp_path / "master.key.previous").exists()
    server.start()
    try:
        with httpx.Client(base_url=server.url, headers=server.auth()) as http:
            assert http.post(f"{path}/tenant/access/listSecrets?{API}").json()["data"] == before
    finally:
        server.stop()
