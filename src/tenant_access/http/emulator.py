"""Emulator controls under the reserved prefix ``/_emulator/``: reset, state dump, seeding, faults.

They exist so that tests can put a server into a known state quickly and make it misbehave on
purpose (429/503 with ``Retry-After``, or slowness) to exercise retry logic. They are ordinary
routes, so the route table, the OpenAPI document and authorization all cover them; the
authorization table grants them to owners only, and as ``/_emulator`` lies under no subscription
only an owner scoped to ``/`` passes. The server registers them only when
:attr:`~tenant_access.config.Settings.emulator_controls_enabled` (off by default with
``--auth strict``), because a reset erases the audit trail.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import fnmatch
import itertools
import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tenant_access.domain.errors import (
    FieldError,
    InternalError,
    Problems,
    ServiceUnavailable,
    TenantAccessError,
    TooManyRequests,
    ValidationFailed,
)
from tenant_access.http.context import Context, Outcome
from tenant_access.http.routing import Route

if TYPE_CHECKING:
    from tenant_access.http.app import App

log = logging.getLogger("tenant_access.emulator")

PREFIX = "/_emulator"
FAULT_STATUSES = (429, 500, 503)
MAX_LATENCY_MS = 60_000
MAX_RETRY_AFTER = 3600
MAX_RULES = 100
#: A seed document may describe many services; the API's own 64 KiB limit is for single resources.
SEED_BODY_LIMIT = 4 * 1024 * 1024
_RULE_FIELDS = {"operation", "status", "rate", "retry_after", "latency_ms", "count"}
#: Never faulted: the controls themselves (or a fault could lock a test out of clearing it) and
#: the health and document routes (or the fixture could not tell "up" from "faulted").
_EXEMPT = ("emulator.", "meta.")


@dataclass
class FaultRule:
    """``status`` None means a delay only. ``remaining`` counts down from ``count``; at zero the
    rule stops firing (``count: 1`` is "fail the next matching request") but stays listed, so a
    test can still read how often it fired."""

    id: int
    operation: str
    status: int | None
    rate: float
    retry_after: int
    latency_ms: int
    remaining: int | None
    injected: int = 0

    def matches(self, operation: str) -> bool:
        return fnmatch.fnmatchcase(operation, self.operation)

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "operation": self.operation, "status": self.status, "rate": self.rate,
                "retry_after": self.retry_after if self.status in (429, 503) else None,
                "latency_ms": self.latency_ms, "remaining": self.remaining, "injected": self.injected}


def exempt(operation: str) -> bool:
    return operation.startswith(_EXEMPT)


class FaultInjector:
    """The active fault rules; runs on the event loop only, so it needs no lock."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rules: list[FaultRule] = []
        self._rng = rng or random.Random()  # noqa: S311 - chance of a test fault, not security
        self._ids = itertools.count(1)

    def replace(self, rules: list[FaultRule]) -> None:
        self.rules = rules

    def clear(self) -> None:
        self.rules = []

    def describe(self) -> dict[str, Any]:
        return {"rules": [rule.describe() for rule in self.rules]}

    def parse(self, body: Any, operations: Iterable[str]) -> list[FaultRule]:
        """``{"rules": [...]}`` or a bare list; every rule is checked before any replaces the old set."""
        problems = Problems()
        items = body
        if isinstance(body, dict):
            items = body.get("rules", [body])  # a single rule may come on its own
            for key in sorted(set(body) - {"rules"}) if "rules" in body else ():
                problems.add(f"body.{key}", "unknown field next to rules")
        if not isinstance(items, list):
            problems.add("body.rules", "must be a list of rules")
            problems.raise_if_any("The fault rules are not valid.")
        if len(items) > MAX_RULES:
            problems.add("body.rules", f"at most {MAX_RULES} rules")
        known = sorted(op for op in operations if not exempt(op))
        rules = [rule for index, item in enumerate(items)
                 if (rule := self._rule(item, f"body.rules[{index}]", known, problems)) is not None]
        problems.raise_if_any("The fault rules are not valid.")
        return rules

    def _rule(self, item: Any, where: str, known: list[str], problems: Problems) -> FaultRule | None:
        if not isinstance(item, dict):
            problems.add(where, "must be an object")
            return None
        before = len(problems.items)
        for key in item:
            if key not in _RULE_FIELDS:
                problems.add(f"{where}.{key}", "unknown field; use " + ", ".join(sorted(_RULE_FIELDS)))
        operation = item.get("operation", "*")
        if not isinstance(operation, str) or not operation:
            problems.add(f"{where}.operation", "must be an operation name or a pattern such as access.* or *")
        elif not any(fnmatch.fnmatchcase(op, operation) for op in known):
            problems.add(f"{where}.operation", "matches no operation that can be faulted (see /openapi.json "
                                               "for operation ids; emulator.* and meta.* never are)")
        status = item.get("status")
        if status is not None and (type(status) is not int or status not in FAULT_STATUSES):
            problems.add(f"{where}.status", "must be one of " + ", ".join(map(str, FAULT_STATUSES)) + " or null")
        rate = item.get("rate", 1.0)
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= 1:
            problems.add(f"{where}.rate", "must be a number in (0, 1]: the share of matching requests")
        retry_after = _integer(item, "retry_after", 1, 0, MAX_RETRY_AFTER, where, problems)
        latency = _integer(item, "latency_ms", 0, 0, MAX_LATENCY_MS, where, problems)
        count = item.get("count")
        if count is not None and (type(count) is not int or count < 1):
            problems.add(f"{where}.count", "must be a positive integer or null (no limit)")
        if status is None and not latency:
            problems.add(where, "give a status, a latency_ms, or both: this rule would do nothing")
        if len(problems.items) > before:
            return None
        return FaultRule(next(self._ids), operation, status, float(rate), retry_after, latency, count)

    async def inject(self, operation: str) -> None:
        """Delay or fail this request as the first rules that hit say; called after authentication
        and authorization, so faults never hide a 401 or 403."""
        if not self.rules or exempt(operation):
            return
        for rule in self.rules:
            if rule.remaining == 0 or not rule.matches(operation):
                continue
            if rule.rate < 1 and self._rng.random() >= rule.rate:
                continue
            rule.injected += 1
            if rule.remaining is not None:
                rule.remaining -= 1
            if rule.latency_ms:
                await asyncio.sleep(rule.latency_ms / 1000)
            if rule.status is not None:
                log.info("injecting %d into %s (fault rule %d)", rule.status, operation, rule.id)
                raise _fault(rule)


