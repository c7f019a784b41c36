"""Prometheus metrics of one server process.

Every label has a small, fixed set of values known in advance: operation names from the route
table, HTTP status codes, the two configuration names, the two key slots, and reason classes of
our own making. Nothing a caller controls becomes a label (no paths, service names, principal ids
or client addresses), so a scanner cannot grow the series count without bound and no label can
carry a secret. ``docs/operations.md`` lists every metric.

The request path pays for one dictionary lookup, three additions and a ``bisect`` (well under a
microsecond): the per-request counter and histogram are plain numbers in lists, made cumulative
only when scraped, instead of prometheus-client's locked values. That is safe because every request
is counted on the event loop's one thread; the rare events (rotations, refusals, database errors)
are counted under a lock.

prometheus-client itself (and the registry) is loaded at the first scrape, not at start: its
import pulls in ``http.server`` and ``email``, a noticeable share of the time to a first answer.
"""

from __future__ import annotations

import threading
import types
from bisect import bisect_left
from collections.abc import Iterator
from itertools import accumulate
from typing import TYPE_CHECKING, Any, Protocol

from tenant_access import __version__

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric


class Collector(Protocol):
    """What a registry asks of a collector (prometheus-client's own base class is not needed)."""

    def collect(self) -> Iterator[Metric]: ...

#: The classic text format, which every scraper reads (Prometheus 2 and 3, VictoriaMetrics, agents); our
#: names need none of the newer format's escaping, so the body is the same either way.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Seconds. The server answers most requests in well under a millisecond, so the low end is fine-grained;
#: the top buckets catch a store that stalls (SQLite busy, PostgreSQL failover).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: The operation label of requests no route matched (404/405 before routing, or a malformed path).
UNMATCHED = "unmatched"
CONFIGURATIONS = ("access", "gitAccess")
SLOTS = ("primary", "secondary")
#: Database error kinds: ``unavailable`` answered 503 (busy, locked, disk full: retryable);
#: ``failed`` answered 500 (anything else the store raised).
DB_ERROR_KINDS = ("unavailable", "failed")
AUTH_SCHEMES = ("bearer", "sas", "none", "other")

#: (substring of an InvalidCredential reason, reason class), first match wins. The reasons are our own
#: constant strings (``security/tokens.py``, ``security/sas.py``, ``security/headers.py``,
#: ``http/auth.py``); matching them onto classes keeps the label set closed even if a new reason appears.
_REASONS: tuple[tuple[str, str], ...] = (
    ("no credential", "missing"),
    ("without a credential", "missing"),
    ("unsupported authorization scheme", "unsupported_scheme"),
    ("too long", "oversized"),
    ("expired", "expired"),
    ("not yet valid", "not_yet_valid"),
    ("issued in the future", "not_yet_valid"),
    # A SAS is checked against the keys of the service its path names: whether that service exists,
    # has access enabled, has that principal id, or the signature is wrong is one class, so the
    # labels tell a loopback scraper no more than the 401 told the caller (malformed and expired
    # SAS are checked before anything is looked up, and keep their classes).
    ("sas: signature matches no", "rejected"),
    ("sas: no enabled access configuration", "rejected"),
    ("sas: uid is not the configuration", "rejected"),
    ("sas: this route is not a service", "rejected"),
    ("signature matches no", "bad_signature"),
    ("rejected by jws", "bad_signature"),
    ("algorithm not accepted", "unknown_key"),
    (" key with that kid", "unknown_key"),
    ("audience not accepted", "audience"),
    ("issuer not accepted", "issuer"),
    ("no role", "claims"),
    ("no scope", "claims"),
    ("no sub", "claims"),
    ("no exp", "claims"),
    ("role, scope or sub", "claims"),
    ("is not a number", "claims"),
    ("is not a non-empty string", "claims"),
)
AUTH_REASONS = ("malformed", "throttled", *dict.fromkeys(reason for _, reason in _REASONS))


def auth_reason(reason: str) -> str:
    """The bounded class of a free-text failure reason; ``malformed`` for anything unlisted (every
    other reason in the code base says the credential could not be parsed)."""
    lowered = reason.lower()
    for needle, name in _REASONS:
        if needle in lowered:
            return name
    if lowered.startswith("bearer: no ") and lowered.endswith(" key"):
        return "unknown_key"
    return "malformed"


def auth_scheme(header: str | None) -> str:
    """The scheme of an ``Authorization`` header, as one of :data:`AUTH_SCHEMES`."""
    if header is None or not header.strip():
        return "none"
    name = header.strip().split(" ", 1)[0].lower()
    if name == "bearer":
        return "bearer"
    if name == "sharedaccesssignature":
        return "sas"
    return "other"


class RequestCollector:
    """``tenant_access_requests_total`` and ``tenant_access_request_duration_seconds``, kept as one
    row of plain numbers per (operation, status): count, sum, then one slot per bucket (not yet
    cumulative) and a last one for observations above every bound."""

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.rows: dict[tuple[str, int], list[float]] = {}
        self._le = [repr(float(b)) for b in bounds]  # "0.0005", "1.0": what prometheus-client writes

    def observe(self, operation: str, status: int, seconds: float) -> None:
        row = self.rows.get((operation, status))
        if row is None:
            row = self.rows[(operation, status)] = [0.0] * (len(self.bounds) + 3)
        row[0] += 1
        row[1] += seconds
        row[2 + bisect_left(self.bounds, seconds)] += 1  # the first bucket whose bound is >= seconds

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily

        labels = ["operation", "status"]
        requests = CounterMetricFamily("tenant_access_requests", "HTTP requests answered, by operation and status "
                                       "code.", labels=labels)
        latency = HistogramMetricFamily("tenant_access_request_duration_seconds", "Time from receiving a request to "
                                        "having sent its answer, by operation and status.", labels=labels)
        for (operation, status), row in sorted(self.rows.items()):
            names = [UNMATCHED if operation == "-" else operation, str(status)]
            requests.add_metric(names, row[0])
            counts = list(accumulate(row[2:]))
            latency.add_metric(names, [*zip(self._le, counts[:-1], strict=True), ("+Inf", counts[-1])],
                               sum_value=row[1])
        yield requests
        yield latency


