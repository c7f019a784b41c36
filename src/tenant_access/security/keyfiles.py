"""Secret files in the data directory that are created once, on first start, and read thereafter.

Both the token signing key and the master key live in such files. They hold base64 text (one line)
rather than raw bytes so an operator can back them up or move them into an environment variable
with ordinary tools. Creation is race-free: two servers starting at once on the same data directory
end up with the same key, because the file appears atomically (``os.link``) and only once.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import secrets
import stat
from pathlib import Path

from tenant_access.security.errors import KeyMaterialError

FILE_MODE = 0o600
DIR_MODE = 0o700
_MAX_FILE_BYTES = 4096


def decode_key_text(text: str, *, min_bytes: int, max_bytes: int, what: str) -> bytes:
    """Strict base64 of a key, with a length check; garbled input must never become a weaker key."""
    cleaned = text.strip()
    try:
        raw = base64.b64decode(cleaned.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise KeyMaterialError(f"{what} is not valid base64") from None
    if not min_bytes <= len(raw) <= max_bytes:
        expected = str(min_bytes) if min_bytes == max_bytes else f"{min_bytes} to {max_bytes}"
        raise KeyMaterialError(f"{what} must decode to {expected} bytes, not {len(raw)}")
    return raw


def read_key_file(path: Path, *, min_bytes: int, max_bytes: int, error: type[KeyMaterialError]) -> bytes:
    """Read a key file, refusing one that others could read (as ssh does with private keys)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise error(f"{path} does not exist") from None
    except OSError as exc:
        raise error(f"{path} cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{path} is not a regular file")
    if os.name == "posix" and info.st_mode & 0o077:
        mode = stat.S_IMODE(info.st_mode)
        raise error(f"{path} is readable by other users (mode {mode:o}); run chmod 600 on it")
    if info.st_size > _MAX_FILE_BYTES:
        raise error(f"{path} is too large to be a key file")
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        raise error(f"{path} cannot be read as base64 text") from None
    try:
        return decode_key_text(text, min_bytes=min_bytes, max_bytes=max_bytes, what=str(path))
    except KeyMaterialError as exc:
        raise error(str(exc)) from None


def load_or_create_key_file(
    path: Path,
    *,
    nbytes: int,
    max_bytes: int | None = None,
    create: bool = True,
    error: type[KeyMaterialError] = KeyMaterialError,
) -> bytes:
    """The key in ``path``; when the file does not exist and ``create`` is true, a new random key
    of ``nbytes``. An existing file may hold ``nbytes`` to ``max_bytes`` (default: exactly ``nbytes``).

    ``create=False`` is for callers that know a key must already exist (for example because the
    database holds values encrypted under it): silently making a new one would only move the
    failure to the first decryption.
    """
    upper = nbytes if max_bytes is None else max_bytes
    if path.exists() or not create:
        return read_key_file(path, min_bytes=nbytes, max_bytes=upper, error=error)
    key = secrets.token_bytes(nbytes)
    try:
        create_exclusively(path, base64.b64encode(key) + b"\n")
    except FileExistsError:
        # Another process won the race; its key is the key.
        return read_key_file(path, min_bytes=nbytes, max_bytes=upper, error=error)
    except OSError as exc:
        raise error(f"{path} cannot be created: {exc.strerror}") from None
    return key


def create_exclusively(path: Path, content: bytes) -> None:
    """Write a temporary 0600 file, then link it into place: the key file never exists half-written
    and an existing one is never replaced (:class:`FileExistsError`). Durable when this returns."""
    path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    tmp = _write_temporary(path, content)
    try:
        os.link(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    fsync_dir(path.parent)


def replace_atomically(path: Path, content: bytes) -> None:
    """Write a temporary 0600 file, fsync it, rename it over ``path``, fsync the directory.

    A crash at any instant leaves either the old file or the new one, whole, and once this returns
    the new one survives a power loss too (the rename is only durable with the directory's fsync).
    """
    path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    tmp = _write_temporary(path, content)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def remove_durably(path: Path) -> None:
    """Unlink ``path`` (already gone is fine) and make the removal survive a power loss."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries: renames, links and unlinks in it are durable afterwards."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_temporary(path: Path, content: bytes) -> Path:
    """A fsynced 0600 file next to ``path``, named so that readers of the directory skip it."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return tmp
