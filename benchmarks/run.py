"""The benchmark harness: real server, external load generator, figures beside measured limits.

Run ``python -m benchmarks.run --help``. See benchmarks/README.md for what is measured and why.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SUB = "00000000-0000-0000-0000-000000000000"
RG = "bench-rg"
API = "api-version=2024-05-01"
BODY = {"location": "westeurope", "sku": {"name": "Developer", "capacity": 1},
        "properties": {"publisherEmail": "bench@example.com", "publisherName": "Bench"}}


def service_path(name: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ApiManagement/service/{name}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _pin(core: int) -> list[str]:
    return ["taskset", "-c", str(core)] if shutil.which("taskset") and (os.cpu_count() or 1) >= 2 else []


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@dataclass
class Server:
    data_dir: Path
    database_url: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    started_in: float = 0.0
    _token: str = ""
    #: More ``serve`` flags (``--workers``, ``--max-connections-per-address``).
    args: list[str] = field(default_factory=list)
    #: Pin the server to core 0 (the load generator gets core 1); not with several workers.
    pin: bool = True
    #: The interpreter that serves: another checkout's, to compare two trees in one run.
    python: str = sys.executable

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        self.port = _free_port()
        cmd = [*(_pin(0) if self.pin else []), self.python, "-m", "tenant_access", "serve", "--port",
               str(self.port), "--data-dir", str(self.data_dir), "--log-level", "warning", *self.args]
        if self.database_url:
            cmd += ["--database-url", self.database_url]
        env = {k: v for k, v in os.environ.items() if not k.startswith("TENANT_ACCESS_")}
        began = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as response:
                    response.read()
                break
            except OSError:
                if self.proc.poll() is not None or time.perf_counter() - began > 30:
                    raise RuntimeError("the server did not start") from None
                time.sleep(0.002)
        self.started_in = time.perf_counter() - began
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def token(self) -> str:
        """One owner token, made once (outside any timed section)."""
        if not self._token:
            from tenant_access.security.tokens import issue_token, load_or_create_signing_key

            self._token = issue_token(load_or_create_signing_key(self.data_dir, create=False), "bench", "owner",
                                      "/", 86400, iss=self.url)
        return self._token

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method, headers={
            "Authorization": f"Bearer {self.token()}", "content-type": "application/json", **(headers or {})})
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
        return json.loads(raw) if raw else None


def warm_client() -> None:
    """Send one request like :meth:`Server.call` to a throwaway local HTTP server, so that the
    first-call figure measures our server and not this process's first use of urllib (2 to 3 ms)."""
    import http.server
    import threading

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            body = b'{"ok": true}'
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    with http.server.HTTPServer(("127.0.0.1", 0), Answer) as httpd:
        thread = threading.Thread(target=httpd.handle_request)
        thread.start()
        dummy = Server(Path(tempfile.gettempdir()))
        dummy.port, dummy._token = httpd.server_address[1], "warm-up"
        dummy.call("PUT", "/warm-up", BODY)
        thread.join()


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int
    extra: dict[str, Any] = field(default_factory=dict)


# Every unit wrk prints a time in (its units.c: us, ms, s, then m and h in sixties), in milliseconds.
_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)", text)
    if not match:
        raise ValueError(f"not a wrk time: {text!r}")
    return float(match[1]) * _UNIT[match[2]]


def _wrk_field(pattern: str, out: str, what: str) -> str:
    """The first group of ``pattern`` (multiline) in wrk's output; an error naming the line if it is missing."""
    match = re.search(pattern, out, re.MULTILINE)
    if not match:
        raise RuntimeError(f"wrk output has no {what} line:\n{out}")
    return match[1]


def _percentile_ms(out: str, percent: int) -> float:
    """A line of wrk's "Latency Distribution" block (``     99%    1.13ms``), nothing else.

    Anchored to a whole line: an unanchored ``99%\\s+(\\S+)`` also matches the end of a "+/- Stdev"
    figure in the "Thread Stats" block (``87.99%`` before a line break) and takes the next word."""
    return _ms(_wrk_field(rf"^[ \t]*{percent}%[ \t]+(\S+)[ \t]*$", out, f"{percent}% latency"))


def parse_wrk(out: str) -> WrkResult:
    rps = float(_wrk_field(r"^Requests/sec:[ \t]+([\d.]+)", out, "Requests/sec"))
    requests = int(_wrk_field(r"(\d+) requests in ", out, "requests"))
    errors = 0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        errors += int(non2xx[1])
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        errors += sum(int(x) for x in sock.groups())
    return WrkResult(rps, _percentile_ms(out, 50), _percentile_ms(out, 99), errors, requests)


