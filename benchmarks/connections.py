"""Many connections: a thousand keep-alive clients at once, and ten thousand connections in a burst.

Run: ``.venv/bin/python -m benchmarks.connections [--connections 1000] [--seconds 10] [--burst 10000]
[--workers N]``. It starts the real server (strict authentication, SQLite with ``synchronous=FULL``,
encryption and audit on) with ``--max-connections-per-address`` given explicitly (128, the default,
stated so the run says what it relied on), and spreads its connections over several loopback source
addresses (127.0.0.2 and up, a hundred connections each), as many clients would be: the cap is per
client address, and one address holding a thousand connections is what it exists to refuse.

- **keep-alive**: ``--connections`` connections, each sending requests one after another on the
  same connection for ``--seconds``: 4 in 5 a ``GET`` of a configuration, 1 in 5 a regeneration of a
  key (a durable write). Every answer must be 200; anything else (a status, a reset, a timeout) is an
  error. Reported: requests, errors, p50/p99 latency (as this client saw it: the client is Python on
  the same two cores, so its own scheduling is in the figure), and the server's memory (RSS of
  every server process) idle, at its peak during the run, and after.
- **burst**: ``--burst`` connections opened and closed, ``--burst-concurrency`` at a time: half
  send nothing and close, half ask ``/healthz`` and close. Meanwhile a monitor asks ``/healthz`` on a
  new connection from 127.0.0.1 every 50 ms: every one must be answered (the server stays up and
  answers throughout), and its slowest answer is reported.

The process raises its own open-file limit to the hard limit, as the server does at start.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchmarks.run import API, BODY, ROOT, Server, service_path

PER_ADDRESS = 100
CAP = 128


def raise_fd_limit() -> int:
    """The client's open-file limit raised to its hard limit, as the server does (it holds one fd a connection)."""
    from tenant_access.server import raise_fd_limit as server_raise

    return server_raise()


def source(index: int, per_address: int = PER_ADDRESS) -> str:
    """The loopback address of the ``index``-th connection: 127.0.0.2, .3, ... ``per_address`` each."""
    n = 2 + index // per_address
    return f"127.0.{n // 250}.{n % 250 + 1}" if n >= 250 else f"127.0.0.{n}"


def server_pids(pid: int) -> list[int]:
    """The server process and its workers (with ``--workers``)."""
    pids = [pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                pids.append(int(entry.name))
    return pids


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


async def _answer(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 answer (with Content-Length) and give its status."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("closed by the server")
    status = int(status_line.split()[1])
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


def _request(method: str, path: str, token: str, close: bool = False) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "host: bench", f"authorization: Bearer {token}"]
    if method == "POST":
        lines.append("content-length: 0")
    if close:
        lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@dataclass
class KeepAliveResult:
    connections: int
    seconds: float
    requests: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    rss_idle_mib: float = 0.0
    rss_peak_mib: float = 0.0
    rss_after_mib: float = 0.0


def _summarise(result: KeepAliveResult, latencies: list[float], errors: Counter[str], elapsed: float) -> None:
    result.requests = len(latencies)
    result.errors = sum(errors.values())
    result.error_kinds = dict(errors)
    result.rps = len(latencies) / elapsed
    if latencies:
        ordered = sorted(latencies)
        result.p50_ms = statistics.median(ordered) * 1000
        result.p99_ms = ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1000
        result.max_ms = ordered[-1] * 1000


class _KeepAlive:
    """The clients of :func:`keep_alive`: all connections open first, then all send until the deadline."""

    def __init__(self, host: str, port: int, token: str, path: str, connections: int, per_address: int) -> None:
        self.host, self.port, self.connections, self.per_address = host, port, connections, per_address
        self.read = _request("GET", f"{path}/tenant/access?{API}", token)
        self.write = _request("POST", f"{path}/tenant/gitAccess/regenerateSecondaryKey?{API}", token)
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()
        self.opening = asyncio.Semaphore(200)  # connections being opened at once (the SYN queue is 2,048 here)
        self.start = asyncio.Event()
        self.all_open = asyncio.Event()
        self.settled = 0
        self.deadline = 0.0

    def _settle(self) -> None:
        self.settled += 1
        if self.settled == self.connections:
            self.all_open.set()

    async def client(self, index: int) -> None:
        async with self.opening:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(
                    self.host, self.port, local_addr=(source(index, self.per_address), 0)), 30)
            except (OSError, TimeoutError) as exc:
                self.errors[f"connect: {type(exc).__name__}"] += 1
                self._settle()
                return
        self._settle()
        await self.start.wait()
        n = index
        try:
            while time.perf_counter() < self.deadline:
                n += 1
                began = time.perf_counter()
                writer.write(self.write if n % 5 == 0 else self.read)
                status = await asyncio.wait_for(_answer(reader), 30)
                self.latencies.append(time.perf_counter() - began)
                if status != 200:
                    self.errors[f"status {status}"] += 1
        except (OSError, TimeoutError, ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
            self.errors[type(exc).__name__] += 1
        finally:
            writer.close()


async def keep_alive(host: str, port: int, token: str, path: str, *, connections: int, seconds: float,
                     pids: list[int], per_address: int = PER_ADDRESS) -> KeepAliveResult:
    """``connections`` keep-alive connections, each sending requests for ``seconds`` (1 in 5 a rotation)."""
    result = KeepAliveResult(connections, seconds, rss_idle_mib=rss_mib(pids))
    run = _KeepAlive(host, port, token, path, connections, per_address)

    async def sample_memory() -> None:
        while not run.start.is_set() or time.perf_counter() < run.deadline:
            result.rss_peak_mib = max(result.rss_peak_mib, rss_mib(pids))
            await asyncio.sleep(0.1)

    sampler = asyncio.create_task(sample_memory())
    tasks = [asyncio.create_task(run.client(i)) for i in range(connections)]
    await run.all_open.wait()  # every connection open before the clock starts
    await asyncio.sleep(0.2)
    began = time.perf_counter()
    run.deadline = began + seconds
    run.start.set()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - began
    await sampler
    _summarise(result, run.latencies, run.errors, elapsed)
    await asyncio.sleep(0.5)
    result.rss_after_mib = rss_mib(pids)
    return result


@dataclass
class BurstResult:
    connections: int
    concurrency: int
    seconds: float = 0.0
    failed: int = 0
    failure_kinds: dict[str, int] = field(default_factory=dict)
    health_checks: int = 0
    health_failures: int = 0
    health_max_ms: float = 0.0
    rss_after_mib: float = 0.0


async def _health(host: str, port: int) -> float:
    began = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, port, local_addr=("127.0.0.1", 0))
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n")
        status = await _answer(reader)
    finally:
        writer.close()
    if status != 200:
        raise ConnectionError(f"status {status}")
    return time.perf_counter() - began


