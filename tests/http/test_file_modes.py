"""The data directory is private to its owner whatever existed before (issue 12, defect 10): the
database holds the audit trail and client-secret hashes, and other local users must not read it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tests.keystore import cli
from tests.serverproc import ServerProcess


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _loose(data_dir: Path) -> dict[str, str]:
    """Everything under ``data_dir`` (itself included) that others could read or enter."""
    found = {}
    for path in [data_dir, *data_dir.rglob("*")]:
        wanted = 0o700 if path.is_dir() else 0o600
        if _mode(path) & ~wanted:
            found[str(path.relative_to(data_dir))] = oct(_mode(path))
    return found


def test_a_data_directory_made_0755_beforehand_ends_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    os.chmod(data_dir, 0o755)
    old = os.umask(0o022)  # the usual umask (the server inherits it), whatever the test runner's
    try:
        server = ServerProcess(data_dir).start()
        server.stop()
    finally:
        os.umask(old)
    assert (data_dir / "tenant-access.db").exists()
    assert _loose(data_dir) == {}
    assert _mode(data_dir) == 0o700
    assert _mode(data_dir / "tenant-access.db") == 0o600


def test_loose_files_left_from_before_are_tightened_and_named_in_the_log(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir).start()
    server.stop()
    loosened = [data_dir / "tenant-access.db", *(data_dir / "master-keys").glob("*.key")]
    for path in loosened:
        os.chmod(path, 0o644)
    os.chmod(data_dir, 0o755)
    os.chmod(data_dir / "master-keys", 0o755)
    (data_dir / "backup.sql").write_text("x")
    os.chmod(data_dir / "backup.sql", 0o664)
    assert len(_loose(data_dir)) == len(loosened) + 3

    server = ServerProcess(data_dir).start()  # the key files are readable again: the server starts
    server.stop()
    assert _loose(data_dir) == {}
    lines = [line for line in server.log().splitlines() if "made the data files private" in line]
    assert len(lines) == 1, server.log()
    for path in [*loosened, data_dir / "backup.sql"]:
        assert f"{path} (0644 -> 0600)" in lines[0] or f"{path} (0664 -> 0600)" in lines[0], (path, lines[0])
    assert f"{data_dir} (0755 -> 0700)" in lines[0]
    server = ServerProcess(data_dir).start()  # nothing left to say the next time
    server.stop()
    assert "made the data files private" not in server.log()


def test_a_database_elsewhere_is_made_private_but_not_its_directory(tmp_path: Path) -> None:
    elsewhere = tmp_path / "shared"
    elsewhere.mkdir()
    os.chmod(elsewhere, 0o755)
    database = elsewhere / "ta.db"
    args = ["--data-dir", str(tmp_path / "data"), "--database-url", f"sqlite:///{database}"]
    created = cli("db", "upgrade", *args)
    assert created.returncode == 0, created.stderr
    assert _mode(database) == 0o600  # created private
    os.chmod(database, 0o644)
    upgraded = cli("db", "upgrade", *args)  # a CLI command that opens the store
    assert upgraded.returncode == 0, upgraded.stderr
    assert _mode(database) == 0o600
    assert f"{database} (0644 -> 0600)" in upgraded.stderr
    assert _mode(elsewhere) == 0o755  # the operator's directory, not ours
