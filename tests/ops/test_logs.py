"""One structured event per request, JSON when no person is watching, text when asked."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tenant_access import logs
from tests.conftest import API, SERVICE_BODY, service_path
from tests.serverproc import ServerProcess

ACCESS_FIELDS = {"time", "level", "logger", "message", "event", "request_id", "method", "path", "operation",
                 "status", "duration_ms", "principal", "client"}


def json_lines(output: str) -> list[dict[str, Any]]:
    """Every log line of a server's output; the start-up lines it prints for people are not logs."""
    lines = [line for line in output.splitlines() if line.startswith("{")]
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    made = ServerProcess(tmp_path_factory.mktemp("logs")).start()  # stderr is a pipe: JSON by default
    yield made
    made.stop()


def test_every_request_is_one_json_event(server: ServerProcess) -> None:
    path = service_path("logged-svc")
    token = server.token(sub="log-principal")
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as http:
        created = http.put(f"{path}?{API}", json=SERVICE_BODY)
        rotated = http.post(f"{path}/tenant/access/regenerateSecondaryKey?{API}")
        refused = httpx.get(f"{server.url}{path}?{API}")
        health = http.get("/healthz")
    assert (created.status_code, rotated.status_code, refused.status_code) == (201, 200, 401)
    server.stop()  # flushes the output; the module's other tests start it again
    server.start()

    records = json_lines(server.log())
    assert records, server.log()
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    events = {r["request_id"]: r for r in records if r.get("event") == "request"}
    for response, operation, principal in (
        (created, "services.create_or_update", "log-principal"),
        (rotated, "access.regenerate_secondary_key", "log-principal"),
        (refused, "services.get", "-"),
        (health, "meta.healthz", "-"),
    ):
        event = events[response.headers["x-request-id"]]
        assert set(event) == ACCESS_FIELDS
        assert event["logger"] == "tenant_access.access"
        assert event["level"] == "INFO"
        assert event["operation"] == operation
        assert event["status"] == response.status_code
        assert event["principal"] == principal
        assert event["method"] == response.request.method
        assert event["path"] == response.request.url.path
        assert event["client"] == "127.0.0.1"
        assert isinstance(event["duration_ms"], float) and event["duration_ms"] >= 0
        assert event["time"].endswith("Z")
    # Records other than the access event, logged while serving a request, carry its id too.
    refusal = [r for r in records if r["logger"] == "tenant_access.auth"]
    assert refusal and refusal[-1]["request_id"] == refused.headers["x-request-id"]


def test_text_format_when_asked(tmp_path: Any) -> None:
    server = ServerProcess(tmp_path, ["--log-format", "text"]).start()
    try:
        response = httpx.get(f"{server.url}/healthz")
    finally:
        server.stop()
    lines = [line for line in server.log().splitlines() if "tenant_access.access" in line]
    assert lines and not lines[-1].startswith("{")
    assert "GET meta.healthz /healthz 200" in lines[-1]
    assert response.headers["x-request-id"] in lines[-1]


def test_formatter_shape_and_exceptions() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("tenant_access.test_logs")
    logger.addHandler(handler)
    logger.propagate = False
    token = logs.request_id.set("req-1")
    try:
        logger.warning("plain %s", "message", extra={logs.FIELDS: {"status": 503, "level": "overridden?"}})
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
    finally:
        logs.request_id.reset(token)
        logger.removeHandler(handler)
        logger.propagate = True
    first, second = (json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{"))
    assert first == {"time": first["time"], "level": "WARNING", "logger": "tenant_access.test_logs",
                     "message": "plain message", "status": 503, "request_id": "req-1"}
    assert second["message"] == "failed" and "ValueError: boom" in second["exception"]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("fmt", "stream", "expected"), [
    ("auto", io.StringIO(), True),
    ("auto", _Terminal(), False),
    ("json", _Terminal(), True),
    ("text", io.StringIO(), False),
])
def test_auto_means_json_unless_a_terminal(fmt: str, stream: io.StringIO, expected: bool) -> None:
    assert logs.wants_json(fmt, stream) is expected


def test_configure_replaces_the_handler() -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        first, second = io.StringIO(), io.StringIO()
        logs.configure("info", "json", first)
        logs.configure("info", "text", second)
        logging.getLogger("tenant_access.test_logs").info("once")
        for handler in root.handlers:
            handler.flush()
        assert first.getvalue() == ""
        assert "INFO    tenant_access.test_logs: once" in second.getvalue()
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])


def test_lines_are_written_in_batches_but_warnings_at_once() -> None:
    stream = io.StringIO()
    handler = logs.BufferedStreamHandler(stream, interval=0.05)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log = logging.getLogger("tenant_access.test_batches")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        log.info("first")
        log.info("second")
        assert stream.getvalue() == ""  # not yet: batched
        log.warning("third")
        assert stream.getvalue() == "INFO first\nINFO second\nWARNING third\n"  # order kept
        log.info("fourth")
        deadline = time.monotonic() + 5
        while "fourth" not in stream.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stream.getvalue().endswith("INFO fourth\n")  # the flusher wrote it unprompted
    finally:
        log.removeHandler(handler)
        handler.close()
