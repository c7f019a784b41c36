"""Hostile input: every malformed, oversized or tricky request gets the right 4xx, in the active
wire format (seed envelope or Azure's), and the server is healthy afterwards.

Requests are written byte for byte on a raw socket, so that no client library tidies them up
(normalises ``..``, refuses a NUL, re-encodes a header) before the server sees them.
"""

from __future__ import annotations

import contextlib
import json
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import API, SERVICE_BODY, SUBSCRIPTION, service_path
from tests.serverproc import ServerProcess

STYLES = ("seed", "azure")
SVC = service_path("hostile")
ACCESS = f"{SVC}/tenant/access"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, object]:
        value: dict[str, object] = json.loads(self.body)
        return value


@pytest.fixture(scope="module", params=STYLES)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp(f"hostile-{request.param}"),
                         ["--api-style", request.param, "--auth-failures-per-minute", "1000000",
                          # The slow-loris test holds 300 connections from this address on purpose:
                          # what it checks is the header deadline, not the cap per address.
                          "--header-timeout", "2", "--max-connections-per-address", "1000"]).start()
    with httpx.Client(base_url=proc.url, headers=proc.auth(), timeout=10) as http:
        assert http.put(f"{SVC}?{API}", json=SERVICE_BODY).status_code == 201
    yield proc
    proc.stop()
    assert "Traceback" not in proc.log(), proc.log()[-4000:]


def _style(server: ServerProcess) -> str:
    return "azure" if "azure" in server.args else "seed"


