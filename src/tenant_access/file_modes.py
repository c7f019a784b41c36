"""Keeping the data directory private: 0700 directories, 0600 files, whatever existed before.

The data directory holds the database (audit trail, client-secret hashes, encrypted keys), the
master keyring, the token signing key and the TLS key. A directory an operator created beforehand
with the usual 0755, or a database copied in with 0644, would leave all of that readable by every
local user; the key files themselves are refused when readable by others, the database was not.
This runs wherever the store is opened (server start, CLI commands), fixes what it finds, and says
so in one log line.

Only the data directory, the files directly in it and the directories this program makes there
are touched (symbolic links are not followed), plus the SQLite files themselves when the database
URL puts them elsewhere: their directory belongs to the operator.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from tenant_access.security.keyfiles import DIR_MODE, FILE_MODE

log = logging.getLogger("tenant_access.security")

#: The directories this program makes in the data directory (the keyring, the self-signed TLS
#: certificate and key). Any other directory there is left as it is: the data directory's own 0700
#: already keeps others out of it, and it may belong to something else.
OWN_DIRECTORIES = frozenset({"master-keys", "tls"})


def make_private(data_dir: Path, extra_files: Iterable[Path] = ()) -> list[str]:
    """Create ``data_dir`` (0700) if missing, then tighten it, everything in it and ``extra_files``;
    answers what was changed, as ``"path (0755 -> 0700)"``."""
    data_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    changed: list[str] = []
    failed: list[str] = []
    _tighten(data_dir, changed, failed)
    for entry in sorted(os.listdir(data_dir)):
        path = data_dir / entry
        if entry in OWN_DIRECTORIES:
            _tighten(path, changed, failed)
            for root, dirs, files in os.walk(path, followlinks=False):
                for name in sorted([*dirs, *files]):
                    _tighten(Path(root) / name, changed, failed)
        elif not path.is_dir():
            _tighten(path, changed, failed)
    for path in extra_files:
        _tighten(path, changed, failed)
    if changed:
        log.warning("made the data files private to their owner (others could read them): %s", ", ".join(changed))
    if failed:
        log.error("could not make these data files private: %s", ", ".join(failed))
    return changed


def _tighten(path: Path, changed: list[str], failed: list[str]) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    mode = stat.S_IMODE(info.st_mode)
    if stat.S_ISDIR(info.st_mode):
        wanted = mode & ~0o077
    elif stat.S_ISREG(info.st_mode):
        wanted = mode & FILE_MODE  # no group or other bits, and nothing executable
    else:
        return  # symbolic links (never followed), sockets, fifos
    if wanted == mode:
        return
    try:
        os.chmod(path, wanted, follow_symlinks=False)
    except OSError as exc:
        failed.append(f"{path} ({exc.strerror})")
        return
    changed.append(f"{path} ({mode:04o} -> {wanted:04o})")
