"""A real webhook receiver on loopback, for the delivery tests: it records what arrives and answers
as a test tells it to (always fail, fail a share of attempts at random, redirect, be down).

Run in a thread (:class:`Receiver`) or as a process of its own (``python -m tests.events.receiver
PORT FAIL_RATIO LOG``, one JSON line per accepted delivery appended to LOG).
"""

from __future__ import annotations

import json
import random
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Behaviour:
    status: int = 200
    fail_ratio: float = 0.0
    retry_after: str | None = None
    location: str | None = None
    allowed_origin: str | None = "*"
    answers_options: bool = True
    #: Answer Event Grid's subscription validation event as Event Grid handlers do.
    validates: bool = False
    log: Any = None
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(behaviour: Behaviour) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _record(self) -> bytes:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            with behaviour.lock:
                behaviour.received.append(Received(self.command, self.path, {k.lower(): v for k, v in
                                                                             self.headers.items()}, body))
            return body

        def _answer(self, status: int, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def do_OPTIONS(self) -> None:
            self._record()
            if not behaviour.answers_options:
                self._answer(404)
                return
            headers = {}
            if behaviour.allowed_origin is not None:
                headers["WebHook-Allowed-Origin"] = behaviour.allowed_origin
            self._answer(200, headers)

        def do_POST(self) -> None:
            body = self._record()
            if behaviour.validates and self.headers.get("aeg-event-type") == "SubscriptionValidation":
                answer = json.dumps({"validationResponse": json.loads(body)[0]["data"]["validationCode"]}).encode()
                self.send_response(200)
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
                return
            if behaviour.location is not None:
                self._answer(307, {"location": behaviour.location})
                return
            if behaviour.status >= 300 or random.random() < behaviour.fail_ratio:
                headers = {"retry-after": behaviour.retry_after} if behaviour.retry_after else {}
                self._answer(behaviour.status if behaviour.status >= 300 else 500, headers)
                return
            if behaviour.log is not None:
                with behaviour.lock:
                    behaviour.log.write(json.dumps({"id": self.headers.get("webhook-id"),
                                                    "body": body.decode()}) + "\n")
                    behaviour.log.flush()
            self._answer(behaviour.status)

    return Handler


class Receiver:
    def __init__(self, behaviour: Behaviour | None = None, port: int = 0) -> None:
        self.behaviour = behaviour or Behaviour()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self.behaviour))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def posts(self) -> list[Received]:
        with self.behaviour.lock:
            return [r for r in self.behaviour.received if r.method == "POST"]


if __name__ == "__main__":
    with open(sys.argv[3], "a", encoding="utf-8") as log:
        receiver = Receiver(Behaviour(fail_ratio=float(sys.argv[2]), log=log), int(sys.argv[1]))
        receiver.server.serve_forever()
