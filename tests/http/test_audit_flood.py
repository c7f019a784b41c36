"""Refused requests cannot flood the audit trail: a real server, a real SQLite file, 50,000 refusals.

The client is raw sockets on many keep-alive connections from several loopback addresses (Linux
routes all of 127/8 to the loopback interface), so the flood takes seconds, not minutes.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import sqlite3
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.conftest import API, SERVICE_BODY, service_path
from tests.serverproc import ServerProcess

FLOOD = 50_000
CONNECTIONS = 48
SOURCES = [f"127.0.0.{n}" for n in range(2, 10)]  # 127.0.0.1, the owner's, stays unthrottled
#: Failures per address a minute before 429: the flood is about half 401s and half 429s.
FAILURES_PER_MINUTE = 3000


def _request(path: str, authorization: str | None) -> bytes:
    head = f"GET {path} HTTP/1.1\r\nHost: t\r\n"
    if authorization is not None:
        head += f"Authorization: {authorization}\r\n"
    return (head + "\r\n").encode()


def _requests(existing: str) -> list[bytes]:
    """Existing and missing services (a new name every time), no credential, a bad SAS, a bad token."""
    bad_sas = ("SharedAccessSignature uid=integration&ex=2999-01-01T00:00:00.0000000Z&sn="
               + base64.b64encode(secrets.token_bytes(64)).decode())
    made = []
    for i in range(FLOOD):
        target = existing if i % 2 == 0 else service_path(f"missing-{i}")
        credential = (None, bad_sas, "Bearer not-a-token")[i % 3]
        made.append(_request(f"{target}/tenant/access?{API}", credential))
    return made


async def _flood(port: int, requests: list[bytes]) -> Counter[int]:
    statuses: Counter[int] = Counter()
    pending = iter(requests)

    async def connection(source: str) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        try:
            for request in pending:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                statuses[status] += 1
        finally:
            writer.close()

    await asyncio.gather(*(connection(SOURCES[n % len(SOURCES)]) for n in range(CONNECTIONS)))
    return statuses


def _checkpointed_size(db: Path) -> int:
    """The database file and its write-ahead log, after moving the log into the file."""
    conn = sqlite3.connect(db, timeout=10)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        conn.close()
    return sum(p.stat().st_size for p in (db, db.with_name(db.name + "-wal")) if p.exists())


@pytest.fixture
def server(tmp_path: Path) -> ServerProcess:
    return ServerProcess(tmp_path / "data", ["--log-level", "warning",
                                             "--auth-failures-per-minute", str(FAILURES_PER_MINUTE)])


def test_fifty_thousand_refusals_add_less_than_a_megabyte_and_bury_no_rotation(server: ServerProcess) -> None:
    server.start()
    path = service_path("flooded")
    db = server.data_dir / "tenant-access.db"
    try:
        with httpx.Client(base_url=server.url, headers=server.auth(), timeout=20) as http:
            assert http.put(f"{path}?{API}", json=SERVICE_BODY).status_code == 201
            rotate = f"{path}/tenant/access/regenerateSecondaryKey?{API}"
            before = [http.post(rotate).json()["data"]["id"] for _ in range(3)]
            size_before = _checkpointed_size(db)

            requests = _requests(path)
            started = time.monotonic()
            statuses = asyncio.run(_flood(server.port, requests))
            elapsed = time.monotonic() - started
            assert sum(statuses.values()) == FLOOD
            assert set(statuses) == {401, 429}, statuses
            assert statuses[401] >= len(SOURCES) * FAILURES_PER_MINUTE * 0.9, statuses

            after = [http.post(rotate).json()["data"]["id"] for _ in range(3)]
            page = http.get(f"{path}/auditEvents?{API}")
            assert page.status_code == 200
            listed = page.json()["data"]
            rotations = [r["new_version_id"] for r in listed if r["operation"] == "access.regenerate_secondary_key"]
            assert rotations == before + after, "the owner's first page shows every rotation"
            assert len(listed) < 100, f"{len(listed)} records on the first page"
    finally:
        server.stop()  # shutdown writes the last counts
    grown = _checkpointed_size(db) - size_before
    print(f"\n{FLOOD} refusals in {elapsed:.1f} s ({FLOOD / elapsed:.0f}/s); database grew {grown} bytes; "
          f"statuses {dict(statuses)}")
    assert grown < 1_000_000, f"the database grew by {grown} bytes"
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT COUNT(*), SUM(occurrences) FROM audit_events WHERE outcome = 'denied'").fetchone()
    finally:
        conn.close()
    assert rows[1] == FLOOD, "the summaries' counts add up to the refusals, exactly"
    assert rows[0] < 200, f"{rows[0]} refusal records"


def test_a_running_server_writes_the_counts_within_seconds_without_a_shutdown(server: ServerProcess) -> None:
    """What a crash can lose is bounded by the periodic flush (every 10 s), not by the minute."""
    from tenant_access.refusals import FLUSH_SECONDS

    server.start()
    path = service_path("counted")
    try:
        with httpx.Client(base_url=server.url, headers=server.auth(), timeout=20) as http:
            assert http.put(f"{path}?{API}", json=SERVICE_BODY).status_code == 201
            sent = 300
            statuses = asyncio.run(_flood(server.port, [_request(f"{path}/tenant/access?{API}", None)] * sent))
            assert statuses == Counter({401: sent})
            deadline = time.monotonic() + FLUSH_SECONDS + 5
            while True:
                records = http.get(f"{path}/auditEvents?{API}&kind=refusals").json()["data"]
                if sum(r["count"] for r in records) == sent or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert sum(r["count"] for r in records) == sent, records
            # One per address (and minute: two if the burst straddled one), never one per request.
            assert len(records) <= 2 * len({r["client"] for r in records}) <= 2 * len(SOURCES)
    finally:
        server.kill()
