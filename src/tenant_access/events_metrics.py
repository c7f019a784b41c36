"""The event delivery's Prometheus series, per subscription.

The ``subscription`` label is opaque: :func:`~tenant_access.domain.event_subscriptions.metrics_label`,
12 hex digits of a SHA-256 of the subscription's lower-cased resource id. A resource id names the
Azure subscription, resource group and service, which a scrape (often readable by more people than
the API) should not list; the digest is stable across restarts and replicas, so a per-destination
dashboard keeps working, and an owner finds which subscription a label is in its ``metrics_label``
(API answers, the console).

Cardinality is bounded: at most :data:`MAX_LABELLED` subscriptions get a series of their own (the
first by label); any beyond are summed under ``subscription="other"``. Counters are this
process's since start; the gauges (pending, dead letters, oldest undelivered age) are the store's,
refreshed by the worker every few seconds, so every replica reports the same shared backlog.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Final, Protocol

from tenant_access.delivery import DeliveryCounts
from tenant_access.domain.event_subscriptions import metrics_label
from tenant_access.storage.outbox import SubscriptionStats

#: The most subscriptions with series of their own; the rest share ``OTHER``.
MAX_LABELLED: Final = 200
OTHER: Final = "other"


def labeller(keys: Iterable[str], limit: int = MAX_LABELLED) -> dict[str, str]:
    """Subscription key -> label: the first ``limit`` labels (in label order) are kept, the rest
    become :data:`OTHER`."""
    labels = {key: metrics_label(key) for key in set(keys)}
    kept = set(sorted(labels.values())[:limit])
    return {key: label if label in kept else OTHER for key, label in labels.items()}


if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric


class DeliveryFigures(Protocol):
    """What delivers here: the worker itself, or the server's view of its delivery process."""

    counts: DeliveryCounts
    stats: list[SubscriptionStats]

    @property
    def clock(self) -> Callable[[], _dt.datetime]: ...


class EventsCollector:
    """Registered at start, collected at a scrape (prometheus-client is loaded only then)."""

    def __init__(self, deliverer: DeliveryFigures) -> None:
        self.deliverer = deliverer

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily

        counts = self.deliverer.counts
        stats = list(self.deliverer.stats)
        tables = (("delivered", dict(counts.delivered)), ("retried", dict(counts.retried)),
                  ("dead_lettered", dict(counts.dead_lettered)))
        label = labeller([k for _, table in tables for k in table] + [s.subscription_key for s in stats])
        total = CounterMetricFamily("tenant_access_event_deliveries",
                                    "Event delivery attempts by outcome (delivered, retried, dead_lettered), this "
                                    "process", labels=["subscription", "outcome"])
        for outcome, table in tables:
            summed: dict[str, int] = {}
            for key, value in table.items():
                summed[label[key]] = summed.get(label[key], 0) + value
            for name, value in sorted(summed.items()):
                total.add_metric([name, outcome], value)
        yield total
        pending = GaugeMetricFamily("tenant_access_event_pending", "Deliveries waiting (all replicas)",
                                    labels=["subscription"])
        dead = GaugeMetricFamily("tenant_access_event_dead_letters", "Dead-lettered deliveries (all replicas)",
                                 labels=["subscription"])
        oldest = GaugeMetricFamily("tenant_access_event_oldest_undelivered_seconds",
                                   "Age of the oldest delivery still waiting (0: none)", labels=["subscription"])
        now = self.deliverer.clock()
        gauges: dict[str, tuple[int, int, float]] = {}
        for stat in stats:
            age = (now - stat.oldest_pending).total_seconds() if stat.oldest_pending is not None else 0.0
            was = gauges.get(label[stat.subscription_key], (0, 0, 0.0))
            gauges[label[stat.subscription_key]] = (was[0] + stat.pending, was[1] + stat.dead,
                                                    max(was[2], age, 0.0))
        for name, (waiting, dead_count, age) in sorted(gauges.items()):
            pending.add_metric([name], waiting)
            dead.add_metric([name], dead_count)
            oldest.add_metric([name], age)
        yield pending
        yield dead
        yield oldest