def _integer(item: dict[str, Any], key: str, default: int, low: int, high: int, where: str,
             problems: Problems) -> int:
    value = item.get(key, default)
    if value is None:
        return default
    if type(value) is not int or not low <= value <= high:
        problems.add(f"{where}.{key}", f"must be an integer from {low} to {high}")
        return default
    return value


def _fault(rule: FaultRule) -> TenantAccessError:
    note = f"(fault injected by emulator rule {rule.id})"
    if rule.status == 429:
        return TooManyRequests(f"Too many requests; retry later {note}.", retry_after=rule.retry_after)
    if rule.status == 503:
        return ServiceUnavailable(f"The service is temporarily unavailable {note}.", retry_after=rule.retry_after)
    return InternalError(f"An internal error occurred {note}.")


async def _scheduled(app: App) -> list[str]:
    """After the clock moved: usage written (so every replica's decision sees it) and, where the
    scheduler runs, one pass, so that what became due is done when the answer arrives."""
    await app.usage.flush()
    return await app.scheduler.run_once() if app.scheduler.state.enabled else []


def _clock_time(body: Any) -> _dt.datetime:
    raw = body.get("now") if isinstance(body, dict) else None
    if isinstance(body, dict):
        unknown = sorted(set(body) - {"now"})
        if unknown:
            raise ValidationFailed("Only 'now' may be set.",
                                   details=[FieldError(f"body.{unknown[0]}", "unknown field")])
    try:
        if not isinstance(raw, str):
            raise ValueError(raw)
        when = _dt.datetime.fromisoformat(raw.strip().replace("z", "Z"))
        if when.tzinfo is None:
            raise ValueError(raw)
        return when
    except ValueError:
        raise ValidationFailed("The clock needs 'now', an ISO 8601 time with a time zone (2027-01-01T00:00:00Z).",
                               details=[FieldError("body.now", "must be an ISO 8601 time with a time zone")],
                               target="now") from None


def _clock_step(raw: Any) -> _dt.timedelta:
    from tenant_access.clock import parse_duration

    try:
        step = parse_duration(raw)
    except ValueError as exc:
        raise ValidationFailed("The clock advances by an ISO 8601 duration ('by': P90D, PT15M).",
                               details=[FieldError("by", str(exc))], target="by") from None
    if not step:
        raise ValidationFailed("The clock advances by a positive duration.",
                               details=[FieldError("by", "must be longer than zero")], target="by")
    return step


def _flag(ctx: Context, name: str) -> bool:
    raw = ctx.request.query(name)
    if raw is None:
        return False
    value = raw.strip().lower()
    if value not in ("true", "false", "1", "0", "yes", "no", ""):
        raise ValidationFailed(f"The query parameter '{name}' must be true or false.")
    return value in ("true", "1", "yes", "")


