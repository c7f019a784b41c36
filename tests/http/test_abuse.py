"""Slow clients are cut off; normal clients keep being served meanwhile."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx

from tests.serverproc import ServerProcess


def test_a_client_that_dribbles_headers_is_cut_off(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, ["--header-timeout", "1"]).start()
    try:
        slow = []
        for _ in range(20):
            sock = socket.create_connection(("127.0.0.1", server.port))
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # headers never finished
            slow.append(sock)
        started = time.monotonic()
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200  # others are still served
        for sock in slow:
            sock.settimeout(5)
            assert sock.recv(1024) == b""  # closed by the server
            sock.close()
        assert time.monotonic() - started < 4
    finally:
        server.stop()


def test_a_silent_connection_is_cut_off(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, ["--header-timeout", "0.5"]).start()
    try:
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.settimeout(5)
        assert sock.recv(1024) == b""
        sock.close()
    finally:
        server.stop()
