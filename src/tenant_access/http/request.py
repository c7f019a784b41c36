"""An incoming HTTP request, read from the ASGI scope with only what the API needs.

Bodies are read lazily and with a hard limit, so an oversized upload is refused before it is held
in memory; JSON is parsed strictly (no duplicate keys, no NaN, bounded depth) because every byte
of a key service's input is hostile until proven otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, unquote_to_bytes

from tenant_access.domain.errors import FieldError, PayloadTooLarge, UnsupportedMediaType, ValidationFailed

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_JSON_DEPTH = 32


class Request:
    __slots__ = ("_body", "_query", "_receive", "_segments", "body_limit", "client", "headers", "method",
                 "raw_path", "request_id", "scope")

    def __init__(self, scope: Scope, receive: Receive, request_id: str, body_limit: int) -> None:
        self.scope = scope
        self._receive = receive
        self.request_id = request_id
        self.body_limit = body_limit
        self.method: str = scope["method"]
        raw = scope.get("raw_path") or scope["path"].encode("utf-8")
        self.raw_path: bytes = raw.split(b"?", 1)[0]
        self._segments: list[str] | None = None
        self.headers: dict[str, str] = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())
        }
        client = scope.get("client")
        self.client: str = client[0] if client else "-"
        self._query: dict[str, list[str]] | None = None
        self._body: bytes | None = None

    @property
    def segments(self) -> list[str]:
        """The path's segments, decoded; raises ``UnicodeDecodeError`` for a path that is not UTF-8.

        Computed on first use: a request whose route the app already knows by its raw path never
        needs them."""
        if self._segments is None:
            # Split before decoding: an encoded slash stays inside its segment (and then fails its rule).
            parts = self.raw_path.split(b"/")[1:]
            if b"%" in self.raw_path:
                self._segments = [unquote_to_bytes(part).decode("utf-8") for part in parts]
            else:
                self._segments = [part.decode("utf-8") for part in parts]
        return self._segments

    def repeats(self, name: str) -> bool:
        """Whether header ``name`` (lower case) was sent more than once. O(1) when no header was
        repeated at all, the usual case: ``headers`` then has as many entries as the request."""
        raw = self.scope.get("headers", ())
        if len(raw) == len(self.headers):
            return False
        wanted = name.encode("latin-1")
        return sum(1 for k, _ in raw if k.lower() == wanted) > 1

    def header_values(self, name: str) -> list[str]:
        """Every value of one header, in order (``headers`` keeps only the last of repeated ones)."""
        wanted = name.lower().encode("latin-1")
        return [v.decode("latin-1") for k, v in self.scope.get("headers", ()) if k.lower() == wanted]

    @property
    def path(self) -> str:
        return self.raw_path.decode("latin-1")

    def query(self, name: str) -> str | None:
        """One query parameter; given twice is an error, not a silent pick."""
        if self._query is None:
            raw = self.scope.get("query_string", b"").decode("latin-1")
            parsed: dict[str, list[str]] = {}
            if "&" not in raw and "%" not in raw and "+" not in raw and ";" not in raw:
                # The usual "api-version=2024-05-01": nothing for parse_qsl to decode.
                key, sep, value = raw.partition("=")
                if key or sep:
                    parsed[key] = [value]
            else:
                for key, value in parse_qsl(raw, keep_blank_values=True):
                    parsed.setdefault(key, []).append(value)
            self._query = parsed
        values = self._query.get(name)
        if not values:
            return None
        if len(values) > 1:
            raise ValidationFailed(
                f"The query parameter '{name}' was given more than once.",
                details=[FieldError(f"query.{name}", "given more than once")],
                target=name,
            )
        return values[0]

    async def body(self) -> bytes:
        if self._body is not None:
            return self._body
        declared = self.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.body_limit:
            raise PayloadTooLarge(f"The request body is larger than the limit of {self.body_limit} bytes.")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                # The client left (or the request deadline closed it) mid-body: what arrived is a
                # fragment, never to be acted on as if it were the whole request.
                raise ValidationFailed("The connection closed before the request body was complete.",
                                       details=[FieldError("body", "incomplete")], target="body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.body_limit:
                raise PayloadTooLarge(f"The request body is larger than the limit of {self.body_limit} bytes.")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        self._body = b"".join(chunks)
        return self._body

    async def json(self, *, required: bool) -> Any:
        """The body as JSON; ``None`` when there is none and none is required."""
        raw = await self.body()
        if not raw.strip():
            if required:
                raise ValidationFailed(
                    "A JSON request body is required.", details=[FieldError("body", "required")], target="body"
                )
            return None
        content_type = self.headers.get("content-type", "application/json").split(";", 1)[0].strip().lower()
        if content_type != "application/json" and not content_type.endswith("+json"):
            raise UnsupportedMediaType("Send the request body as application/json.")
        return parse_json(raw)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(raw: bytes) -> Any:
    if _too_deep(raw):
        raise ValidationFailed(
            f"The JSON body is nested deeper than {MAX_JSON_DEPTH} levels.",
            details=[FieldError("body", "nested too deeply")],
            target="body",
        )
    try:
        text = raw.decode("utf-8")
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        reason = str(exc).split(":")[0] if isinstance(exc, json.JSONDecodeError) else str(exc)
        if isinstance(exc, UnicodeDecodeError):
            reason = "not UTF-8"
        raise ValidationFailed(
            "The request body is not valid JSON.",
            details=[FieldError("body", reason[:200])],
            target="body",
        ) from None


def _too_deep(raw: bytes) -> bool:
    """Count nesting before parsing, so a hostile body never reaches the recursive parser deeply."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return False
    depth = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False
