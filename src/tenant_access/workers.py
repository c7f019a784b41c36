"""``serve --workers N``: N server processes on one listening socket, and the parent that keeps them.

The parent binds the socket, does everything that must happen once (the TLS certificate, the
signing key, the master keyring, migrations, the demo service and the seed file) and only then
starts the workers: N workers starting at once would otherwise race to create the same key files
and apply the same migrations. Each worker is a fresh interpreter (not a fork: the parent holds a
logging thread, and a fork copies its locks in whatever state they are) that inherits the socket,
and the kernel hands each new connection to one of the processes waiting on it.

The workers are replicas on one store, and everything that keeps replicas correct keeps them
correct: every change is one database transaction; the caches of keys and configurations follow
SQLite's ``data_version`` or PostgreSQL's notifications (see ``docs/deployment.md``). What is per
process (rate limits, the failure limiter, the per-address connection cap) is per worker. Event
delivery (``--event-delivery process``) runs in one child of worker 0 only; ``inline`` delivers
from every worker.

The parent restarts a worker that dies, prints the "listening" line once all workers are ready,
and on SIGTERM or Ctrl-C stops the whole group. A worker whose parent is gone (killed with
SIGKILL) sees its settings pipe close and stops too: no orphan keeps serving the port.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

from tenant_access.config import Settings

log = logging.getLogger("tenant_access")

#: A worker that dies sooner than this after its start is restarted only after a pause, so a
#: worker that cannot start (a database gone) does not make the parent spin.
RESTART_BACKOFF = 1.0
STOP_TIMEOUT = 10.0
_WORKER_CODE = "from tenant_access.workers import worker_main; worker_main()"


def encode_settings(settings: Settings, ssl_files: tuple[Path, Path] | None) -> bytes:
    """The settings as one JSON line, for the worker's stdin (never its argv or environment, which
    other local users can read: they may hold the master key)."""
    values = {f.name: (str(v) if isinstance(v, Path) else v)
              for f in dataclasses.fields(settings) for v in [getattr(settings, f.name)]}
    tls = [str(ssl_files[0]), str(ssl_files[1])] if ssl_files else None
    return json.dumps({"settings": values, "tls": tls}).encode() + b"\n"


def decode_settings(line: bytes) -> tuple[Settings, tuple[Path, Path] | None]:
    raw = json.loads(line)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Settings):
        value = raw["settings"][f.name]
        values[f.name] = Path(value) if value is not None and "Path" in str(f.type) else value
    tls = raw["tls"]
    return Settings(**values), ((Path(tls[0]), Path(tls[1])) if tls else None)


@dataclass
class Worker:
    """One slot of the group: the process in it now, and the pipe on which it says it is ready."""

    index: int
    proc: subprocess.Popen[bytes] | None = None
    ready_fd: int = -1
    ready: bool = False
    started: float = 0.0
    restarts: int = 0
    pending_since: float | None = field(default=None)


class Supervisor:
    def __init__(self, settings: Settings, sock: socket.socket, ssl_files: tuple[Path, Path] | None,
                 count: int) -> None:
        self.settings = settings
        self.sock = sock
        self.ssl_files = ssl_files
        self.workers = [Worker(i) for i in range(count)]
        self.stopping = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)

    def spawn(self, worker: Worker) -> None:
        ready_r, ready_w = os.pipe()
        env = {**os.environ, "TENANT_ACCESS_WORKER_SOCKET": str(self.sock.fileno()),
               "TENANT_ACCESS_WORKER_READY": str(ready_w), "TENANT_ACCESS_WORKER_INDEX": str(worker.index)}
        proc = subprocess.Popen([sys.executable, "-c", _WORKER_CODE], stdin=subprocess.PIPE, env=env,  # noqa: S603
                                pass_fds=(self.sock.fileno(), ready_w))
        os.close(ready_w)
        stdin: IO[bytes] = proc.stdin  # type: ignore[assignment]
        stdin.write(encode_settings(self.settings, self.ssl_files))
        stdin.flush()  # and kept open: its end tells the worker that the parent is gone
        worker.proc, worker.ready_fd, worker.ready = proc, ready_r, False
        worker.started = time.monotonic()

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        if not self.stopping:
            print("tenant-access: stopping…", flush=True)
        self.stopping = True
        with contextlib.suppress(OSError):  # a full wake-up pipe has already woken the loop
            os.write(self._wake_w, b"x")

    def _wait(self, timeout: float) -> list[Worker]:
        """Sleep until a signal, a worker's readiness, or ``timeout``; answers the workers that said ready."""
        fds = [self._wake_r, *(w.ready_fd for w in self.workers if w.ready_fd >= 0)]
        readable, _, _ = select.select(fds, [], [], timeout)
        if self._wake_r in readable:
            os.read(self._wake_r, 64)
        became = []
        for worker in self.workers:
            if worker.ready_fd >= 0 and worker.ready_fd in readable:
                if os.read(worker.ready_fd, 1):
                    worker.ready = True
                    became.append(worker)
                os.close(worker.ready_fd)
                worker.ready_fd = -1
        return became

    def _reap(self, worker: Worker) -> int | None:
        """The exit code of the worker's process when it has exited (its pipes closed), else None."""
        if worker.proc is None:
            return None
        code = worker.proc.poll()
        if code is None:
            return None
        if worker.proc.stdin is not None:
            worker.proc.stdin.close()
        if worker.ready_fd >= 0:
            os.close(worker.ready_fd)
            worker.ready_fd = -1
        worker.proc = None
        return code

    def start(self) -> None:
        """All workers, each ready; a worker that fails to start stops the start (exit code 1)."""
        for worker in self.workers:
            self.spawn(worker)
        while not all(w.ready for w in self.workers):
            self._wait(0.1)
            for worker in self.workers:
                code = self._reap(worker)
                if code is not None:
                    self.stop()
                    print(f"tenant-access: worker {worker.index} exited with code {code} during start",
                          file=sys.stderr, flush=True)
                    raise SystemExit(1)
            if self.stopping:
                self.stop()
                raise SystemExit(0)

    def run(self) -> None:
        """Until a signal: restart every worker that exits."""
        while not self.stopping:
            self._wait(0.2)
            now = time.monotonic()
            for worker in self.workers:
                code = self._reap(worker)
                if code is not None and not self.stopping:
                    log.warning("worker %d exited with code %s; restarting it", worker.index, code)
                    worker.pending_since = now if now - worker.started < RESTART_BACKOFF else now - RESTART_BACKOFF
                if worker.proc is None and worker.pending_since is not None and not self.stopping \
                        and now - worker.pending_since >= RESTART_BACKOFF:
                    worker.pending_since = None
                    worker.restarts += 1
                    self.spawn(worker)
        self.stop()

    def stop(self) -> None:
        """SIGTERM to every worker, then SIGKILL to any still running after ``STOP_TIMEOUT``."""
        self.stopping = True
        for worker in self.workers:
            if worker.proc is not None and worker.proc.poll() is None:
                worker.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for worker in self.workers:
            if worker.proc is None:
                continue
            try:
                worker.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                worker.proc.wait(5)
            self._reap(worker)


