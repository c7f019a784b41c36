"""The rotation scheduler inside the server: runs due policy actions (issue 14).

Every :data:`PASS_SECONDS` (and once at start, which is the catch-up after downtime) it looks at
every rotation policy and lets :meth:`~tenant_access.service.TenantAccess.run_policy` act on those
that are due. Any number of replicas may run it at once: a rotation due at T happens once, because
it is an ordinary audited change carrying an idempotency key derived from T, which the store
checks under the configuration's row lock (PostgreSQL ``FOR UPDATE``, SQLite's one writer with
``BEGIN IMMEDIATE``) in the rotation's own transaction. ``--scheduler off`` leaves a replica out.

Time is the server's :class:`~tenant_access.clock.Clock`, so moving the emulator's clock makes
policies due; ``/_emulator/clock/advance`` runs a pass before it answers.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tenant_access.clock import Clock, iso
from tenant_access.periodic import Periodic

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from tenant_access.service import TenantAccess

log = logging.getLogger("tenant_access.scheduler")

PASS_SECONDS = 1.0


@dataclass
class SchedulerState:
    """What ``/readyz``, ``/metrics`` and the CLI show."""

    enabled: bool
    last_pass_at: _dt.datetime | None = None
    policies: int = 0
    overdue: int = 0
    blocked: int = 0
    rotations: int = 0
    failures: int = 0
    last_outcomes: dict[str, str] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "last_pass_at": iso(self.last_pass_at) if self.last_pass_at else None,
                "policies": self.policies, "overdue": self.overdue, "blocked": self.blocked,
                "rotations": self.rotations}


class Scheduler:
    def __init__(self, use_cases: TenantAccess, clock: Clock, *, enabled: bool = True,
                 every: float = PASS_SECONDS) -> None:
        self.use_cases = use_cases
        self.clock = clock
        self.state = SchedulerState(enabled)
        self._periodic = Periodic("rotation scheduler", self.run_once, every, first=0.0)
        self._lock = asyncio.Lock()

    def start(self) -> None:
        if self.state.enabled:
            self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    async def run_once(self) -> list[str]:
        """One pass over every policy (one pass at a time in a process); answers what was done."""
        async with self._lock:
            now = self.clock.now()
            done: list[str] = []
            overdue = blocked = 0
            records = await self.use_cases.store.list_rotation_policies()
            for record in records:
                target = f"{record.service.resource_id}/tenant/{record.access_name.value}"
                try:
                    outcome = await self.use_cases.run_policy(record, now)
                except Exception as exc:
                    self.state.failures += 1
                    log.warning("scheduled rotation of %s failed: %s", target, type(exc).__name__)
                    overdue += 1
                    continue
                if outcome is None:
                    continue
                self.state.last_outcomes[target] = outcome
                done.append(f"{target}: {outcome}")
                if outcome.startswith("rotated the"):
                    self.state.rotations += 1
                    log.info("policy rotation: %s: %s", target, outcome)
                elif outcome.startswith("rotation blocked"):
                    blocked += 1
                    overdue += 1
            self.state.last_pass_at = now
            self.state.policies = len(records)
            self.state.overdue = overdue
            self.state.blocked = blocked
            return done


class SchedulerCollector:
    """``/metrics``: the overdue and blocked policies this replica saw in its last pass, and its
    policy rotations; no per-configuration labels."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        state = self.scheduler.state
        metrics: list[Metric] = [
            GaugeMetricFamily("tenant_access_rotation_policies", "Rotation policies seen by the last scheduler pass.",
                              value=state.policies),
            GaugeMetricFamily("tenant_access_rotation_policies_overdue", "Policies whose rotation is due but could "
                              "not be done in the last pass (blocked or failed).", value=state.overdue),
            GaugeMetricFamily("tenant_access_rotation_policies_blocked", "Policies whose rotation is blocked: no key "
                              "is unused (see their status).", value=state.blocked),
            CounterMetricFamily("tenant_access_policy_rotations", "Keys regenerated by rotation policies in this "
                                "process.", value=state.rotations),
            GaugeMetricFamily("tenant_access_scheduler_enabled", "1 when this replica runs the rotation scheduler.",
                              value=int(state.enabled)),
        ]
        yield from metrics