async def burst(host: str, port: int, *, connections: int, concurrency: int, pids: list[int],
                per_address: int = PER_ADDRESS) -> BurstResult:
    """``connections`` connections opened and closed, ``concurrency`` at a time, while a monitor asks /healthz."""
    result = BurstResult(connections, concurrency)
    failures: Counter[str] = Counter()
    gate = asyncio.Semaphore(concurrency)
    done = asyncio.Event()
    health = b"GET /healthz HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n"

    async def one(index: int) -> None:
        async with gate:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port, local_addr=(source(index, per_address), 0)), 30)
                try:
                    if index % 2:
                        writer.write(health)
                        if await asyncio.wait_for(_answer(reader), 30) != 200:
                            failures["status"] += 1
                finally:
                    writer.close()
            except (OSError, TimeoutError, ConnectionError, asyncio.IncompleteReadError) as exc:
                failures[type(exc).__name__] += 1

    async def monitor() -> None:
        while not done.is_set():
            try:
                took = await asyncio.wait_for(_health(host, port), 10)
                result.health_max_ms = max(result.health_max_ms, took * 1000)
            except (OSError, TimeoutError, ConnectionError, asyncio.IncompleteReadError):
                result.health_failures += 1
            result.health_checks += 1
            await asyncio.sleep(0.05)

    watching = asyncio.create_task(monitor())
    await asyncio.sleep(0.1)
    began = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(connections)))
    result.seconds = time.perf_counter() - began
    await asyncio.sleep(0.2)
    done.set()
    await watching
    result.failed = sum(failures.values())
    result.failure_kinds = dict(failures)
    result.rss_after_mib = rss_mib(pids)
    return result


def start_server(data: Path, workers: int) -> Server:
    return Server(data, args=["--max-connections-per-address", str(CAP), "--workers", str(workers)],
                  pin=False).start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--burst", type=int, default=10_000)
    parser.add_argument("--burst-concurrency", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    limit = raise_fd_limit()
    with tempfile.TemporaryDirectory(prefix="tenant-access-conn-") as tmp:
        server = start_server(Path(tmp), args.workers)
        try:
            path = service_path("bench")
            server.call("PUT", f"{path}?{API}", BODY)
            assert server.proc is not None
            pids = server_pids(server.proc.pid)
            time.sleep(0.5)
            kept = asyncio.run(keep_alive("127.0.0.1", server.port, server.token(), path,
                                          connections=args.connections, seconds=args.seconds, pids=pids))
            burst_result = asyncio.run(burst("127.0.0.1", server.port, connections=args.burst,
                                             concurrency=args.burst_concurrency, pids=pids))
            alive = server.proc.poll() is None
        finally:
            server.stop()
    out = {"workers": args.workers, "max_connections_per_address": CAP, "connections_per_source_address": PER_ADDRESS,
           "client_fd_limit": limit, "keep_alive": asdict(kept), "burst": asdict(burst_result), "server_alive": alive,
           "cpus": os.cpu_count(), "python": sys.version.split()[0]}
    print(json.dumps(out, indent=2))
    results = ROOT / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    (results / f"connections-{stamp}.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
