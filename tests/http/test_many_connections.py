"""Many connections at once, kept short for CI: ``benchmarks/connections.py`` runs the full sizes
(1,000 keep-alive connections, 10,000 in a burst) with the same code.

The connections come from several loopback addresses (127.0.0.2 and up, 100 each) and the server
is given ``--max-connections-per-address 128`` explicitly: the cap is per client address, so a
crowd of clients is served while one address holding hundreds of connections would be refused.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from benchmarks.connections import CAP, burst, keep_alive, raise_fd_limit, server_pids

from tests.conftest import API, SERVICE_BODY, service_path
from tests.serverproc import ServerProcess

KEEP_ALIVE = 300
BURST = 2000


def test_hundreds_of_keep_alive_connections_and_a_burst_of_thousands_are_all_served(tmp_path: Path) -> None:
    raise_fd_limit()
    server = ServerProcess(tmp_path, ["--max-connections-per-address", str(CAP), "--log-level", "warning"]).start()
    try:
        assert server.proc is not None
        path = service_path("crowd")
        created = httpx.put(f"{server.url}{path}?{API}", json=SERVICE_BODY, headers=server.auth(), timeout=30)
        assert created.status_code == 201, created.text
        pids = server_pids(server.proc.pid)
        kept = asyncio.run(keep_alive("127.0.0.1", server.port, server.token(), path,
                                      connections=KEEP_ALIVE, seconds=2.0, pids=pids))
        assert kept.errors == 0, kept.error_kinds
        assert kept.requests >= KEEP_ALIVE  # every connection was answered at least once
        # Memory stays bounded: a connection costs kilobytes, not megabytes (generous: 1,000 cost ~21 MiB).
        assert kept.rss_peak_mib < kept.rss_idle_mib + 100, kept
        burst_result = asyncio.run(burst("127.0.0.1", server.port, connections=BURST, concurrency=500, pids=pids))
        assert burst_result.failed == 0, burst_result.failure_kinds
        assert burst_result.health_checks >= 1
        assert burst_result.health_failures == 0
        assert server.proc.poll() is None
        after = httpx.get(f"{server.url}/healthz", timeout=5)
        assert after.status_code == 200
    finally:
        server.stop()