def supervise(settings: Settings, sock: socket.socket, listening: Any, ssl_files: tuple[Path, Path] | None,
              *, demo: bool) -> None:
    from tenant_access import server

    # Once, before any worker: migrations, the master keyring, the demo service and the seed file.
    for line in asyncio.run(server.provision(settings, demo=demo, seed=settings.seed)):
        print(line, flush=True)
    if settings.auth != "none":
        from tenant_access.security.signing_keys import load_current

        load_current(settings.data_dir)
    from tenant_access.runtime import open_store_for

    described = open_store_for(settings).describe()
    count = settings.workers
    supervisor = Supervisor(settings, sock, ssl_files, count)
    previous = {sig: signal.signal(sig, supervisor._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        supervisor.start()
        server.announce_listening(settings, listening, ssl_files, described, demo=demo, workers=count)
        supervisor.run()
    finally:
        supervisor.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _exit_with_parent() -> None:
    """Stop this worker when its stdin (the parent's end of the pipe) closes: the parent is gone."""
    while sys.stdin.buffer.read(4096):
        pass
    os.kill(os.getpid(), signal.SIGTERM)


def worker_main() -> None:
    """A worker: the settings from stdin, the socket and the readiness pipe from the environment."""
    settings, ssl_files = decode_settings(sys.stdin.buffer.readline())
    sock = socket.socket(fileno=int(os.environ.pop("TENANT_ACCESS_WORKER_SOCKET")))
    ready_fd = int(os.environ.pop("TENANT_ACCESS_WORKER_READY"))
    index = os.environ.pop("TENANT_ACCESS_WORKER_INDEX", "?")
    from tenant_access import server

    if index != "0" and settings.event_delivery == "process":
        # One delivery process for the group, worker 0's child (restarted with it): N would only
        # compete for the same claims.
        settings = dataclasses.replace(settings, event_delivery="off")
    server.configure_logging(settings.log_level, settings.log_format)
    threading.Thread(target=_exit_with_parent, name="parent-watch", daemon=True).start()
    from tenant_access.http.app import create_app

    app = create_app(settings)

    def ready() -> None:
        os.write(ready_fd, b"1")
        os.close(ready_fd)

    app.on_started = ready
    log.debug("worker %s serving", index)
    server.run_uvicorn(app, settings, sock, ssl_files, worker=True)