def send(server: ServerProcess, data: bytes, *, timeout: float = 10) -> Answer:
    """One request as raw bytes; the answer parsed from what comes back."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)  # the server may answer and close before it has read everything
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed without an answer: {received!r}"
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        return Answer(int(lines[0].split(" ")[1]), headers, body[:length])


def request(server: ServerProcess, method: str, target: str | bytes, *, headers: dict[str, bytes] | None = None,
            body: bytes = b"", auth: bool = True) -> bytes:
    target = target.encode("latin-1") if isinstance(target, str) else target
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    if auth:
        lines.append(b"Authorization: Bearer " + server.token().encode())
    for name, value in (headers or {}).items():
        lines.append(name.encode() + b": " + value)
    if body and "transfer-encoding" not in {k.lower() for k in headers or {}}:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


SEED_CODES = {400: "VALIDATION_ERROR", 401: "UNAUTHORIZED", 404: "NOT_FOUND", 413: "PAYLOAD_TOO_LARGE",
              414: "URI_TOO_LONG", 415: "UNSUPPORTED_MEDIA_TYPE", 431: "HEADERS_TOO_LARGE"}
AZURE_CODES = {400: {"ValidationError", "BadRequest", "InvalidApiVersionParameter"}, 401: {"AuthenticationFailed"},
               404: {"NotFound", "ResourceNotFound"}, 413: {"RequestEntityTooLarge"}, 414: {"RequestUriTooLong"},
               415: {"UnsupportedMediaType"}, 431: {"RequestHeaderFieldsTooLarge"}}


def assert_refused(server: ServerProcess, answer: Answer, status: int) -> None:
    """The right status, in the active format, with its request id, and never a Retry-After."""
    assert answer.status == status, (answer.status, answer.body[:500])
    assert answer.headers["content-type"].startswith("application/json"), answer.headers
    assert "retry-after" not in answer.headers
    body = answer.json()
    if _style(server) == "seed":
        assert body["success"] is False and set(body) == {"success", "error"}, body
        error = body["error"]
        assert isinstance(error, dict)
        assert error["code"] == SEED_CODES[status], body
        assert error["request_id"] == answer.headers["x-request-id"]
    else:
        assert set(body) == {"error"}, body
        error = body["error"]
        assert isinstance(error, dict)
        assert error["code"] in AZURE_CODES[status], body
        assert answer.headers["x-ms-request-id"]
    if status == 401:
        assert "Bearer" in answer.headers["www-authenticate"]


JSON = {"Content-Type": b"application/json"}
IF_MATCH = {"If-Match": b"*", **JSON}
BIG = 70 * 1024  # over the default 64 KiB body limit

# (id, method, target, headers, body, expected status)
CASES: list[tuple[str, str, str | bytes, dict[str, bytes], bytes, int]] = [
    # bodies
    ("oversized body", "PUT", f"{SVC}?{API}", JSON, b'{"location": "' + b"x" * BIG + b'"}', 413),
    ("oversized chunked body", "PUT", f"{SVC}?{API}", {**JSON, "Transfer-Encoding": b"chunked"},
     b"".join(b"4000\r\n" + b"x" * 0x4000 + b"\r\n" for _ in range(5)) + b"0\r\n\r\n", 413),
    ("deeply nested JSON", "PUT", f"{ACCESS}?{API}", IF_MATCH, b"[" * 30_000 + b"]" * 30_000, 400),
    ("deeply nested objects", "PATCH", f"{ACCESS}?{API}", IF_MATCH, b'{"a":' * 5000 + b"1" + b"}" * 5000, 400),
    ("malformed JSON", "PATCH", f"{ACCESS}?{API}", IF_MATCH, b'{"properties": {"enabled": tru', 400),
    ("not UTF-8", "PATCH", f"{ACCESS}?{API}", IF_MATCH, b'{"properties": {"enabled": "\xff\xfe"}}', 400),
    ("duplicate keys", "PATCH", f"{ACCESS}?{API}", IF_MATCH,
     b'{"properties": {"enabled": true, "enabled": false}}', 400),
    ("NaN", "PUT", f"{SVC}?{API}", JSON,
     json.dumps({**SERVICE_BODY, "sku": {"name": "Developer", "capacity": float("nan")}}).encode(), 400),
    ("Infinity", "PUT", f"{SVC}?{API}", JSON, b'{"sku": {"capacity": Infinity}}', 400),
    ("huge float", "PUT", f"{SVC}?{API}", JSON,
     json.dumps(SERVICE_BODY).replace('"capacity": 1', '"capacity": 1e400').encode(), 400),
    ("huge integer", "PUT", f"{SVC}?{API}", JSON,
     json.dumps(SERVICE_BODY).replace('"capacity": 1', '"capacity": 1' + "0" * 5000).encode(), 400),
    ("wrong type", "PATCH", f"{ACCESS}?{API}", IF_MATCH, b'{"properties": {"enabled": "yes"}}', 400),
    ("array body", "PUT", f"{SVC}?{API}", JSON, b"[]", 400),
    ("text/plain", "PATCH", f"{ACCESS}?{API}", {"If-Match": b"*", "Content-Type": b"text/plain"},
     b'{"properties": {"enabled": true}}', 415),
    ("xml", "PUT", f"{SVC}?{API}", {"Content-Type": b"application/xml"}, b"<service/>", 415),
    ("form", "POST", f"{ACCESS}/regenerateSecondaryKey?{API}",
     {"Content-Type": b"application/x-www-form-urlencoded"}, b"a=b", 415),
    # paths
    ("dot-dot segments", "GET", f"{SVC}/tenant/../../service?{API}", {}, b"", 404),
    ("dot-dot as a name", "GET", f"{service_path('x', rg='..')}?{API}", {}, b"", 400),
    ("encoded slash in a name", "GET", f"{service_path('a%2Fb')}?{API}", {}, b"", 400),
    ("encoded dot-dot", "GET", f"{service_path('%2E%2E')}?{API}", {}, b"", 400),
    ("encoded NUL", "GET", f"{service_path('a%00b')}?{API}", {}, b"", 400),
    ("raw NUL", "GET", f"{SVC}?{API}".encode().replace(b"hostile", b"host\x00ile"), {}, b"", 400),
    ("raw control character", "GET", f"{SVC}?{API}".encode().replace(b"hostile", b"host\x01ile"), {}, b"", 400),
    ("name too long", "GET", f"{service_path('s' * 51)}?{API}", {}, b"", 400),
    ("10 KB name", "GET", f"{service_path('s' * 10_000)}?{API}", {}, b"", 400),
    ("non-ASCII name", "GET", f"{service_path('s%C3%A9rvice')}?{API}", {}, b"", 400),
    ("raw non-ASCII name", "GET", f"{SVC}?{API}".encode().replace(b"hostile", "hôstile".encode()), {}, b"", 400),
    ("not UTF-8 in the path", "GET", f"{service_path('a%FFb')}?{API}", {}, b"", 404),
    ("trailing slash", "GET", f"{SVC}/?{API}", {}, b"", 404),
    ("double slash", "GET", f"{SVC.replace('/service/', '/service//')}?{API}", {}, b"", 404),
    ("bad subscription", "GET", f"{SVC.replace(SUBSCRIPTION, '..')}?{API}", {}, b"", 400),
    ("request target too long", "GET", f"{SVC}?{API}&x={'a' * 20_000}", {}, b"", 414),
    ("api-version twice", "GET", f"{SVC}?{API}&{API}", {}, b"", 400),
    ("api-version with a newline", "GET", f"{SVC}?api-version=2024-05-01%0A", {}, b"", 400),
    # headers
    ("oversized header", "GET", f"{SVC}?{API}", {"X-Padding": b"p" * 40_000}, b"", 431),
    ("too many headers", "GET", f"{SVC}?{API}", {f"X-H{i}": b"v" for i in range(300)}, b"", 431),
    ("control character in a header", "GET", f"{SVC}?{API}", {"X-Odd": b"a\x01b"}, b"", 400),
    ("Content-Length and chunked", "PUT", f"{SVC}?{API}",
     {**JSON, "Content-Length": b"5", "Transfer-Encoding": b"chunked"}, b"0\r\n\r\n", 400),
    ("bad Idempotency-Key", "POST", f"{ACCESS}/regenerateSecondaryKey?{API}", {"Idempotency-Key": b"x" * 129},
     b"", 400),
]


@pytest.mark.parametrize(("method", "target", "headers", "body", "status"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_hostile_requests_get_the_right_4xx(server: ServerProcess, method: str, target: str | bytes,
                                           headers: dict[str, bytes], body: bytes, status: int) -> None:
    assert_refused(server, send(server, request(server, method, target, headers=headers, body=body)), status)


CREDENTIALS = {
    "non-ASCII bearer": "Bearer ключ".encode(),
    "Latin-1 bearer": b"Bearer \xe9\xe8",
    "10 KB bearer": b"Bearer " + b"a" * 10_000,
    "10 KB JWT-shaped bearer": b"Bearer " + b"eyJ" + b"a" * 5_000 + b"." + b"b" * 5_000 + b".c",
    "non-ASCII SAS": "SharedAccessSignature uid=ключ&ex=2099-01-01T00:00:00.0000000Z&sn=AAAA".encode(),
    "10 KB SAS": b"SharedAccessSignature uid=" + b"u" * 10_000 + b"&ex=2099-01-01T00:00:00.0000000Z&sn=AAAA",
    "empty": b"",
    "scheme only": b"Bearer ",
}


@pytest.mark.parametrize("credential", list(CREDENTIALS.values()), ids=list(CREDENTIALS))
def test_hostile_credentials_get_401(server: ServerProcess, credential: bytes) -> None:
    raw = request(server, "GET", f"{ACCESS}?{API}", headers={"Authorization": credential}, auth=False)
    assert_refused(server, send(server, raw), 401)


def _latencies(server: ServerProcess, count: int) -> list[float]:
    out = []
    with httpx.Client(base_url=server.url, headers=server.auth(), timeout=10) as http:
        for _ in range(count):
            started = time.perf_counter()
            assert http.get(f"{ACCESS}?{API}").status_code == 200
            out.append(time.perf_counter() - started)
    return out


@pytest.mark.slow
def test_slow_loris_clients_do_not_slow_normal_clients(server: ServerProcess) -> None:
    """300 sockets dribble headers (one byte every 0.2 s); normal clients keep their latency, and
    the server cuts the slow ones off at its header deadline (2 s here)."""
    before = _latencies(server, 60)
    sockets = []
    for _ in range(300):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        sockets.append(sock)
    stop = threading.Event()

    def dribble() -> None:
        while not stop.is_set():
            for sock in sockets:
                with contextlib.suppress(OSError):
                    sock.send(b"a")
            time.sleep(0.2)

    dribbler = threading.Thread(target=dribble, daemon=True)
    dribbler.start()
    try:
        during = _latencies(server, 60)
    finally:
        stop.set()
        dribbler.join(5)
    p95_before = statistics.quantiles(before, n=20)[-1]
    p95_during = statistics.quantiles(during, n=20)[-1]
    assert p95_during < max(5 * p95_before, 0.1), (p95_before, p95_during)
    deadline = time.monotonic() + 10
    for sock in sockets:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(1024) == b""  # closed by the server, not answered
        sock.close()


def test_the_server_is_healthy_afterwards(server: ServerProcess, tmp_path: Path) -> None:
    with httpx.Client(base_url=server.url, headers=server.auth(), timeout=10) as http:
        assert http.get("/healthz").status_code == 200
        assert http.get("/readyz").status_code == 200
        assert http.post(f"{ACCESS}/regenerateSecondaryKey?{API}").status_code in (200, 204)
        assert http.post(f"{ACCESS}/listSecrets?{API}").status_code == 200
        assert http.get(f"{SVC}?{API}").status_code == 200
    assert server.proc is not None and server.proc.poll() is None
