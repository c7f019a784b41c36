"""The lock every tenant-access process takes before SQLite's own write lock on a shared file.

SQLite lets one connection write at a time; another that finds the file locked waits in SQLite's
busy handler, which sleeps 1, 2, 5, 10, 15, 20, 25 ms... and tries again. Between processes
that each hold the lock for a fraction of a millisecond (the server and its event delivery
process, or ``serve --workers``), those sleeps were most of the wait: a delivery process writing
its claims and delivered marks a few dozen times a second cost the server's rotations about a
quarter of their rate. An advisory lock on a file beside the database hands over as soon as it is
released: the event loop only tries it (never waits), the writer thread polls it every 0.1 to
2 ms for at most the busy timeout, and then goes on to SQLite's own wait as before, so a process
that does not take this lock (an older build, the sqlite3 shell) is still waited for correctly.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: SQLite's busy handler alone, as before
    fcntl = None  # type: ignore[assignment]


class WriteLock:
    def __init__(self, database: Path) -> None:
        self.path = Path(f"{database}-lock")
        self._fd: int | None = None

    def open(self) -> None:
        if fcntl is not None and self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def try_acquire(self) -> bool:
        """Taken, or False at once. True when there is no lock to take (it is only a hint)."""
        if self._fd is None:
            return True
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def acquire(self, timeout: float) -> bool:
        """Taken within ``timeout`` seconds, polling; False after that (the caller goes on to
        SQLite's own wait, which reports a lock held for too long)."""
        deadline = time.monotonic() + timeout
        pause = 0.0001
        while not self.try_acquire():
            if time.monotonic() >= deadline:
                return False
            time.sleep(pause)
            pause = min(pause * 2, 0.002)
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
