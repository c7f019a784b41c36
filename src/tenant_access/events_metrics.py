"""The event delivery's Prometheus series, per subscription.

The ``subscription`` label is a subscription's resource id: a value an owner chose, bounded by the
number of subscriptions an owner made (never a path or name an anonymous caller can vary), which
is what a per-destination dashboard needs. Counters are this process's since start; the gauges
(pending, dead letters, oldest undelivered age) are the store's, refreshed by the worker every few
seconds, so every replica reports the same shared backlog.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Iterator
from typing import Protocol

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tenant_access.delivery import DeliveryCounts
from tenant_access.storage.outbox import SubscriptionStats


class DeliveryFigures(Protocol):
    """What delivers here: the worker itself, or the server's view of its delivery process."""

    counts: DeliveryCounts
    stats: list[SubscriptionStats]

    @property
    def clock(self) -> Callable[[], _dt.datetime]: ...


class EventsCollector(Collector):
    def __init__(self, deliverer: DeliveryFigures) -> None:
        self.deliverer = deliverer

    def collect(self) -> Iterator[Metric]:
        counts = self.deliverer.counts
        total = CounterMetricFamily("tenant_access_event_deliveries",
                                    "Event delivery attempts by outcome (delivered, retried, dead_lettered), this "
                                    "process", labels=["subscription", "outcome"])
        for outcome, table in (("delivered", counts.delivered), ("retried", counts.retried),
                               ("dead_lettered", counts.dead_lettered)):
            for key, value in sorted(table.items()):
                total.add_metric([key, outcome], value)
        yield total
        pending = GaugeMetricFamily("tenant_access_event_pending", "Deliveries waiting (all replicas)",
                                    labels=["subscription"])
        dead = GaugeMetricFamily("tenant_access_event_dead_letters", "Dead-lettered deliveries (all replicas)",
                                 labels=["subscription"])
        oldest = GaugeMetricFamily("tenant_access_event_oldest_undelivered_seconds",
                                   "Age of the oldest delivery still waiting (0: none)", labels=["subscription"])
        now = self.deliverer.clock()
        for stat in self.deliverer.stats:
            pending.add_metric([stat.subscription_key], stat.pending)
            dead.add_metric([stat.subscription_key], stat.dead)
            age = (now - stat.oldest_pending).total_seconds() if stat.oldest_pending is not None else 0.0
            oldest.add_metric([stat.subscription_key], max(age, 0.0))
        yield pending
        yield dead
        yield oldest