class Emulator:
    """The controls of one app: its fault rules and the routes that drive them."""

    def __init__(self, app: App) -> None:
        from tenant_access.http.emulator_events import Sink

        self.app = app
        self.faults = FaultInjector()
        self.sink = Sink()

    def routes(self) -> list[Route]:
        app, faults = self.app, self.faults

        def faultable() -> list[str]:
            return [route.operation for route in app.routes]

        async def reset(ctx: Context) -> Outcome:
            await app.store.reset()
            app.refusals.forget()  # their records are gone with the rest
            faults.clear()
            app.usage.forget()  # counts of keys that are gone
            app.clock.reset()  # a reset state starts at real time: no test inherits another's moved clock
            log.info("emulator reset by %s (request %s): every service, key and audit record was deleted",
                        ctx.actor.principal, ctx.actor.request_id)
            return Outcome("document", {"reset": True})

        async def state(ctx: Context) -> Outcome:
            from tenant_access import seeding

            document = await seeding.dump(ctx.app, ctx.actor, reveal=_flag(ctx, "reveal"))
            document["faults"] = faults.describe()["rules"]
            # Revealed, the document carries every key: no cache may keep a copy.
            return Outcome("document", document, headers=(("Cache-Control", "no-store"),))

        async def seed(ctx: Context) -> Outcome:
            from tenant_access import seeding

            ctx.request.body_limit = max(ctx.request.body_limit, SEED_BODY_LIMIT)
            body = await ctx.request.json(required=True)
            try:
                services = seeding.parse(body)
            except seeding.SeedError as exc:
                raise exc.as_validation() from None
            results = await seeding.apply(ctx.app, ctx.actor, services)
            return Outcome("document", {"services": [r.as_dict() for r in results]})

        async def get_faults(ctx: Context) -> Outcome:
            return Outcome("document", faults.describe())

        async def put_faults(ctx: Context) -> Outcome:
            faults.replace(faults.parse(await ctx.request.json(required=True), faultable()))
            log.info("fault rules set by %s: %s", ctx.actor.principal, faults.describe()["rules"])
            return Outcome("document", faults.describe())

        async def delete_faults(ctx: Context) -> Outcome:
            faults.clear()
            return Outcome("document", faults.describe())

        async def get_clock(ctx: Context) -> Outcome:
            return Outcome("document", app.clock.describe())

        async def set_clock(ctx: Context) -> Outcome:
            body = await ctx.request.json(required=True)
            app.clock.set(_clock_time(body))
            log.info("emulator clock set by %s to %s", ctx.actor.principal, app.clock.describe()["now"])
            return Outcome("document", {**app.clock.describe(), "scheduled": await _scheduled(app)})

        async def advance_clock(ctx: Context) -> Outcome:
            body = await ctx.request.json(required=False)
            raw = ctx.request.query("by")
            if raw is None and isinstance(body, dict):
                raw = body.get("by")
            app.clock.advance(_clock_step(raw))
            log.info("emulator clock advanced by %s (%s) to %s", raw, ctx.actor.principal, app.clock.describe()["now"])
            return Outcome("document", {**app.clock.describe(), "scheduled": await _scheduled(app)})

        async def reset_clock(ctx: Context) -> Outcome:
            app.clock.reset()
            return Outcome("document", app.clock.describe())

        def route(operation: str, method: str, path: str, handler: Any, summary: str) -> Route:
            return Route(operation, method, PREFIX + path, handler, summary, versioned=False)

        return [
            route("emulator.reset", "POST", "/reset", reset,
                  "Emulator: delete every service, key and audit record, and clear the fault rules"),
            route("emulator.state", "GET", "/state", state,
                  "Emulator: every service as a seed document (keys masked unless ?reveal=true)"),
            route("emulator.seed", "POST", "/seed", seed,
                  "Emulator: provision the services of a seed document (idempotent)"),
            route("emulator.faults.get", "GET", "/faults", get_faults, "Emulator: the active fault rules"),
            route("emulator.faults.put", "PUT", "/faults", put_faults,
                  "Emulator: replace the fault rules (answer a share of requests with 429/500/503, or delay them)"),
            route("emulator.faults.delete", "DELETE", "/faults", delete_faults, "Emulator: remove every fault rule"),
            route("emulator.clock.get", "GET", "/clock", get_clock,
                  "Emulator: the server's now for policies, key expiry, key usage and SAS expiry"),
            route("emulator.clock.set", "PUT", "/clock", set_clock,
                  'Emulator: set the server\'s now ({"now": "2027-01-01T00:00:00Z"}); it keeps ticking from there'),
            route("emulator.clock.advance", "POST", "/clock/advance", advance_clock,
                  'Emulator: move the server\'s now ahead by an ISO 8601 duration ({"by": "P90D"} or ?by=P90D)'),
            route("emulator.clock.delete", "DELETE", "/clock", reset_clock, "Emulator: back to real time"),
            *self.sink.routes(app, PREFIX),
        ]