def wrk(url: str, *, connections: int, seconds: float, script: str) -> WrkResult:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
        path = handle.name
    try:
        out = subprocess.run(
            [*_pin(1), "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "-s", path, url],
            capture_output=True, text=True, check=True, timeout=seconds + 60,
        ).stdout
    finally:
        os.unlink(path)
    return parse_wrk(out)


Request = tuple[str, str, dict[str, str]]  # method, path, headers
CONNECTIONS = (1, 8)
HTTP_CEILING: list[Request] = [("GET", "/healthz", {})]


def lua(requests: list[Request]) -> str:
    """A wrk script that sends the given (method, path, headers) requests, picked at random."""
    lines = ["local reqs = {}"]
    for i, (method, path, headers) in enumerate(requests, 1):
        hdrs = ", ".join(f'["{k}"] = "{v}"' for k, v in headers.items())
        lines.append(f'reqs[{i}] = wrk.format("{method}", "{path}", {{ {hdrs} }}, nil)')
    lines += [f"local n = {len(requests)}", "request = function() return reqs[math.random(n)] end"]
    return "\n".join(lines) + "\n"


async def _storage_ceiling(data_dir: Path, database_url: str | None, seconds: float, concurrency: int = 1) -> float:
    """Rotations per second of the regeneration use case straight against the store, no HTTP.

    With one caller (the default) every rotation is its own durable commit: the rate a
    one-commit-per-request design is bounded by, and the ceiling the HTTP figures are compared to.
    With more callers the store's group commit shares fsyncs between them."""
    sys.path.insert(0, str(ROOT / "src"))
    from tenant_access.config import Settings
    from tenant_access.domain.audit import Actor
    from tenant_access.domain.models import AccessName, KeySlot, ServiceRef, ServiceSpec
    from tenant_access.runtime import open_store_for
    from tenant_access.service import TenantAccess

    store = open_store_for(Settings(data_dir=data_dir, database_url=database_url))
    await store.open()
    try:
        app = TenantAccess(store)
        actor = Actor("bench", "owner", "/", "bearer", "bench", "127.0.0.1")
        ref = ServiceRef(SUB, RG, "ceiling")
        await app.put_service(actor, ref, ServiceSpec("westeurope", "Developer", 1, "b@example.com", "B"))
        done = 0
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                await app.regenerate_key(actor, "access.regenerate_secondary_key", ref, AccessName.ACCESS,
                                         KeySlot.SECONDARY)
                done += 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done / (time.perf_counter() - began)
    finally:
        await store.close()


async def _seed_services(data_dir: Path, database_url: str | None, count: int) -> None:
    from tenant_access.config import Settings
    from tenant_access.domain.audit import Actor
    from tenant_access.domain.models import ServiceRef, ServiceSpec
    from tenant_access.runtime import open_store_for
    from tenant_access.service import TenantAccess

    store = open_store_for(Settings(data_dir=data_dir, database_url=database_url))
    await store.open()
    try:
        app = TenantAccess(store)
        actor = Actor("bench", "owner", "/", "bearer", "seed", "127.0.0.1")
        spec = ServiceSpec("westeurope", "Developer", 1, "b@example.com", "B")
        for start in range(0, count, 500):
            await asyncio.gather(*(app.put_service(actor, ServiceRef(SUB, RG, f"filler{i}"), spec)
                                   for i in range(start, min(count, start + 500))))
    finally:
        await store.close()


#: Workloads whose every request (or some) is a durable write: the disk limit is measured next to them.
WRITE_WORKLOADS = ("regenerate_secondary", "mixed")


def measure_workloads(url: str, workloads: dict[str, list[Request]], seconds: float,
                      disk_limit: Callable[[], float] | None = None) -> dict[str, Any]:
    """Each workload at each connection count, the HTTP ceiling measured immediately before it, and
    for write workloads the raw disk limit (:mod:`benchmarks.disk_limit`) just before that.

    The same connection count and duration, and each workload is compared with the ceiling measured
    next to it: a machine's throughput drifts during a run (±15 % on the one in docs/performance.md),
    and a ratio to a ceiling measured minutes earlier would carry that drift."""
    figures: dict[str, Any] = {}
    ceilings: dict[str, list[float]] = {str(c): [] for c in CONNECTIONS}
    for label, requests in workloads.items():
        for connections in CONNECTIONS:
            disk = disk_limit() if disk_limit is not None and label in WRITE_WORKLOADS else None
            ceiling = wrk(url, connections=connections, seconds=seconds, script=lua(HTTP_CEILING))
            res = wrk(url, connections=connections, seconds=seconds, script=lua(requests))
            ceilings[str(connections)].append(ceiling.rps)
            figure = {**res.__dict__, "http_ceiling": ceiling.__dict__, "x_http": res.rps / ceiling.rps}
            if disk is not None:
                figure["disk_limit_rps"] = disk
                figure["x_disk"] = res.rps / disk
            figures[f"{label}@{connections}"] = figure
    # Every ceiling measurement in run order, by connection count (string keys, as they read back from JSON).
    return {"workloads": figures,
            "http_ceiling": {c: {"rps": runs, "median_rps": statistics.median(runs)} for c, runs in ceilings.items()}}


def run_backend(name: str, database_url: str | None, args: argparse.Namespace, services: int) -> dict[str, Any]:
    seconds = args.seconds
    with tempfile.TemporaryDirectory(prefix="tenant-access-bench-") as tmp:
        data = Path(tmp)
        if services > 1:
            began = time.perf_counter()
            asyncio.run(_seed_services(data, database_url, services - 1))
            print(f"  seeded {services - 1} services in {time.perf_counter() - began:.1f}s", file=sys.stderr)
        # One data dir (one master key) for everything: a PostgreSQL database is shared by all of them.
        storage_ceiling = asyncio.run(_storage_ceiling(data, database_url, seconds))
        grouped = asyncio.run(_storage_ceiling(data, database_url, seconds, concurrency=8))
        server = Server(data, database_url).start()
        try:
            result: dict[str, Any] = {"backend": name, "services": services, "start_s": server.started_in}
            path = service_path("bench")
            server.token()
            began = time.perf_counter()
            server.call("PUT", f"{path}?{API}", BODY)  # the first call after start: creates the service
            result["first_call_ms"] = (time.perf_counter() - began) * 1000
            began = time.perf_counter()
            server.call("POST", f"{path}/tenant/access/regenerateSecondaryKey?{API}")
            result["first_seed_call_ms"] = (time.perf_counter() - began) * 1000
            time.sleep(1)
            idle = _rss_kib(server.proc.pid)  # type: ignore[union-attr]
            result["idle_rss_mib"] = idle / 1024
            # Growth over idle after 10,000 regenerations (of gitAccess: the SAS below signs with access).
            bearer_only = {"Authorization": f"Bearer {server.token()}"}
            script = lua([("POST", f"{path}/tenant/gitAccess/regeneratePrimaryKey?{API}", bearer_only)])
            res = wrk(server.url, connections=8, seconds=max(2.0, 10_000 / max(storage_ceiling, 1) * 1.3),
                      script=script)
            time.sleep(1)
            rss_after = _rss_kib(server.proc.pid)  # type: ignore[union-attr]
            result["regenerations_for_rss"] = res.requests
            result["rss_after_regenerations_mib"] = rss_after / 1024
            result["rss_growth_pct"] = (rss_after - idle) / idle * 100
            server.call("PATCH", f"{path}/tenant/access?{API}", {"properties": {"enabled": True}}, {"If-Match": "*"})
            keys = server.call("POST", f"{path}/tenant/access/listSecrets?{API}")["data"]
            from tenant_access.security.sas import make_sas

            sas = make_sas("integration", keys["primary_key"], dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
            bearer = {"Authorization": f"Bearer {server.token()}"}
            json_ct = {"content-type": "application/json"}
            workloads: dict[str, list[Request]] = {
                "regenerate_secondary": [("POST", f"{path}/tenant/access/regenerateSecondaryKey?{API}", bearer)],
                "get_access": [("GET", f"{path}/tenant/access?{API}", bearer)],
                "list_secrets": [("POST", f"{path}/tenant/access/listSecrets?{API}", bearer)],
                "sas_get": [("GET", f"{path}/tenant/gitAccess?{API}", {"Authorization": sas})],
                "mixed": [("GET", f"{path}/tenant/gitAccess?{API}", bearer)] * 5
                + [("GET", f"{path}/tenant/gitAccess?{API}", {"Authorization": sas})] * 2
                + [("POST", f"{path}/tenant/gitAccess/listSecrets?{API}", bearer)]
                + [("POST", f"{path}/tenant/gitAccess/regenerateSecondaryKey?{API}", {**bearer, **json_ct})] * 2,
            }
            from benchmarks.disk_limit import commits_per_second

            result.update(measure_workloads(server.url, workloads, seconds,
                                            lambda: commits_per_second(data, database_url, seconds)))
            result["rss_after_workloads_mib"] = _rss_kib(server.proc.pid) / 1024  # type: ignore[union-attr]
            result["storage_ceiling_rps"] = storage_ceiling
            result["store_group_commit_8_rps"] = grouped
            return result
        finally:
            server.stop()


def report(results: list[dict[str, Any]]) -> str:
    """The printed tables, from the result dicts (as returned by run_backend or read back from the JSON)."""
    lines = []
    for r in results:
        ceiling_store = r["storage_ceiling_rps"]
        lines.append(f"\n== {r['backend']}, {r['services']} service(s)")
        lines.append(f"start to first answer {r['start_s'] * 1000:.0f} ms; first call {r['first_call_ms']:.1f} ms "
                     f"(then the first seed call {r['first_seed_call_ms']:.1f} ms); "
                     f"idle RSS {r['idle_rss_mib']:.1f} MiB; after {r['regenerations_for_rss']} regenerations "
                     f"{r['rss_after_regenerations_mib']:.1f} MiB ({r['rss_growth_pct']:+.1f} % over idle); "
                     f"after every workload {r.get('rss_after_workloads_mib', float('nan')):.1f} MiB")
        ceilings = "; ".join(f"{conn} conn median {c['median_rps']:,.0f} req/s "
                             f"({min(c['rps']):,.0f}-{max(c['rps']):,.0f}, {len(c['rps'])} runs)"
                             for conn, c in r["http_ceiling"].items())
        lines.append(f"HTTP ceiling (GET /healthz, run just before each row): {ceilings}")
        lines.append(f"storage ceiling {ceiling_store:,.0f} rotations/s (one caller, a commit each; with 8 callers "
                     f"and group commit {r['store_group_commit_8_rps']:,.0f}/s)")
        lines.append(f"{'workload':<24}{'conn':>5}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
                     f"{'ceiling':>10}{'xHTTP':>8}{'disk':>8}{'xdisk':>7}{'xstore':>8}")
        for key, fig in r["workloads"].items():
            label, conn = key.split("@")
            ratio_store = f"{fig['rps'] / ceiling_store:.2f}" if "regenerate" in label else ""
            disk = f"{fig['disk_limit_rps']:,.0f}" if "disk_limit_rps" in fig else ""
            x_disk = f"{fig['x_disk']:.2f}" if "x_disk" in fig else ""
            lines.append(f"{label:<24}{conn:>5}{fig['rps']:>10,.0f}{fig['p50_ms']:>9.2f}{fig['p99_ms']:>9.2f}"
                         f"{fig['errors']:>8}{fig['http_ceiling']['rps']:>10,.0f}{fig['x_http']:>8.2f}"
                         f"{disk:>8}{x_disk:>7}{ratio_store:>8}")
        lines.append("ceiling: GET /healthz req/s measured just before the row; xHTTP: req/s over that ceiling; "
                     "disk: the raw durable-write loop (benchmarks/disk_limit.py) just before the row; xdisk: "
                     "req/s over it; xstore: over the storage ceiling (our own store, one caller)")
    return "\n".join(lines)


@contextlib.contextmanager
def _postgres(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    from pgserver.postgres_server import get_server

    with tempfile.TemporaryDirectory(prefix="tenant-access-bench-pg-") as tmp:
        pg = get_server(tmp, cleanup_mode="stop")
        try:
            yield pg.get_uri()
        finally:
            pg.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each wrk run")
    parser.add_argument("--quick", action="store_true", help="2-second runs, no scale run")
    parser.add_argument("--postgres", action="store_true", help="also run against PostgreSQL")
    parser.add_argument("--postgres-url", help="an existing PostgreSQL; default a pgserver in a temp dir")
    parser.add_argument("--scale", type=int, default=100_000, help="services in the store for the scale run")
    parser.add_argument("--no-instructions", action="store_true",
                        help="skip the instruction counts (callgrind, about 3 minutes; see benchmarks/instructions.py)")
    args = parser.parse_args()
    if args.quick:
        args.seconds = 2.0
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    warm_client()
    results: list[dict[str, Any]] = []

    def run(name: str, url: str | None, services: int) -> None:
        results.append(run_backend(name, url, args, services))
        print(report(results[-1:]), flush=True)  # as it comes: a later failure loses nothing

    run("sqlite", None, 1)
    if not args.quick:
        run("sqlite", None, 10)
        run("sqlite", None, args.scale)
    if args.postgres:
        with _postgres(args.postgres_url) as url:
            run("postgres", url, 1)
    machine = {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
               "processor": platform.processor() or platform.machine()}
    print(f"\nmachine: {machine}")
    document: dict[str, Any] = {"machine": machine, "results": results}
    if not args.no_instructions and shutil.which("valgrind"):
        from benchmarks.instructions import per_request

        # Instructions per request (in process, callgrind): the figure the machine's noise does not move.
        document["instructions_per_request"] = per_request()
        print("instructions per request (callgrind, in process): "
              + ", ".join(f"{name} {count:,}" for name, count in document["instructions_per_request"].items()))
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    (out / f"{stamp}.json").write_text(json.dumps(document, indent=2))
    print(f"\nwritten: benchmarks/results/{stamp}.json")


if __name__ == "__main__":
    main()
