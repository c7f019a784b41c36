"""The emulator controls from the outside: a thin client for ``/_emulator/``.

It rides on a :class:`~tenant_access.client.Client` (its connection pool, credential and TLS
settings), so whoever can call the API as an owner can drive the controls the same way, from a
test, the pytest fixture or ``tenant-access emulator``. Errors are the client's own exceptions.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tenant_access.client import Client
from tenant_access.client._errors import TransportError, UnexpectedResponse, from_response

PREFIX = "/_emulator"
#: What a rule may say; ``GET /_emulator/faults`` adds read-only fields (id, remaining, injected).
RULE_FIELDS = ("operation", "status", "rate", "retry_after", "latency_ms", "count")


def read_document(path: str | Path) -> Any:
    """A seed document from a file: JSON when it ends in ``.json``, YAML otherwise. Parsed here
    and sent as JSON, so the server never needs to understand YAML from the network."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        return json.loads(text)
    import yaml

    return yaml.safe_load(text)


class EmulatorControls:
    """Reset, inspect, seed and fault a server that has its emulator controls on.

    A server without them answers 404 (:class:`~tenant_access.client.NotFound`): start it with
    ``--emulator-controls`` (or ``--auth none``/``emulator``, where they are on by default).
    """

    def __init__(self, client: Client) -> None:
        self._client = client
        self._http: httpx.Client = client._http  # the same pool and credential as the API calls

    def _call(self, method: str, path: str, *, json_body: Any = None, params: dict[str, str] | None = None) -> Any:
        try:
            response = self._http.request(method, PREFIX + path, json=json_body, params=params)
        except httpx.RequestError as exc:
            raise TransportError(f"{method} {PREFIX}{path}: {type(exc).__name__}: {exc}") from exc
        if not response.is_success:
            raise from_response(response)
        try:
            return response.json()
        except ValueError:
            raise UnexpectedResponse(f"{method} {PREFIX}{path} answered {response.status_code} without JSON",
                                     status=response.status_code) from None

    def events(self, last: int = 100) -> list[dict[str, Any]]:
        """The newest events committed (CloudEvents, oldest first), whether or not anyone subscribed."""
        found: list[dict[str, Any]] = self._call("GET", "/events", params={"last": str(last)})["events"]
        return found

    def sink_url(self, name: str) -> str:
        """A webhook destination inside the server (no receiver of your own needed): subscribe it,
        then read what arrived with :meth:`sink`."""
        return str(self._http.base_url.join(f"{PREFIX}/sink/{name}"))

    def sink(self, name: str, *, wait_for: int = 0, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The deliveries the sink ``name`` received (``headers`` and ``body``), oldest first;
        with ``wait_for``, polls until at least that many arrived or ``timeout`` passed."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            found: list[dict[str, Any]] = self._call("GET", f"/sink/{name}")["deliveries"]
            if len(found) >= wait_for or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def clear_sink(self, name: str) -> None:
        self._call("DELETE", f"/sink/{name}")

    def reset(self) -> None:
        """Delete every service, key and audit record, and clear the fault rules. Credentials
        (tokens, service principals, the master key) survive."""
        self._call("POST", "/reset")

    def state(self, *, reveal: bool = False) -> dict[str, Any]:
        """Every service as a seed document (plus ``faults``); keys are ``***`` unless ``reveal``."""
        result: dict[str, Any] = self._call("GET", "/state", params={"reveal": "true"} if reveal else None)
        return result

    def seed(self, document: Mapping[str, Any] | str | Path) -> list[dict[str, str]]:
        """Provision a seed document (a mapping, or a YAML/JSON file); answers each service with
        ``result`` ``created``, ``updated`` or ``unchanged``."""
        if isinstance(document, str | Path):
            document = read_document(document)
        result = self._call("POST", "/seed", json_body=document)
        services: list[dict[str, str]] = result["services"]
        return services

    def faults(self) -> list[dict[str, Any]]:
        rules: list[dict[str, Any]] = self._call("GET", "/faults")["rules"]
        return rules

    def set_faults(self, rules: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Replace every rule. A rule: ``operation`` (name or pattern, default ``*``), ``status``
        (429, 500, 503 or None for delay only), ``rate`` (share of matching requests, default 1),
        ``retry_after`` (seconds), ``latency_ms``, ``count`` (how many times, default unlimited)."""
        body = {"rules": [dict(r) if isinstance(r, Mapping) else r for r in rules]}  # the server judges the rest
        answer: list[dict[str, Any]] = self._call("PUT", "/faults", json_body=body)[
            "rules"]
        return answer

    def add_fault(self, operation: str = "*", *, status: int | None = 503, rate: float = 1.0, retry_after: int = 1,
                  latency_ms: int = 0, count: int | None = None) -> dict[str, Any]:
        """Add one rule to those in force; answers it as the server stored it (with its ``id``).

        The rules are replaced as a whole (``PUT``), so the others come back with new ids and
        their counters restarted from what they had left; used-up rules are dropped.
        """
        current = []
        for rule in self.faults():
            if rule.get("remaining") == 0:
                continue  # used up: carrying it over would only make it count again
            kept = {k: rule[k] for k in RULE_FIELDS if rule.get(k) is not None}
            if rule.get("remaining") is not None:
                kept["count"] = rule["remaining"]  # what is left of it, not what it started with
            current.append(kept)
        new = {"operation": operation, "status": status, "rate": rate, "retry_after": retry_after,
               "latency_ms": latency_ms, "count": count}
        return self.set_faults([*current, new])[-1]

    def clock(self) -> dict[str, Any]:
        """The server's now (``now``, ``offset_seconds``, ``moved``)."""
        result: dict[str, Any] = self._call("GET", "/clock")
        return result

    def set_clock(self, now: str) -> dict[str, Any]:
        """Set the server's now (ISO 8601 with a time zone); it keeps ticking from there."""
        result: dict[str, Any] = self._call("PUT", "/clock", json_body={"now": now})
        return result

    def advance(self, duration: str) -> dict[str, Any]:
        """Move the server's now ahead by an ISO 8601 duration (``"P90D"``, ``"PT15M"``): policies,
        key expiry, key usage and SAS expiry all see it. A reset goes back to real time."""
        result: dict[str, Any] = self._call("POST", "/clock/advance", json_body={"by": duration})
        return result

    def reset_clock(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("DELETE", "/clock")
        return result

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    @contextmanager
    def fault(self, operation: str = "*", *, status: int | None = 503, rate: float = 1.0, retry_after: int = 1,
              latency_ms: int = 0, count: int | None = None) -> Iterator[dict[str, Any]]:
        """A rule for the duration of a ``with`` block; every rule is cleared at its end."""
        rule = self.add_fault(operation, status=status, rate=rate, retry_after=retry_after, latency_ms=latency_ms,
                              count=count)
        try:
            yield rule
        finally:
            self.clear_faults()
