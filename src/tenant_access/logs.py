"""Log output: JSON lines for machines, one readable line for people.

Log shippers (journald, Docker, Kubernetes, Loki, CloudWatch) want one JSON object per line with
stable field names; a person at a terminal wants a short line. So the format follows where stderr
goes unless told (``--log-format``). Either way every request produces exactly one
``tenant_access.access`` event whose fields (``request_id``, ``principal``, ``operation``,
``status``, ``duration_ms``, ...) are passed as data, not parsed back out of a message.

Nothing here decides *what* is logged: callers never pass keys, tokens or request bodies, and the
canary test (``tests/http/test_canary.py``) checks the output of a whole session for planted keys.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import threading
import time
from typing import Any, TextIO

import orjson

#: The request being served by the current task, so every record logged while serving it (not
#: only the access event) can be tied to its answer's ``X-Request-Id``.
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("tenant_access_request_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
#: The attribute of a log record that carries structured fields (``logger.info(..., extra={FIELDS: {...}})``).
FIELDS = "fields"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time``, ``level``, ``logger``, ``message``, then the record's
    structured fields, then ``exception`` when there is one. Field names never collide with the
    fixed ones because structured fields cannot overwrite them."""

    #: One encoder for every record (building one per call is a measurable share of a request).
    _encoder = json.JSONEncoder(ensure_ascii=False, default=str, separators=(",", ":"))

    def __init__(self) -> None:
        super().__init__()
        #: (whole second, its text): one tuple, so a record formatted on another thread never sees half an update.
        self._second: tuple[int, str] = (-1, "")

    def _time(self, created: float) -> str:
        """UTC with milliseconds and ``Z``; the text up to the second is made once a second, not per record."""
        second = int(created)
        cached = self._second
        if cached[0] != second:
            cached = self._second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        return f"{cached[1]}.{int((created - second) * 1000):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self._time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, FIELDS, None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                out.setdefault(key, value)
        current = request_id.get()
        if current is not None:
            out.setdefault("request_id", current)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        return self._encoder.encode(out)


class BufferedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes in batches: at most every ``interval`` seconds, at once for
    warnings and errors, and at exit. A write per request was a third of the cost of the cheapest
    request; batching keeps every line and order, at the price of up to ``interval`` seconds of
    access lines lost if the process is killed outright (the audit trail is in the database)."""

    def __init__(self, stream: TextIO, interval: float = 0.1, limit: int = 64 * 1024) -> None:
        super().__init__(stream)
        self.interval = interval
        self.limit = limit
        self._pending: list[str] = []
        self._size = 0
        self._wake = threading.Event()
        self._closed = False
        threading.Thread(target=self._flusher, name="log-flusher", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        with self.lock:  # type: ignore[union-attr]
            self._pending.append(line)
            self._size += len(line)
            urgent = record.levelno >= logging.WARNING or self._size >= self.limit
        if urgent:
            self.flush()

    def write_line(self, line: str) -> None:
        """Queue an already formatted line (the access event's fast path)."""
        with self.lock:  # type: ignore[union-attr]
            self._pending.append(line)
            self._size += len(line)
            full = self._size >= self.limit
        if full:
            self.flush()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            if not self._pending:
                return
            text, self._pending, self._size = "".join(self._pending), [], 0
            try:
                self.stream.write(text)
                self.stream.flush()
            except (OSError, ValueError):  # a closed or broken stream: nothing left to tell
                pass

    def _flusher(self) -> None:
        while not self._closed:
            self._wake.wait(self.interval)
            self.flush()

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self.flush()
        super().close()


ACCESS_LOGGER = "tenant_access.access"
_access_logger = logging.getLogger(ACCESS_LOGGER)
#: The handler and formatter ``configure`` installed, for :func:`access`'s fast path.
_sink: tuple[BufferedStreamHandler, logging.Formatter] | None = None


def access(message: str, fields: dict[str, Any]) -> None:
    """Log the access event of one request.

    Every request makes one, so it skips the logging machinery (a record, its formatting, a lock
    per call cost a third of a cheap request) when our own handler is the only one on the root
    logger: the line is built directly, identical to what the formatter would have written.
    Anywhere else (a test's capture handler, an embedding application's handlers) it is an
    ordinary ``tenant_access.access`` record.
    """
    sink = _sink
    root = logging.root
    if (sink is None or len(root.handlers) != 1 or root.handlers[0] is not sink[0] or _access_logger.handlers
            or not _access_logger.propagate or _access_logger.disabled):
        _access_logger.info(message, extra={FIELDS: fields})
        return
    handler, formatter = sink
    now = time.time()
    if isinstance(formatter, JsonFormatter):
        out: dict[str, Any] = {"time": formatter._time(now), "level": "INFO", "logger": ACCESS_LOGGER,
                               "message": message}
        for key, value in fields.items():
            out.setdefault(key, value)
        line = orjson.dumps(out, default=str).decode("utf-8")
    else:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
        line = f"{stamp},{int((now % 1) * 1000):03d} INFO    {ACCESS_LOGGER}: {message}"
    handler.write_line(line + handler.terminator)


def wants_json(log_format: str, stream: TextIO) -> bool:
    """``auto`` means JSON unless a person is watching: a terminal gets the readable line."""
    if log_format != "auto":
        return log_format == "json"
    try:
        return not stream.isatty()
    except (AttributeError, ValueError):  # a closed or exotic stream: assume a machine reads it
        return True


def configure(level: str, log_format: str = "auto", stream: TextIO | None = None) -> None:
    """Install one handler on the root logger (replacing any earlier one of ours), so uvicorn's
    records and ours share a format."""
    stream = stream if stream is not None else sys.stderr
    global _sink  # noqa: PLW0603 - the one handler this module installs, by design
    handler = BufferedStreamHandler(stream)
    formatter = JsonFormatter() if wants_json(log_format, stream) else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    _sink = (handler, formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        if isinstance(old, BufferedStreamHandler):
            old.close()
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
