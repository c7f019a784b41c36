"""Emulator routes for events: the last events committed, and a built-in receiver (the sink).

``GET /_emulator/events`` lists the newest events of the outbox as CloudEvents. The sink,
``/_emulator/sink/{name}``, is a webhook destination inside the server itself: it answers the
CloudEvents handshake (OPTIONS) and Event Grid's validation event, accepts deliveries (public, as
a real receiver is: a delivery carries no credential), and keeps the last :data:`KEEP` of each
name in memory, readable (owner-only) with ``GET`` and cleared with ``DELETE``. A subscription
may point at the server's own sink without ``--allow-private-event-destinations``: the address is
the server's, not someone else's.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from tenant_access.domain import events as domain_events
from tenant_access.domain.errors import ValidationFailed
from tenant_access.http.context import Context, Outcome
from tenant_access.http.routing import Route

if TYPE_CHECKING:
    from tenant_access.http.app import App

KEEP = 1000
MAX_LAST = 1000
_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature", "content-type", "aeg-event-type")


class Sink:
    def __init__(self) -> None:
        self.received: dict[str, deque[dict[str, Any]]] = {}

    def routes(self, app: App, prefix: str) -> list[Route]:
        sink = self

        async def recent(ctx: Context) -> Outcome:
            raw = ctx.request.query("last") or "100"
            if not raw.isdigit() or not 1 <= int(raw) <= MAX_LAST:
                raise ValidationFailed(f"last must be an integer from 1 to {MAX_LAST}.", target="last")
            found = await app.store.run_outbox(app.store.outbox.recent(int(raw)))
            return Outcome("document", {"events": [domain_events.cloudevent(e) for e in found]})

        async def options(ctx: Context) -> Outcome:
            origin = ctx.request.headers.get("webhook-request-origin") or "*"
            return Outcome("document", {}, headers=(("WebHook-Allowed-Origin", origin),))

        async def receive(ctx: Context) -> Outcome:
            name = ctx.params["sinkName"]
            body = await ctx.request.json(required=True)
            if ctx.request.headers.get("aeg-event-type") == "SubscriptionValidation" and isinstance(body, list) \
                    and body and isinstance(body[0], dict):
                code = (body[0].get("data") or {}).get("validationCode")
                return Outcome("document", {"validationResponse": code})
            kept = sink.received.setdefault(name, deque(maxlen=KEEP))
            kept.append({"headers": {h: ctx.request.headers[h] for h in _HEADERS if h in ctx.request.headers},
                         "body": body})
            return Outcome("document", {"received": True})

        async def read(ctx: Context) -> Outcome:
            return Outcome("document", {"deliveries": list(sink.received.get(ctx.params["sinkName"], ()))})

        async def clear(ctx: Context) -> Outcome:
            sink.received.pop(ctx.params["sinkName"], None)
            return Outcome("document", {"deliveries": []})

        def route(operation: str, method: str, path: str, handler: Any, summary: str, *,
                  public: bool = False) -> Route:
            return Route(operation, method, prefix + path, handler, summary, versioned=False, public=public)

        return [
            route("emulator.events", "GET", "/events", recent,
                  "Emulator: the newest events (?last=N, default 100) as CloudEvents, oldest first"),
            route("emulator.sink.options", "OPTIONS", "/sink/{sinkName}", options,
                  "Emulator sink: the CloudEvents webhook handshake", public=True),
            route("emulator.sink.receive", "POST", "/sink/{sinkName}", receive,
                  "Emulator sink: receive a delivery (answers Event Grid's validation event)", public=True),
            route("emulator.sink.get", "GET", "/sink/{sinkName}", read,
                  "Emulator sink: the deliveries received under this name, oldest first"),
            route("emulator.sink.delete", "DELETE", "/sink/{sinkName}", clear,
                  "Emulator sink: forget the deliveries received under this name"),
        ]