class _Tally:
    """Counts by label values, in the order first seen (as prometheus-client's counters list them)."""

    def __init__(self, name: str, documentation: str, labels: tuple[str, ...]) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = labels
        self.counts: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def touch(self, *values: str) -> None:
        """A series that exists at zero, so rate() and alerts see it before the first event."""
        with self._lock:
            self.counts.setdefault(values, 0.0)

    def inc(self, *values: str) -> None:
        with self._lock:
            self.counts[values] = self.counts.get(values, 0.0) + 1

    def family(self) -> Metric:
        from prometheus_client.metrics_core import CounterMetricFamily

        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        with self._lock:
            rows = list(self.counts.items())
        for values, count in rows:
            family.add_metric(values, count)
        return family


class _RareEvents:
    """Rotations, refused credentials, database errors and the build's labels."""

    def __init__(self, api_style: str, auth: str) -> None:
        self.build = (__version__, api_style, auth)
        self.rotations = _Tally("tenant_access_key_rotations",
                                "Keys regenerated, by access configuration (access, gitAccess) and slot.",
                                ("configuration", "slot"))
        self.auth_failures = _Tally("tenant_access_authentication_failures",
                                    "Refused credentials (401) and throttled addresses (429), by the scheme "
                                    "presented and a reason class.", ("scheme", "reason"))
        self.db_errors = _Tally("tenant_access_database_errors",
                                "Requests that failed in the store: unavailable (503, retryable) or failed (500).",
                                ("kind",))

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.metrics_core import GaugeMetricFamily

        yield self.rotations.family()
        yield self.auth_failures.family()
        yield self.db_errors.family()
        info = GaugeMetricFamily("tenant_access_build_info", "Always 1; the labels say what is running.",
                                 labels=("version", "api_style", "auth"))
        info.add_metric(self.build, 1)
        yield info


class Metrics:
    """The instruments of one :class:`~tenant_access.http.app.App`, in a registry of its own so that
    several apps in one process (tests) never share or clash. The registry is made at the first
    scrape (:meth:`exposition`), with every collector :meth:`register` was given by then."""

    def __init__(self, *, api_style: str = "seed", auth: str = "strict") -> None:
        self.requests = RequestCollector()
        self._rare = _RareEvents(api_style, auth)
        self._collectors: list[Collector] = []
        self._registry: CollectorRegistry | None = None
        # Series that should exist at zero from the start, so rate() and alerts see them before the first event.
        for configuration in CONFIGURATIONS:
            for slot in SLOTS:
                self._rare.rotations.touch(configuration, slot)
        for kind in DB_ERROR_KINDS:
            self._rare.db_errors.touch(kind)
        # The hot path, bound once: a method lookup per request is measurable at this scale.
        self.observe = self.requests.observe

    def register(self, collector: Collector) -> None:
        """Another part's series (the scheduler's, key usage, event delivery), scraped after ours."""
        if self._registry is not None:
            self._registry.register(collector)
        else:
            self._collectors.append(collector)

    @property
    def registry(self) -> CollectorRegistry:
        if self._registry is None:
            from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector

            registry = CollectorRegistry(auto_describe=True)
            registry.register(self.requests)
            registry.register(self._rare)
            # CPU, memory, open files and the Python version, as the default registry would have them.
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            for collector in self._collectors:
                registry.register(collector)
            self._collectors.clear()
            self._registry = registry
        return self._registry

    def handled(self, kind: str, value: Any) -> None:
        """A handler's result (an :class:`~tenant_access.http.context.Outcome`'s kind and value):
        a ``rotation`` is a key regenerated, whatever the wire format makes of it."""
        if kind == "rotation":
            self.rotation(value.config.name.value, value.version.slot.value)

    def rotation(self, configuration: str, slot: str) -> None:
        if configuration in CONFIGURATIONS and slot in SLOTS:
            self._rare.rotations.inc(configuration, slot)

    def auth_failure(self, header: str | None, reason: str) -> None:
        """``reason`` is free text (an InvalidCredential's) or ``throttled``; only its class is kept."""
        name = "throttled" if reason == "throttled" else auth_reason(reason)
        self._rare.auth_failures.inc(auth_scheme(header), name)

    def failure(self, exc: BaseException, status: int) -> None:
        """Count a 5xx answer as a database error when the store raised it (any adapter: the test is
        where the exception passed through, not its class, so a new backend needs no change here)."""
        if status >= 500 and _from_storage(exc):
            self._rare.db_errors.inc("unavailable" if status == 503 else "failed")

    def exposition(self) -> bytes:
        from prometheus_client.exposition import generate_latest

        return generate_latest(self.registry)


def _from_storage(exc: BaseException) -> bool:
    """Whether any frame the exception (or one it was raised from) passed through is the store's."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 8:
        seen.add(id(current))
        tb: types.TracebackType | None = current.__traceback__
        while tb is not None:
            if str(tb.tb_frame.f_globals.get("__name__", "")).startswith("tenant_access.storage"):
                return True
            tb = tb.tb_next
        current = current.__cause__ or current.__context__
    return False
