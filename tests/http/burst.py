"""Raw-socket bursts: many requests that reach the server at the same moment, sent with almost no
work in the test process (so the figures measured meanwhile are the server's, not the client's)."""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Mapping


def raw_request(method: str, path: str, headers: Mapping[str, str] | None = None, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: test", "Connection: close", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class Burst:
    """``count`` connections from ``source``, opened first, then each sent ``request`` in one tight
    loop; :meth:`statuses` reads every answer's status (0 for a connection closed without one)."""

    def __init__(self, port: int, request: bytes, count: int, *, source: str = "127.0.0.1") -> None:
        self.socks = [socket.create_connection(("127.0.0.1", port), timeout=60, source_address=(source, 0))
                      for _ in range(count)]
        self.request = request

    def fire(self) -> None:
        for sock in self.socks:
            sock.sendall(self.request)

    def statuses(self) -> list[int]:
        found = []
        for sock in self.socks:
            chunks = []
            try:
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
            except ConnectionResetError:
                pass
            finally:
                sock.close()
            head = b"".join(chunks).split(b"\r\n", 1)[0].split()
            found.append(int(head[1]) if len(head) > 1 else 0)
        return found


def timed_post(port: int, path: str, body: bytes, *, source: str, content_type: str) -> tuple[int, float]:
    """One POST on a fresh connection from ``source``: its status and how long it took."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60, source_address=(source, 0))
    try:
        started = time.perf_counter()
        conn.request("POST", path, body, {"Content-Type": content_type})
        response = conn.getresponse()
        response.read()
        return response.status, time.perf_counter() - started
    finally:
        conn.close()
