"""The ASGI application: one entry point, one place that turns every failure into a response.

It is deliberately a plain ASGI callable rather than a framework app: the request path stays short
(start-up and per-request cost are product features here), and no framework default body can ever
reach a client, because every answer is built by the active wire format.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING

from tenant_access import logs
from tenant_access.config import Settings
from tenant_access.domain import api_versions, rules
from tenant_access.domain.audit import Actor, event
from tenant_access.domain.errors import InternalError, NotFound, Problems, TenantAccessError, ValidationFailed
from tenant_access.domain.models import ServiceRef
from tenant_access.http.context import Context, Outcome
from tenant_access.http.handlers import AZURE_ROUTES, ROUTES
from tenant_access.http.ids import new_request_id
from tenant_access.http.request import Receive, Request, Scope, Send
from tenant_access.http.responses import Response
from tenant_access.http.routing import Route, Router
from tenant_access.memo import Memo
from tenant_access.metrics import Metrics
from tenant_access.security.authorization import Principal
from tenant_access.service import TenantAccess
from tenant_access.storage.base import Store

if TYPE_CHECKING:
    from tenant_access.delivery import Deliverer
    from tenant_access.delivery_process import DeliveryChild, NoDelivery
    from tenant_access.http.emulator import Emulator

log = logging.getLogger("tenant_access.http")
ANONYMOUS = Principal.anonymous()
UNAUTHENTICATED = Actor("unauthenticated", "-", "-", "-", "-", "-")
access_log = logging.getLogger("tenant_access.access")
#: How many (method, path) pairs the router remembers, and for paths of at most how many bytes.
KNOWN_PATHS = 8192
MAX_KNOWN_PATH = 512


def _wire(style: str) -> ModuleType:
    if style == "azure":
        from tenant_access.http import wire_azure

        return wire_azure
    from tenant_access.http import wire_seed

    return wire_seed


class App:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.public_url = settings.base_url
        self.store = store
        from tenant_access.clock import Clock

        #: The one "now" of key lifecycle (policies, expiry, usage, SAS expiry); see clock.py.
        self.clock = Clock()
        from tenant_access.usage import UsageRecorder

        #: Uses of each key version, counted in memory and written in batches (usage.py).
        self.usage = UsageRecorder(store)
        self.use_cases = TenantAccess(store, self.clock, self.usage)
        self.wire = _wire(settings.api_style)
        self.metrics = Metrics(api_style=settings.api_style, auth=settings.auth)
        routes = list(ROUTES)
        if settings.api_style == "azure":
            routes.extend(AZURE_ROUTES)
        from tenant_access.http import documents

        routes.extend(documents.routes(self))
        from tenant_access.http import identity

        routes.extend(identity.routes(self))
        if settings.console:
            from tenant_access.http import console

            routes.extend(console.routes(self))
        self.emulator: Emulator | None = None
        if settings.emulator_controls_enabled:
            from tenant_access.http.emulator import Emulator

            self.emulator = Emulator(self)
            routes.extend(self.emulator.routes())
        self.routes: tuple[Route, ...] = tuple(routes)
        self.router = Router(self.routes)
        from tenant_access.http import auth

        self.auth = auth.build(settings, store)
        self.auth.clock = self.clock
        self.auth.usage = self.usage
        self._wire_lifecycle(settings, store)
        self._wire_events(settings, store)
        self._mode_header = None if settings.auth == "strict" else (
            "x-tenant-access-auth", f"{settings.auth} (credentials are not fully checked)")
        self._opened = False
        self._known_paths: Memo[tuple[str, bytes], tuple[Route, dict[str, str]]] = Memo(KNOWN_PATHS)
        #: Called once the store is open; the server prints its "listening" line from here.
        self.on_started: Callable[[], None] | None = None

    def _wire_lifecycle(self, settings: Settings, store: Store) -> None:
        """The rotation scheduler, usage metrics, refusal summaries and audit retention."""
        from tenant_access.scheduler import Scheduler, SchedulerCollector

        self.scheduler = Scheduler(self.use_cases, self.clock, enabled=settings.scheduler)
        self.metrics.register(SchedulerCollector(self.scheduler))
        from tenant_access.usage import UsageCollector

        self.metrics.register(UsageCollector(self.usage))
        self.auth.on_failure = self.metrics.auth_failure
        from tenant_access.audit_trail import RetentionTask
        from tenant_access.refusals import RefusalSummaries

        self.refusals = RefusalSummaries(store)
        self.retention = RetentionTask(store, settings.retention)

    def _wire_events(self, settings: Settings, store: Store) -> None:
        """Event delivery (in a child process, in this one, or not here: ``--event-delivery``), its
        metrics, and the emulator's own sink as a destination."""
        from tenant_access.delivery_process import DeliveryChild, NoDelivery, policy_for

        policy = policy_for(settings)
        self.use_cases.event_policy = policy
        # A change writes its events only when its service has a subscription or a tail runs,
        # except in emulator mode, whose /_emulator/events lists every event (docs/events.md).
        store.all_events = settings.emulator_controls_enabled
        #: The in-process worker (``inline`` only: the tests' in-process server, emulator sink tests).
        self.deliverer: Deliverer | None = None
        self.delivery: Deliverer | DeliveryChild | NoDelivery
        if settings.event_delivery == "inline":
            from tenant_access.delivery import Deliverer

            self.delivery = self.deliverer = Deliverer(store, policy)
        elif settings.event_delivery == "process":
            self.delivery = DeliveryChild(settings)
        else:
            self.delivery = NoDelivery()
        if not isinstance(self.delivery, NoDelivery):  # "delivered" in the console: what delivers from here
            delivery = self.delivery
            self.use_cases.delivered = lambda key: delivery.counts.delivered.get(key, 0)
        from tenant_access.events_metrics import EventsCollector

        self.metrics.register(EventsCollector(self.delivery))

    async def startup(self) -> None:
        if not self._opened:
            # Beside the opening of the store (see Authenticator.warm): its imports run while this
            # thread waits for fsyncs and SQLite, which work without the interpreter lock. Joined
            # before the server answers anything: a first call must not pay for it either.
            warm_up = threading.Thread(target=self.auth.warm, name="tenant-access-warm-up", daemon=True)
            warm_up.start()
            await self.store.open()
            self._opened = True
            self.refusals.start()
            self.retention.start()
            self.usage.start()
            self.scheduler.start()
            self.delivery.start()
            await asyncio.to_thread(warm_up.join)
            if self.on_started is not None:
                self.on_started()

    async def shutdown(self) -> None:
        if self._opened:
            await self.scheduler.stop()
            await self.retention.stop()
            await self.usage.stop()  # the last counts, before the store closes
            await self.delivery.stop()
            await self.refusals.stop()  # the last counts, before the store closes
            await self.store.close()
            self._opened = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.error("start-up failed: %s", exc)
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        request_id = new_request_id()
        logs.request_id.set(request_id)
        request: Request | None = None
        operation = "-"
        who = "-"
        try:
            request = Request(scope, receive, request_id, self.settings.max_body_bytes)
            route, params, checked = self._resolve(request)
            operation = route.operation
            principal = ANONYMOUS
            if not route.public:
                try:
                    principal = await self.auth.authenticate(request, route, params)
                except TenantAccessError as exc:
                    await self._record_refusal(UNAUTHENTICATED, request, route, params, exc)
                    raise
                who = principal.sub
            version = self._check(route, request, params, checked=checked)
            actor = Actor(principal.sub, principal.role.value, principal.scope, principal.kind.value, request_id,
                          request.client)
            if not route.public:
                try:
                    self.auth.authorize(principal, route, request)
                except TenantAccessError as exc:
                    await self._record_refusal(actor, request, route, params, exc)
                    raise
            if self.emulator is not None:
                await self.emulator.faults.inject(route.operation)
            ctx = Context(request, params, version, self.use_cases, actor, route.operation, self.wire.success_status,
                          self.public_url)
            outcome: Outcome = await route.handler(ctx)
            self.metrics.handled(outcome.kind, outcome.value)
            response = self._render(outcome, ctx)
            if version is not None and version.is_fallback:
                response.header("x-served-api-version", version.served)
        except TenantAccessError as exc:
            self.metrics.failure(exc, exc.status)
            response = self.wire.error(exc, request, request_id)
        except UnicodeDecodeError:
            response = self.wire.error(NotFound("No operation is served at this path."), request, request_id)
        except Exception as exc:
            self.metrics.failure(exc, 500)
            log.exception("unhandled error in %s (request %s)", operation, request_id)
            response = self.wire.error(InternalError("An internal error occurred."), request, request_id)
        self.wire.common_headers(response, request, request_id)
        if self._mode_header is not None:
            response.header(*self._mode_header)
        method = scope.get("method", "-")
        await response.send(send, head=method == "HEAD")
        self._finished(method, operation, request, response.status, request_id, who, time.perf_counter() - started)

    def _finished(self, method: str, operation: str, request: Request | None, status: int, request_id: str, who: str,
                  elapsed: float) -> None:
        """Metrics and the one access event of every request. The event's fields are data (JSON
        logs keep them as fields); none of them can hold a key: no body, no query, no header."""
        self.metrics.observe(operation, status, elapsed)
        if access_log.isEnabledFor(logging.INFO):
            path = request.path[:300] if request else "-"
            logs.access(
                f"{method} {operation} {path} {status} {elapsed * 1000:.1f}ms {request_id} {who}",
                {"event": "request", "request_id": request_id, "method": method, "path": path,
                 "operation": operation, "status": status, "duration_ms": round(elapsed * 1000, 3),
                 "principal": who, "client": request.client if request else "-"},
            )

    def _render(self, outcome: Outcome, ctx: Context) -> Response:
        response: Response = outcome.value if outcome.kind == "raw" else self.wire.render(outcome, ctx)
        response.headers.extend(outcome.headers)
        return response

    async def _record_refusal(
        self, actor: Actor, request: Request, route: Route, params: dict[str, str], exc: TenantAccessError
    ) -> None:
        """Refused requests are audited too; a failure to record one must not turn a 401 into a 500.

        Refusals of nobody in particular (no or a bad credential, 401) and throttling (429) are
        summarised per address and minute (``refusals.py``), filed under the service the path names
        only if it exists; a known principal's 403 is a record of its own, under that service."""
        anonymous = actor is UNAUTHENTICATED
        if anonymous:
            actor = Actor("unauthenticated", "-", "-", "-", request.request_id, request.client)
        service = None
        if "serviceName" in params:
            service = ServiceRef(*(params[k][:100] for k in ("subscriptionId", "resourceGroupName", "serviceName")))
        if anonymous or exc.status == 429:
            await self.refusals.refused(actor, route.operation, request.path[:512], exc.status, service,
                                        detail=getattr(exc, "reason", None) or ("throttled" if exc.status == 429
                                                                                 else None))
            return
        try:
            await self.use_cases.record(event(actor, route.operation, request.path[:512], outcome="denied",
                                              status=exc.status, service=service))
        except Exception:
            log.warning("could not record a refused request (request %s)", request.request_id)

    def _resolve(self, request: Request) -> tuple[Route, dict[str, str], bool]:
        """The route and its path parameters, and whether they are already known to follow their
        rules. Routing and the path's rules depend on nothing but method and path, and clients call
        the same few paths again and again, so a path that passed both is remembered (see
        :meth:`_remember`)."""
        known = self._known_paths.get((request.method, request.raw_path))
        if known is not None:
            return known[0], dict(known[1]), True
        route, params = self.router.resolve(request.method, request.segments)
        return route, params, False

    def _remember(self, request: Request, route: Route, params: dict[str, str]) -> None:
        """Short paths only, and a bounded number of them."""
        if len(request.raw_path) <= MAX_KNOWN_PATH:
            self._known_paths.remember((request.method, request.raw_path), (route, dict(params)))

    def _check(self, route: Route, request: Request, params: dict[str, str], *,
               checked: bool = False) -> api_versions.ApiVersion | None:
        """The api-version and every path parameter, checked together so one answer names all
        that is wrong. Handlers receive parameters that already follow their rules; ``checked``
        parameters (of a path remembered by :meth:`_remember`) already did."""
        problems = Problems()
        version = None
        version_error: ValidationFailed | None = None
        if route.versioned:
            try:
                version = api_versions.resolve(request.query("api-version"), route.operation)
            except ValidationFailed as exc:
                version_error = exc
                problems.items.extend(exc.details)
        if not checked:
            rules.check_path_params(params, problems)
        if problems.items:
            if version_error is not None:
                version_error.details = problems.items
                raise version_error
            problems.raise_if_any()
        if not checked:
            self._remember(request, route, params)
        return version


def create_app(settings: Settings, store: Store | None = None) -> App:
    """An app with its own store; tests and the in-process fixture pass a store of their own."""
    if store is None:
        from tenant_access.runtime import open_store_for

        store = open_store_for(settings)
    return App(settings, store)

