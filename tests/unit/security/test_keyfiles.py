from __future__ import annotations

import base64
import os
import stat
import threading
from pathlib import Path

import pytest

from tenant_access.security.errors import KeyMaterialError, MasterKeyError
from tenant_access.security.keyfiles import decode_key_text, load_or_create_key_file, read_key_file

posix_only = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")


def test_created_file_is_base64_text_mode_0600_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "key"
    key = load_or_create_key_file(path, nbytes=32)
    assert base64.b64decode(path.read_text().strip()) == key
    assert load_or_create_key_file(path, nbytes=32) == key
    assert [p.name for p in path.parent.iterdir()] == ["key"]  # no temporary file left behind
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_concurrent_first_starts_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "key"
    results: list[bytes] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        results.append(load_or_create_key_file(path, nbytes=32))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8
    assert len(set(results)) == 1


@posix_only
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o666])
def test_files_readable_by_others_are_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "key"
    load_or_create_key_file(path, nbytes=32)
    path.chmod(mode)
    with pytest.raises(KeyMaterialError, match="chmod 600"):
        load_or_create_key_file(path, nbytes=32)


@posix_only
def test_a_0400_file_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "key"
    key = load_or_create_key_file(path, nbytes=32)
    path.chmod(0o400)
    assert load_or_create_key_file(path, nbytes=32) == key


@pytest.mark.parametrize("content", [b"", b"short", base64.b64encode(b"x" * 16), b"\xff\xfe", b"A" * 5000])
def test_bad_contents_are_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(KeyMaterialError):
        load_or_create_key_file(path, nbytes=32)


def test_error_class_is_the_callers_choice(tmp_path: Path) -> None:
    with pytest.raises(MasterKeyError):
        read_key_file(tmp_path / "absent", min_bytes=32, max_bytes=32, error=MasterKeyError)
    (tmp_path / "dir").mkdir()
    with pytest.raises(MasterKeyError, match="not a regular file"):
        read_key_file(tmp_path / "dir", min_bytes=32, max_bytes=32, error=MasterKeyError)


def test_longer_keys_accepted_up_to_max_bytes(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text(base64.b64encode(b"y" * 64).decode())
    path.chmod(0o600)
    assert load_or_create_key_file(path, nbytes=32, max_bytes=64) == b"y" * 64
    with pytest.raises(KeyMaterialError):
        load_or_create_key_file(path, nbytes=32)


def test_decode_key_text_never_echoes_the_value() -> None:
    with pytest.raises(KeyMaterialError) as caught:
        decode_key_text("c2VjcmV0LXZhbHVl", min_bytes=32, max_bytes=32, what="the key")
    assert "c2VjcmV0" not in str(caught.value)
