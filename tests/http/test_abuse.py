"""Slow clients are cut off; normal clients keep being served meanwhile."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import API, service_path
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


def _env(**settings: object) -> dict[str, str]:
    """Settings through the environment rather than flags, so that the same tests run, and fail for
    the right reason, against a server that predates them (unknown variables are ignored)."""
    return {f"TENANT_ACCESS_{name.upper()}": str(value) for name, value in settings.items()}


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def _answer(raw: bytes) -> tuple[int, dict[str, str], dict[str, object]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, json.loads(body)


@pytest.mark.parametrize("style", ["seed", "azure"])
def test_a_body_that_dribbles_is_answered_408_at_the_request_deadline(tmp_path: Path, style: str) -> None:
    """Headers on time, then ``Content-Length: 60000`` and a byte a second: the deadline covers the
    body too. A normal client is served meanwhile."""
    server = ServerProcess(tmp_path, ["--header-timeout", "1", "--api-style", style],
                           env=_env(request_timeout=2)).start()
    try:
        path = f"{service_path('slow-body')}?{API}"
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall((f"PUT {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.token()}\r\n"
                      "Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n{").encode())
        started = time.monotonic()
        sock.settimeout(0.05)
        raw = b""
        while time.monotonic() - started < 8:
            assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200  # others are served
            try:
                sock.sendall(b" ")
            except (BrokenPipeError, ConnectionResetError):
                break
            try:
                raw = sock.recv(65536)
            except TimeoutError:
                time.sleep(0.95)
                continue
            break
        sock.settimeout(5)
        raw += _read_all(sock)
        sock.close()
        elapsed = time.monotonic() - started
        status, headers, body = _answer(raw)
        assert status == 408
        assert headers["connection"] == "close"
        assert headers["x-content-type-options"] == "nosniff"
        if style == "seed":
            assert body["success"] is False
            assert body["error"]["code"] == "REQUEST_TIMEOUT"  # type: ignore[index]
        else:
            assert body["error"]["code"] == "RequestTimeout"  # type: ignore[index]
        assert 1.5 < elapsed < 4.5  # the 2 s deadline, not the byte-a-second client's pace
        # Nothing of the fragment was acted on.
        assert httpx.get(f"{server.url}{path}", headers=server.auth(), timeout=5).status_code == 404
    finally:
        server.stop()


@pytest.mark.parametrize("path", ["/healthz", "/tenant1/oauth2/v2.0/token"])
def test_a_dribbling_body_does_not_hold_any_route_open(tmp_path: Path, path: str) -> None:
    """Routes that answer without reading the body (/healthz) or read it (the token endpoint): the
    connection is closed by the deadline either way, whatever the client keeps sending."""
    server = ServerProcess(tmp_path, env=_env(request_timeout=1.5)).start()
    try:
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall((f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                      "Content-Length: 60000\r\n\r\ng").encode())
        started = time.monotonic()
        closed = False
        while time.monotonic() - started < 6:
            time.sleep(0.5)
            try:
                sock.sendall(b"a")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            sock.settimeout(0.01)
            try:
                data = sock.recv(65536)
                while data:
                    data = sock.recv(65536)
                closed = True
                break
            except TimeoutError:
                continue
        sock.close()
        assert closed
        assert time.monotonic() - started < 3.5
    finally:
        server.stop()


def _get_healthz(address: str = "127.0.0.1", port: int = 0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), source_address=(address, 0))
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    sock.settimeout(5)
    return sock


def test_connections_are_capped_per_address(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, env=_env(max_connections_per_address=5)).start()
    held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(5)]
    try:
        with _get_healthz(port=server.port) as extra:
            status, headers, body = _answer(_read_all(extra))
        assert status == 429
        assert int(headers["retry-after"]) >= 1
        assert headers["x-content-type-options"] == "nosniff"
        assert body["error"]["code"] == "TOO_MANY_REQUESTS"  # type: ignore[index]
        # Another address is unaffected; so is this one once it closes a connection.
        with _get_healthz("127.0.0.2", server.port) as other:
            assert _answer(_read_all(other))[0] == 200
        held.pop().close()
        deadline = time.monotonic() + 5
        while True:
            with _get_healthz(port=server.port) as again:
                if _answer(_read_all(again))[0] == 200:
                    break
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # Full again: a flood of refusals is logged once, not once per connection.
        held.append(socket.create_connection(("127.0.0.1", server.port)))
        deadline = time.monotonic() + 5
        while True:
            with _get_healthz(port=server.port) as probe:
                if _answer(_read_all(probe))[0] == 429:
                    break
            assert time.monotonic() < deadline
            time.sleep(0.05)
        for _ in range(20):
            with _get_healthz(port=server.port) as sock:
                assert _answer(_read_all(sock))[0] == 429
        assert server.log().count("over the cap") == 1, server.log()
    finally:
        for sock in held:
            sock.close()
        server.stop()
