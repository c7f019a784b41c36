"""Instructions per request, counted by ``valgrind --tool=callgrind``: a figure the machine's noise
does not move, so a regression shows between two commits even on a busy two-core machine.

Each workload runs in process (the ASGI application called directly, no sockets: what is counted is
our code, the libraries it calls and SQLite, not uvicorn or the kernel) with the settings of the
benchmark: strict authentication with a bearer token (a SAS for ``sas_get``), the master key, the
audit trail, SQLite with ``synchronous=FULL``. A process is run twice under callgrind, with
``base`` and with ``base + count`` measured requests after the same warm-up; the difference of the
two totals over ``count`` is the cost of one request in the steady state, start-up and warm-up
cancelled out. Every thread is counted (the SQLite writer thread included).

The server's background jobs (the key usage flush, the rotation scheduler, the refusal summaries,
audit retention, the event delivery poll) run on wall-clock timers, and callgrind slows the process
down some fifty times: left on their timers they would run a number of times per request that
depends on the machine's load, and a job run once a second would weigh some fifty times what it
weighs in a real server. So the driver takes them off their timers and runs them itself, paced by
requests: ``--rate R`` runs a job of period ``p`` seconds once every ``p x R`` requests, as a server
answering R requests a second would. A once-a-second job cannot be paced at 2,000 requests a second
inside a window of 1,000 requests (it would fall in it once or not at all), so the figure is put
together from two exact ones: the request path alone (rate 0: no background job runs) and one
second of background per request (rate 1: every once-a-second job after each request, the delivery
poll five times, and whatever the next request pays to refill the caches a job emptied). The figure
at :data:`RATE` requests a second is ``alone + second / RATE``.

Run: ``.venv/bin/python -m benchmarks.instructions [--count 1000] [workload ...]``; the harness
(``benchmarks/run.py``) puts the same figures in its JSON as ``instructions_per_request``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.run import ROOT

SUB = "00000000-0000-0000-0000-000000000000"
SERVICE = f"/subscriptions/{SUB}/resourceGroups/bench/providers/Microsoft.ApiManagement/service/bench"
API = b"api-version=2024-05-01"
BODY = (b'{"location":"westeurope","sku":{"name":"Developer","capacity":1},'
        b'"properties":{"publisherEmail":"a@example.com","publisherName":"b"}}')
WARM_UP = 300
#: Requests per second of one server process that the background's share is figured for.
RATE = 2000
#: Each workload as a cycle of (method, path, credential) with credential "bearer" or "sas".
WORKLOADS: dict[str, list[tuple[str, str, str]]] = {
    "regenerate_secondary": [("POST", f"{SERVICE}/tenant/access/regenerateSecondaryKey", "bearer")],
    "get_access": [("GET", f"{SERVICE}/tenant/access", "bearer")],
    "list_secrets": [("POST", f"{SERVICE}/tenant/access/listSecrets", "bearer")],
    "sas_get": [("GET", f"{SERVICE}/tenant/gitAccess", "sas")],
    "mixed": [("GET", f"{SERVICE}/tenant/gitAccess", "bearer")] * 5
    + [("GET", f"{SERVICE}/tenant/gitAccess", "sas")] * 2
    + [("POST", f"{SERVICE}/tenant/gitAccess/listSecrets", "bearer")]
    + [("POST", f"{SERVICE}/tenant/gitAccess/regenerateSecondaryKey", "bearer")] * 2,
}


async def _call(app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> int:
    scope = {"type": "http", "http_version": "1.1", "method": method, "path": path, "raw_path": path.encode(),
             "query_string": API, "headers": headers, "client": ("127.0.0.1", 5000), "scheme": "http",
             "server": ("127.0.0.1", 8700)}
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


class _Background:
    """The server's background jobs, taken off their timers and run as often per request as at
    ``rate`` requests a second (0: never)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        #: [job, runs owed per request, runs owed so far]
        self.jobs: list[list[Any]] = []

    def capture(self) -> None:
        """Before the app is made: a periodic job's ``start`` registers it instead of starting a timer."""
        from tenant_access.periodic import Periodic

        background = self

        def start(periodic: Periodic) -> None:
            background.add(periodic.job, periodic.every)

        Periodic.start = start  # type: ignore[method-assign]

    def capture_deliverer(self, app: Any) -> None:
        """The event delivery worker (not a Periodic: it polls, or wakes on a commit)."""
        deliverer = getattr(app, "deliverer", None)
        if deliverer is not None:
            deliverer.start = lambda: None
            deliverer.wake = lambda: None
            self.add(deliverer.run_once, deliverer.policy.poll)

    def add(self, job: Any, every: float) -> None:
        if self.rate > 0:
            self.jobs.append([job, 1 / (every * self.rate), 0.0])

    async def tick(self) -> None:
        for entry in self.jobs:
            entry[2] += entry[1]
            while entry[2] >= 1 - 1e-9:
                entry[2] -= 1
                await entry[0]()


async def drive(workload: str, requests: int, rate: float = 0) -> None:
    """The in-process run (the program callgrind counts): set up, warm up, then ``requests`` requests."""
    import logging

    from tenant_access.config import Settings
    from tenant_access.http.app import create_app
    from tenant_access.security.sas import make_sas
    from tenant_access.security.tokens import mint

    logging.getLogger("tenant_access").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="tenant-access-instr-") as tmp:
        settings = Settings(data_dir=Path(tmp))
        background = _Background(rate)
        background.capture()
        app = create_app(settings)
        background.capture_deliverer(app)
        token = mint(Path(tmp), settings.base_url, "bench", "owner", "/", 3600)
        bearer = [(b"host", b"127.0.0.1:8700"), (b"authorization", f"Bearer {token}".encode())]
        await app.startup()
        try:
            json_body = [*bearer, (b"content-type", b"application/json")]
            assert await _call(app, "PUT", SERVICE, json_body, BODY) == 201
            for name in ("access", "gitAccess"):
                assert await _call(app, "PATCH", f"{SERVICE}/tenant/{name}", [*json_body, (b"if-match", b"*")],
                                   b'{"properties":{"enabled":true}}') == 200
            keys: dict[str, Any] = {}

            async def capture(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.body":
                    keys.update(json.loads(message["body"])["data"])

            scope = {"type": "http", "method": "POST", "path": f"{SERVICE}/tenant/access/listSecrets",
                     "raw_path": b"", "query_string": API, "headers": bearer, "client": ("127.0.0.1", 5000),
                     "scheme": "http", "server": ("127.0.0.1", 8700)}
            await app(scope, _empty_body, capture)
            sas = make_sas("integration", keys["primary_key"], dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
            credentials = {"bearer": bearer, "sas": [(b"host", b"127.0.0.1:8700"), (b"authorization", sas.encode())]}
            cycle = WORKLOADS[workload]
            for n in range(WARM_UP + requests):
                method, path, credential = cycle[n % len(cycle)]
                status = await _call(app, method, path, credentials[credential])
                if status != 200:
                    raise SystemExit(f"{workload}: {method} {path} answered {status}")
                await background.tick()
        finally:
            await app.shutdown()


async def _empty_body() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


def _count(workload: str, requests: int, rate: float) -> int:
    """Instructions callgrind counted for one whole run of :func:`drive`."""
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-m",
         "benchmarks.instructions", "--drive", workload, "--count", str(requests), "--rate", str(rate)],
        capture_output=True, text=True, cwd=ROOT, check=False, timeout=1800,
    )
    match = re.search(r"Collected\s*:\s*(\d+)", out.stderr)
    if out.returncode != 0 or not match:
        raise RuntimeError(f"callgrind run of {workload} failed:\n{out.stderr[-2000:]}")
    return int(match[1])


def _difference(workload: str, base: int, count: int, rate: float) -> float:
    return (_count(workload, base + count, rate) - _count(workload, base, rate)) / count


def measure(workloads: list[str] | None = None, *, base: int = 200, count: int = 1000,
            rate: float = RATE) -> dict[str, dict[str, int]]:
    """Per workload: the request path alone, one second of background, and the two together at
    ``rate`` requests a second (see the module's docstring)."""
    if shutil.which("valgrind") is None:
        raise RuntimeError("valgrind is needed: apt-get install valgrind")
    figures = {}
    for workload in workloads or list(WORKLOADS):
        alone = _difference(workload, base, count, 0)
        second = _difference(workload, base, max(100, count // 5), 1) - alone
        figures[workload] = {"per_request": round(alone + second / rate), "request_path_alone": round(alone),
                             "background_per_second": round(second)}
    return figures


def per_request(workloads: list[str] | None = None, *, base: int = 200, count: int = 1000) -> dict[str, int]:
    """Instructions per request of each workload, background included at :data:`RATE` requests a second."""
    return {name: f["per_request"] for name, f in measure(workloads, base=base, count=count).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workloads", nargs="*", choices=[*WORKLOADS, []], help="default: all")
    parser.add_argument("--count", type=int, default=1000, help="measured requests (the difference of two runs)")
    parser.add_argument("--rate", type=float, default=RATE,
                        help="requests per second of one process the background's share is figured for")
    parser.add_argument("--drive", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive:
        asyncio.run(drive(args.drive, args.count, args.rate))
        return
    figures = measure(args.workloads or None, count=args.count, rate=args.rate)
    print(json.dumps({"instructions_per_request": {name: f["per_request"] for name, f in figures.items()},
                      "request_path_alone": {name: f["request_path_alone"] for name, f in figures.items()},
                      "background_per_second": {name: f["background_per_second"] for name, f in figures.items()},
                      "rate": args.rate}, indent=2))


if __name__ == "__main__":
    main()
