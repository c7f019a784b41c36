"""Per-request cost of the app itself, in process (no sockets), to see what instrumentation adds.

Run: ``.venv/bin/python -m benchmarks.request_overhead [--requests N] [--log text|json|off] [--compare]
[--auth none|strict]``. It drives the ASGI callable directly, so the number is the app's own cost per
request (routing, authentication (off by default; ``--auth strict`` sends an owner's bearer token,
as real clients do), handler, wire format, metrics, access log), not uvicorn's or the kernel's.

``--compare`` measures what metrics cost: it alternates rounds with the real instruments and rounds
with a do-nothing stand-in, in one process on one store, so machine noise hits both alike, and
reports the median difference.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

SUB = "00000000-0000-0000-0000-000000000000"
SERVICE = f"/subscriptions/{SUB}/resourceGroups/bench/providers/Microsoft.ApiManagement/service/bench"


_HEADERS: list[tuple[bytes, bytes]] = [(b"host", b"bench")]


def _scope(method: str, path: str, query: bytes = b"api-version=2024-05-01") -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "query_string": query,
            "headers": list(_HEADERS), "client": ("127.0.0.1", 5000), "scheme": "http"}


async def _call(app: Any, scope: dict[str, Any], body: bytes = b"") -> int:
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


class _NoMetrics:
    """The instruments' interface, doing nothing: the baseline of ``--compare``."""

    def observe(self, *args: Any) -> None:
        pass

    def handled(self, *args: Any) -> None:
        pass

    def failure(self, *args: Any) -> None:
        pass


async def _round(app: Any, scope: dict[str, Any], requests: int) -> float:
    started = time.perf_counter()
    for _ in range(requests):
        await _call(app, scope)
    return (time.perf_counter() - started) / requests * 1e6


async def _run(requests: int, log_format: str, compare: bool = False, auth: str = "none") -> dict[str, float]:
    from tenant_access.config import Settings
    from tenant_access.http.app import create_app
    from tenant_access.server import configure_logging

    sink = io.StringIO()
    if log_format != "off":
        try:
            configure_logging("info", log_format, stream=sink)  # type: ignore[call-arg]
        except TypeError:  # before structured logging existed
            logging.basicConfig(level=logging.INFO, stream=sink, format="%(asctime)s %(levelname)s %(message)s")
    else:
        logging.getLogger("tenant_access").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(Settings(data_dir=Path(tmp), auth=auth))
        if auth != "none":
            from tenant_access.security.tokens import issue_token, load_or_create_signing_key

            token = issue_token(load_or_create_signing_key(Path(tmp)), "bench", "owner", "/", 3600)
            _HEADERS[:] = [(b"host", b"bench"), (b"authorization", f"Bearer {token}".encode())]
        await app.startup()
        try:
            body = (b'{"location":"x","sku":{"name":"Developer","capacity":1},'
                    b'"properties":{"publisherEmail":"a@b.c","publisherName":"b"}}')
            assert await _call(app, _scope("PUT", SERVICE), body) == 201
            results = {}
            for name, scope in (("healthz", _scope("GET", "/healthz", b"")),
                                ("get access", _scope("GET", SERVICE + "/tenant/access")),
                                ("not found", _scope("GET", "/nope", b""))):
                for _ in range(500):  # warm up
                    await _call(app, scope)
                if not compare:
                    results[name] = statistics.median([await _round(app, scope, requests) for _ in range(5)])
                    continue
                real, stub, differences = app.metrics, _NoMetrics(), []
                for _ in range(15):
                    app.metrics = real
                    with_metrics = await _round(app, scope, requests)
                    app.metrics = stub
                    differences.append(with_metrics - await _round(app, scope, requests))
                app.metrics = real
                results[name] = statistics.median(differences)
            return results
        finally:
            await app.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--log", choices=["text", "json", "off"], default="off")
    parser.add_argument("--compare", action="store_true", help="report what metrics add to each request")
    parser.add_argument("--auth", choices=["none", "strict"], default="none",
                        help="strict: every request carries an owner's bearer token")
    args = parser.parse_args()
    for name, micros in asyncio.run(_run(args.requests, args.log, args.compare, args.auth)).items():
        if args.compare:
            print(f"{name:12s} metrics add {micros:5.2f} µs/request (median of 15 paired rounds)")
        else:
            print(f"{name:12s} {micros:7.1f} µs/request  ({1e6 / micros:8.0f} requests/s on one core)")


if __name__ == "__main__":
    main()
