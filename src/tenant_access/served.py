"""Which server last used a data directory, so ``tenant-access token`` can warn before it signs a
token no running server will accept.

A token is signed with ``<data-dir>/signing-key``. Made for one data directory and sent to a server
started with another, it is refused with "signed with a key this server does not have"; the usual
cause is a forgotten ``--data-dir`` on one of the two commands. The server writes ``server.json``
(its URL and process id) when it starts listening; the token command reads it.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

RECORD_FILE = "server.json"


@dataclass(frozen=True, slots=True)
class LastServer:
    url: str
    pid: int
    #: The server's public URL, the ``iss`` of its tokens (empty in a record from an older server).
    issuer: str = ""

    @property
    def running(self) -> bool:
        """Whether that process still exists on this machine (a reused pid says yes: a warning is
        only a hint, and a false "running" costs no more than no warning at all)."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def record(data_dir: Path, url: str, issuer: str = "") -> None:
    """Best effort: a read-only data directory must not stop a server from serving."""
    path = data_dir / RECORD_FILE
    with contextlib.suppress(OSError):
        tmp = path.with_name(f".{RECORD_FILE}.{os.getpid()}")
        # 0600 like everything else in the data directory (which start-up makes private).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps({"url": url, "pid": os.getpid(), "issuer": issuer or url}) + "\n")
        tmp.replace(path)


def last(data_dir: Path) -> LastServer | None:
    try:
        data = json.loads((data_dir / RECORD_FILE).read_text(encoding="utf-8"))
        return LastServer(str(data["url"]), int(data["pid"]), str(data.get("issuer", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def warning(data_dir: Path) -> str | None:
    """What to tell someone about to sign a token with ``data_dir``'s key, or None when a server
    using it is running."""
    found = last(data_dir)
    if found is not None and found.running:
        return None
    where = (f"no server has used the data directory {data_dir}" if found is None
             else f"the server that used the data directory {data_dir} ({found.url}) is no longer running")
    return (f"tenant-access: warning: {where}; a server started with another --data-dir refuses this token "
            "(give the server's --data-dir here)")
