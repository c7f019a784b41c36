"""Event delivery in a process of its own (``tenant-access events deliver``), and the server's
supervision of it as a child (``--event-delivery process``, the default).

Why a process: the delivery worker's signing, HTTP exchanges, claims and delivered marks are CPU
that, in the server process, the request path shares (one event loop, one GIL). In a child, the
request path pays only for the outbox row a change writes in its own transaction. The child finds
new events by polling the store (a read every ``DeliveryPolicy.poll`` seconds, nothing when no
subscription exists) rather than being told of each commit: a commit costs the server no signal,
no wake-up, no query.

The server starts the child at its start, restarts it when it exits (after a pause if it died
young, so a child that cannot start does not spin), and stops it at its own stop. The settings go
down the child's stdin, as for ``--workers`` (never argv or the environment, which other local
users can read: they may hold the master key); that pipe staying open is how the child knows its
server lives, so a server killed with SIGKILL leaves no orphan delivering. The child reports its
counters and the store's backlog on stdout, one JSON line when they change, and the server serves
them in ``/metrics`` as if it delivered itself (counters summed over the children it has run).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import IO, Any

from tenant_access.config import Settings
from tenant_access.delivery import Deliverer, DeliveryCounts, DeliveryPolicy
from tenant_access.domain.keys import utcnow
from tenant_access.storage.outbox import SubscriptionStats

log = logging.getLogger("tenant_access.events")

#: The child runs below the server's priority (a nice of 5): on a machine with a core to spare it
#: delivers at full speed, and where the server needs every core its requests come first.
CHILD_CODE = "import os; os.nice(5); from tenant_access.delivery_process import child_main; child_main()"
#: The child starts this long after the server's first answer: a Python start of its own (about
#: 0.3 s of CPU) beside the server's first calls made them several times slower. Events committed
#: meanwhile are in the outbox and go out when it is up.
START_DELAY = 1.0
#: Seconds a child whose server is gone has to finish its cleanup before it exits regardless.
EXIT_GRACE = 8.0
#: A child that exits sooner than this after its start is started again only after this pause.
RESTART_BACKOFF = 1.0
STOP_TIMEOUT = 5.0
#: How often the child looks whether its figures changed (it writes a line only when they did).
REPORT_EVERY = 1.0
_TABLES = ("delivered", "retried", "dead_lettered")


def policy_for(settings: Settings) -> DeliveryPolicy:
    """The delivery rules of these settings; the same in the server (handshakes) and its child."""
    policy = DeliveryPolicy(
        retry_window=settings.event_retry_window, backoff_base=settings.event_retry_delay,
        attempt_timeout=settings.event_attempt_timeout, concurrency=settings.event_concurrency,
        allow_private=settings.allow_private_event_destinations)
    if settings.emulator_controls_enabled:
        policy.own_sink = settings.base_url + "/_emulator/sink/"
    return policy


def encode_report(counts: DeliveryCounts, stats: list[SubscriptionStats]) -> str:
    return json.dumps({
        **{name: getattr(counts, name) for name in _TABLES},
        "stats": [[s.subscription_key, s.pending, s.dead, s.oldest_pending.isoformat() if s.oldest_pending else None]
                  for s in stats],
    }, sort_keys=True, separators=(",", ":"))


def decode_report(line: bytes) -> tuple[DeliveryCounts, list[SubscriptionStats]]:
    raw = json.loads(line)
    counts = DeliveryCounts(**{name: {str(k): int(v) for k, v in raw[name].items()} for name in _TABLES})
    stats = [SubscriptionStats(str(key), int(pending), int(dead),
                               _dt.datetime.fromisoformat(oldest) if oldest else None)
             for key, pending, dead, oldest in raw["stats"]]
    return counts, stats


async def deliver(settings: Settings, stop: asyncio.Event, *, report: IO[str] | None = None,
                  ready: Callable[[], None] | None = None) -> None:
    """Deliver from the store of ``settings`` until ``stop`` is set; figures to ``report`` when they change."""
    from tenant_access.runtime import open_store_for

    store = open_store_for(settings)
    await store.open()
    deliverer = Deliverer(store, policy_for(settings))
    try:
        deliverer.start()
        if ready is not None:
            ready()
        last = ""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), REPORT_EVERY)
            if report is not None:
                line = encode_report(deliverer.counts, deliverer.stats)
                if line != last:
                    last = line
                    report.write(line + "\n")
                    report.flush()
    finally:
        # Bounded: a stop must not hang on a destination, a pool or a store that does not answer.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(deliverer.stop(), EXIT_GRACE / 2)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(store.close(), EXIT_GRACE / 2)


def child_main() -> None:
    """The child a server started: settings from stdin; stops at SIGTERM or when stdin closes."""
    from tenant_access import server
    from tenant_access.workers import decode_settings

    settings, _ = decode_settings(sys.stdin.buffer.readline())
    server.configure_logging(settings.log_level, settings.log_format)
    _run(_serve_until_stopped(settings, watch_parent=True))


def run_standalone(settings: Settings) -> None:
    """``tenant-access events deliver``: until SIGTERM or Ctrl-C."""
    _run(_serve_until_stopped(settings, watch_parent=False))


def _run(main: Coroutine[Any, Any, None]) -> None:
    """With the server's switch interval: this process's writes run on its store's writer thread,
    which holds the database's write lock from its first statement to its COMMIT, and with the
    default interval (5 ms) each statement could wait that long for the interpreter lock that the
    busy delivery loop holds, while the server's rotations waited for the write lock.

    On the standard event loop, not uvloop: uvloop saved about 15 % of a delivery's exchange (67
    against 79 µs), but with it two children in the test suite never finished stopping."""
    from tenant_access.server import SWITCH_INTERVAL

    sys.setswitchinterval(SWITCH_INTERVAL)
    asyncio.run(main)


async def _serve_until_stopped(settings: Settings, *, watch_parent: bool) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    if watch_parent:
        stdin = sys.stdin.fileno()

        def watch() -> None:
            # The raw descriptor, not sys.stdin: a daemon thread blocked in a buffered read holds
            # its lock, and the interpreter's exit would abort on it.
            while os.read(stdin, 4096):
                pass
            loop.call_soon_threadsafe(stop.set)
            # The server is gone (or stopping us): whatever the cleanup waits for, this process
            # does not outlive it by more than a few seconds.
            time.sleep(EXIT_GRACE)
            os._exit(0)

        threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    await deliver(settings, stop, report=sys.stdout if watch_parent else None)


def _add(into: DeliveryCounts, more: DeliveryCounts) -> DeliveryCounts:
    total = DeliveryCounts()
    for name in _TABLES:
        table: dict[str, int] = dict(getattr(into, name))
        for key, value in getattr(more, name).items():
            table[key] = table.get(key, 0) + value
        setattr(total, name, table)
    return total


class DeliveryChild:
    """The server's side: runs the child, restarts it, and holds its latest figures for ``/metrics``
    (the same ``counts``, ``stats`` and ``clock`` a :class:`Deliverer` offers)."""

    def __init__(self, settings: Settings, clock: Callable[[], _dt.datetime] = utcnow) -> None:
        self.settings = settings
        self.clock = clock
        self.counts = DeliveryCounts()
        self.stats: list[SubscriptionStats] = []
        self.restarts = 0
        #: Counters of the children that have exited (a new child counts from zero).
        self._before = DeliveryCounts()
        self._proc: Any = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else int(self._proc.pid)

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.ensure_future(self._keep())

    async def _keep(self) -> None:
        await asyncio.sleep(START_DELAY)
        while not self._stopping:
            started = time.monotonic()
            try:
                code = await self._run_one()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # could not start it (e.g. no more processes): try again later
                log.warning("event delivery process failed: %s: %s", type(exc).__name__, exc)
                code = None
            self._before, self._proc = self.counts, None
            if self._stopping:
                return
            self.restarts += 1
            log.warning("event delivery process exited with code %s; restarting it", code)
            if time.monotonic() - started < RESTART_BACKOFF:
                await asyncio.sleep(RESTART_BACKOFF)

    async def _run_one(self) -> int | None:
        from tenant_access.workers import encode_settings

        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHILD_CODE, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            start_new_session=True)  # a Ctrl-C reaches the server, which stops its child itself
        self._proc = proc
        assert proc.stdin is not None
        assert proc.stdout is not None
        proc.stdin.write(encode_settings(self.settings, None))
        await proc.stdin.drain()  # and kept open: its end tells the child that the server is gone
        async for line in proc.stdout:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                counts, self.stats = decode_report(line)
                self.counts = _add(self._before, counts)
        code: int = await proc.wait()
        proc.stdin.close()
        return code

    async def stop(self) -> None:
        """SIGTERM to the child (it finishes its bookkeeping), SIGKILL after ``STOP_TIMEOUT``."""
        self._stopping = True
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None


class NoDelivery:
    """``--event-delivery off``: this process delivers nothing, and reports no figures."""

    def __init__(self) -> None:
        self.counts = DeliveryCounts()
        self.stats: list[SubscriptionStats] = []
        self.clock = utcnow

    def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass
