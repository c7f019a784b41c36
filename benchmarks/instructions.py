"""Instructions per request, counted by ``valgrind --tool=callgrind``: a figure the machine's noise
does not move, so a regression shows between two commits even on a busy two-core machine.

Each workload runs in process (the ASGI application called directly, no sockets: what is counted is
our code, the libraries it calls and SQLite, not uvicorn or the kernel) with the settings of the
benchmark: strict authentication with a bearer token (a SAS for ``sas_get``), the master key, the
audit trail, SQLite with ``synchronous=FULL``. A process is run twice under callgrind, with
``base`` and with ``base + count`` measured requests after the same warm-up; the difference of the
two totals over ``count`` is the cost of one request in the steady state, start-up and warm-up
cancelled out. Every thread is counted (the SQLite writer thread included).

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


async def drive(workload: str, requests: int) -> None:
    """The in-process run (the program callgrind counts): set up, warm up, then ``requests`` requests."""
    import logging

    from tenant_access.config import Settings
    from tenant_access.http.app import create_app
    from tenant_access.security.sas import make_sas
    from tenant_access.security.tokens import mint

    logging.getLogger("tenant_access").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="tenant-access-instr-") as tmp:
        settings = Settings(data_dir=Path(tmp))
        app = create_app(settings)
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
        finally:
            await app.shutdown()


async def _empty_body() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


def _count(workload: str, requests: int) -> int:
    """Instructions callgrind counted for one whole run of :func:`drive`."""
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-m",
         "benchmarks.instructions", "--drive", workload, "--count", str(requests)],
        capture_output=True, text=True, cwd=ROOT, check=False, timeout=1800,
    )
    match = re.search(r"Collected\s*:\s*(\d+)", out.stderr)
    if out.returncode != 0 or not match:
        raise RuntimeError(f"callgrind run of {workload} failed:\n{out.stderr[-2000:]}")
    return int(match[1])


def per_request(workloads: list[str] | None = None, *, base: int = 200, count: int = 1000) -> dict[str, int]:
    """Instructions per request of each workload: (I(base + count) - I(base)) / count."""
    if shutil.which("valgrind") is None:
        raise RuntimeError("valgrind is needed: apt-get install valgrind")
    figures = {}
    for workload in workloads or list(WORKLOADS):
        figures[workload] = round((_count(workload, base + count) - _count(workload, base)) / count)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workloads", nargs="*", choices=[*WORKLOADS, []], help="default: all")
    parser.add_argument("--count", type=int, default=1000, help="measured requests (the difference of two runs)")
    parser.add_argument("--drive", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive:
        asyncio.run(drive(args.drive, args.count))
        return
    figures = per_request(args.workloads or None, count=args.count)
    print(json.dumps({"instructions_per_request": figures}, indent=2))


if __name__ == "__main__":
    main()
