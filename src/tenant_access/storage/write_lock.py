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

A lock file alone is prompt but not fair: the process that has just committed could take it
again before another, polling, noticed it was free (two workers on one file: p99 above 100 ms at
8 connections). So a waiter first takes a second lock, the turnstile (``<db>-lock-turn``), and
holds it while it waits: whoever wants the lock next must pass the turnstile, which is held by the
one already waiting. The turnstile is let go as soon as the lock is taken, and is always taken
before the lock, never while holding it, so the two cannot deadlock.

Waiting at the turnstile has a price for the holder: while a waiter holds it, every other
process's event loop finds the lock taken and hands its rotations to its writer thread, which
then waits its turn too. Writes that can wait (the event delivery process's claims and delivered
marks) first wait *politely*: they poll the lock alone, without the turnstile, for up to
:data:`POLITE_WAIT`, and get in between the request path's commits; only then do they queue at
the turnstile, so they are never starved. (One subscription, one connection: the delivery
process's waits at the turnstile had made half of the server's rotations take that detour.)
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: SQLite's busy handler alone, as before
    fcntl = None  # type: ignore[assignment]


def _try(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _poll(fd: int, deadline: float) -> bool:
    pause = 0.0001
    while not _try(fd):
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, 0.001)
    return True


#: How long a polite waiter polls the lock alone before it queues at the turnstile.
POLITE_WAIT = 0.05


def _close(fds: tuple[int | None, ...]) -> None:
    for fd in fds:
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


class Request:
    """A wait for the lock on the waiter thread (:meth:`WriteLock.request`)."""

    __slots__ = ("_granted", "_mutex", "_withdrawn", "on_granted")

    def __init__(self, on_granted: Callable[[Request], None]) -> None:
        self.on_granted = on_granted
        self._mutex = threading.Lock()
        self._granted = False
        self._withdrawn = False

    def withdraw(self) -> bool:
        """Give up the wait: True if it was still waiting (the lock, if it comes, is let go at
        once); False if the lock was already granted (``on_granted`` has run or is running)."""
        with self._mutex:
            if self._granted:
                return False
            self._withdrawn = True
            return True

    def _grant(self) -> bool:
        with self._mutex:
            if self._withdrawn:
                return False
            self._granted = True
            return True


class WriteLock:
    def __init__(self, database: Path) -> None:
        self.path = Path(f"{database}-lock")
        self.turnstile = Path(f"{database}-lock-turn")
        self._fd: int | None = None
        self._turn: int | None = None
        self._requests: queue.SimpleQueue[Request | None] = queue.SimpleQueue()
        self._waiter: threading.Thread | None = None

    def open(self) -> None:
        if fcntl is not None and self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            self._turn = os.open(self.turnstile, os.O_RDWR | os.O_CREAT, 0o600)

    def close(self) -> None:
        fds = (self._fd, self._turn)
        self._fd = self._turn = None
        if self._waiter is not None:
            # The waiter closes them once it is done with what is queued (a closed descriptor's
            # number may be reused at once, and a late flock on it would lock someone else's
            # file). Not joined: it may be blocked behind a holder that never lets go.
            self._requests.put(None)
            self._waiter = None
            return
        _close(fds)

    def try_acquire(self) -> bool:
        """Taken, or False at once (also when another process is waiting for it, at the
        turnstile). True when there is no lock to take (it is only a hint)."""
        if self._fd is None or self._turn is None:
            return True
        if not _try(self._turn):
            return False
        try:
            return _try(self._fd)
        finally:
            fcntl.flock(self._turn, fcntl.LOCK_UN)

    def acquire(self, timeout: float, *, polite: bool = False) -> bool:
        """Taken within ``timeout`` seconds, polling, holding the turnstile while it waits; False
        after that (the caller goes on to SQLite's own wait, which reports a lock held too long).
        ``polite``: first, for up to :data:`POLITE_WAIT`, without the turnstile."""
        if self._fd is None or self._turn is None:
            return True
        deadline = time.monotonic() + timeout
        if polite and _poll(self._fd, min(deadline, time.monotonic() + POLITE_WAIT)):
            return True
        if not _poll(self._turn, deadline):
            return False
        try:
            return _poll(self._fd, deadline)
        finally:
            fcntl.flock(self._turn, fcntl.LOCK_UN)

    def request(self, on_granted: Callable[[Request], None]) -> Request:
        """Wait for the lock on this lock's waiter thread, blocked in the kernel (holding the
        turnstile meanwhile), and call ``on_granted`` there once it is held, unless the request
        was withdrawn first (then the lock is let go at once).

        This is how the event loop waits: it cannot block, and polling (sleeps of 0.1 ms and
        more, or a writer thread whose statements each wait for the loop's interpreter lock) made
        every handover between two processes cost more than the transaction it waited for. The
        kernel wakes a waiter the moment the lock is let go."""
        request = Request(on_granted)
        if self._fd is None or self._turn is None:
            request._grant()
            on_granted(request)
            return request
        if self._waiter is None:
            self._waiter = threading.Thread(target=self._wait_for_requests, args=(self._fd, self._turn),
                                            name="sqlite-lock-waiter", daemon=True)
            self._waiter.start()
        self._requests.put(request)
        return request

    def _wait_for_requests(self, fd: int, turn: int) -> None:
        while True:
            request = self._requests.get()
            if request is None:
                _close((fd, turn))
                return
            try:
                fcntl.flock(turn, fcntl.LOCK_EX)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                finally:
                    fcntl.flock(turn, fcntl.LOCK_UN)
            except OSError:  # not granted: the requester's deadline hands its work on
                continue
            if request._grant():
                request.on_granted(request)
            else:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
