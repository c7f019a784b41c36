"""The events' ``/metrics`` series: an opaque, stable ``subscription`` label, and a bounded number
of them however many subscriptions the process has seen."""

from __future__ import annotations

import datetime as _dt
import hashlib
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from tenant_access.config import Settings
from tenant_access.delivery import Deliverer
from tenant_access.domain.event_subscriptions import metrics_label
from tenant_access.events_metrics import MAX_LABELLED, OTHER, EventsCollector, labeller
from tenant_access.runtime import open_store_for
from tenant_access.storage.outbox import SubscriptionStats

NOW = _dt.datetime(2026, 12, 4, 12, 0, tzinfo=_dt.UTC)
SERVICE = "/subscriptions/5f1c0d2e-0000-4000-8000-000000000001/resourceGroups/payments-prod/providers/" \
          "Microsoft.ApiManagement/service/contoso-apim"


def _key(n: int) -> str:
    return f"{SERVICE}/eventSubscriptions/hook-{n}".lower()


def test_the_label_is_a_short_digest_of_the_key_whatever_its_spelling() -> None:
    label = metrics_label(f"{SERVICE}/eventSubscriptions/Hook-1")
    assert label == hashlib.sha256(_key(1).encode()).hexdigest()[:12]
    assert label == metrics_label(_key(1))
    assert label != metrics_label(_key(2))


def test_labels_beyond_the_bound_are_summed_under_other() -> None:
    keys = [_key(n) for n in range(MAX_LABELLED + 50)]
    labels = labeller(keys)
    assert len(set(labels.values())) == MAX_LABELLED + 1
    assert sum(1 for v in labels.values() if v == OTHER) == 50
    assert labels == labeller(reversed(keys))  # which ones keep a series does not depend on order


def test_the_scrape_names_no_resource_and_keeps_the_totals(tmp_path: Path) -> None:
    store = open_store_for(Settings(data_dir=tmp_path))  # not opened: the collector reads no store
    deliverer = Deliverer(store, clock=lambda: NOW)
    count = MAX_LABELLED + 30
    deliverer.counts.delivered = {_key(n): 2 for n in range(count)}
    deliverer.counts.dead_lettered = {_key(0): 1}
    deliverer.stats = [SubscriptionStats(_key(n), 3, 1, NOW - _dt.timedelta(seconds=n)) for n in range(count)]
    registry = CollectorRegistry()
    registry.register(EventsCollector(deliverer))
    text = generate_latest(registry).decode()
    assert "contoso" not in text and "payments" not in text and "5f1c0d2e" not in text
    delivered = [line for line in text.splitlines() if line.startswith("tenant_access_event_deliveries_total{")
                 and 'outcome="delivered"' in line]
    assert len(delivered) == MAX_LABELLED + 1
    assert sum(float(line.rsplit(" ", 1)[1]) for line in delivered) == 2 * count
    assert f'tenant_access_event_deliveries_total{{outcome="dead_lettered",subscription="{metrics_label(_key(0))}"}}' \
        in text or 'outcome="dead_lettered",subscription="other"' in text
    pending = [line for line in text.splitlines() if line.startswith("tenant_access_event_pending{")]
    assert len(pending) == MAX_LABELLED + 1
    assert sum(float(line.rsplit(" ", 1)[1]) for line in pending) == 3 * count
    oldest = [line for line in text.splitlines() if line.startswith("tenant_access_event_oldest_undelivered_seconds{")]
    assert max(float(line.rsplit(" ", 1)[1]) for line in oldest) == count - 1
