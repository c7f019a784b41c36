"""Keys at rest: encrypted, refused under the wrong master key, re-encrypted online."""

from __future__ import annotations

import base64
import secrets
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.backends import Backend, DbServer
from tests.conftest import API, SERVICE_BODY, service_path


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tenant_access", *args], capture_output=True, text=True,
                          timeout=60, env=env, check=False)


def test_rotation_of_the_master_key_while_the_server_runs(db_backend: Backend, tmp_path: Path) -> None:
    server = db_backend.server(tmp_path).start()
    path = service_path("masterkey")
    try:
        with httpx.Client(base_url=server.url, headers=server.auth()) as http:
            assert http.put(f"{path}?{API}", json=SERVICE_BODY).status_code == 201
            before = {a: http.post(f"{path}/tenant/{a}/listSecrets?{API}").json()["data"] for a in
                      ("access", "gitAccess")}
            old_key = (tmp_path / "master.key").read_text()
            rotated = _cli("rotate-master-key", "--data-dir", str(tmp_path), *server.database.args())
            assert rotated.returncode == 0, rotated.stderr
            assert "re-encrypted 4 stored key(s)" in rotated.stdout
            assert (tmp_path / "master.key").read_text() != old_key
            assert (tmp_path / "master.key.previous").read_text() == old_key
            assert oct((tmp_path / "master.key").stat().st_mode & 0o777) == "0o600"
            # The running server follows: reads, and a rotation under the new key.
            after = {a: http.post(f"{path}/tenant/{a}/listSecrets?{API}").json()["data"] for a in
                     ("access", "gitAccess")}
            assert after == before
            assert http.post(f"{path}/tenant/access/regenerateSecondaryKey?{API}").status_code == 200
        # Everything is now under the new key alone: drop the previous one and restart.
        (tmp_path / "master.key.previous").unlink()
        server.restart()
        with httpx.Client(base_url=server.url, headers=server.auth()) as http:
            keys = http.post(f"{path}/tenant/gitAccess/listSecrets?{API}")
            assert keys.status_code == 200
            assert keys.json()["data"]["primary_key"] == before["gitAccess"]["primary_key"]
    finally:
        server.stop()


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
    for name in ("master.key", "signing-key"):
        assert oct((tmp_path / name).stat().st_mode & 0o777) == "0o600", name
