"""One worker against two: the same workloads on ``serve --workers 1`` and ``--workers 2``.

Run: ``.venv/bin/python -m benchmarks.workers [--seconds 4] [--postgres]``. Nothing is pinned:
with two workers the server may use both cores, and so does ``wrk``, which shares them. On a
two-core machine the figure therefore says whether a second process helps when the load
generator takes part of the machine, not what two cores give a server on its own. Each
workload at 8 and 64 connections; the raw durable-write loop (``benchmarks/disk_limit.py``) is
measured next to each write workload, as in ``benchmarks/run.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.connections import server_pids
from benchmarks.disk_limit import commits_per_second
from benchmarks.run import API, BODY, HTTP_CEILING, ROOT, Request, Server, _postgres, lua, service_path

CONNECTIONS = (8, 64)


def _wrk(url: str, connections: int, seconds: float, requests: list[Request]) -> dict[str, Any]:
    """wrk without pinning: with several workers the server should have every core."""
    import subprocess

    from benchmarks.run import parse_wrk

    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(lua(requests))
    try:
        out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
                              "-s", str(script), url], capture_output=True, text=True, check=True,
                             timeout=seconds + 60).stdout
    finally:
        script.unlink()
    return parse_wrk(out).__dict__


def measure(workers: int, seconds: float, database_url: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tenant-access-workers-") as tmp:
        data = Path(tmp)
        server = Server(data, database_url, args=["--workers", str(workers), "--max-connections-per-address", "256"],
                        pin=False).start()
        try:
            path = service_path(f"w{workers}")
            server.call("PUT", f"{path}?{API}", BODY)
            bearer = {"Authorization": f"Bearer {server.token()}"}
            workloads: dict[str, list[Request]] = {
                "healthz (HTTP ceiling)": HTTP_CEILING,
                "get_access": [("GET", f"{path}/tenant/access?{API}", bearer)],
                "list_secrets": [("POST", f"{path}/tenant/access/listSecrets?{API}", bearer)],
                "regenerate_secondary": [("POST", f"{path}/tenant/access/regenerateSecondaryKey?{API}", bearer)],
            }
            figures: dict[str, Any] = {}
            for label, requests in workloads.items():
                for connections in CONNECTIONS:
                    figure = _wrk(server.url, connections, seconds, requests)
                    if label.startswith("regenerate"):
                        figure["disk_limit_rps"] = commits_per_second(data, database_url, seconds)
                        figure["x_disk"] = figure["rps"] / figure["disk_limit_rps"]
                    figures[f"{label}@{connections}"] = figure
                    print(f"  workers={workers} {label}@{connections}: {figure['rps']:,.0f}/s "
                          f"p99 {figure['p99_ms']:.2f} ms errors {figure['errors']}"
                          + (f" (disk {figure['disk_limit_rps']:,.0f}/s)" if "x_disk" in figure else ""), flush=True)
            assert server.proc is not None
            figures["processes"] = len(server_pids(server.proc.pid))
            return figures
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--postgres", action="store_true",
                        help="PostgreSQL (a pgserver in a temp dir) instead of SQLite")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(_postgres(None)) if args.postgres else None
        out = {"backend": "postgres" if args.postgres else "sqlite",
               "runs": {str(n): measure(n, args.seconds, url) for n in (1, 2)}}
    results = ROOT / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    (results / f"workers-{stamp}.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
