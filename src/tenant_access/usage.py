"""Key usage: when each key version last authenticated a request, and how often (issue 14).

Every accepted shared access signature counts one use of the key version that signed it. Counting
happens in memory, on the request path, at the cost of a dictionary update; a background task
writes the counts every :data:`FLUSH_SECONDS` in one transaction that is committed but not flushed
to disk (no fsync per request, nor per flush). So a crashed process loses at most the uses of its
last flush interval, and a power loss may lose a few more; nothing else is ever lost, since a
failed flush keeps its counts for the next one.

Replicas merge without coordination: each adds its own counts, and the stored last-used time only
moves forward (see :mod:`tenant_access.storage.usage`). What a replica has counted but not yet
written is added to what it reads, so its own answers are never a flush behind.

Times come from the server's :class:`~tenant_access.clock.Clock` (the moved clock in emulator
mode) and are kept to the minute, which is what IAM's access-key-last-used reports too.
"""

from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tenant_access.periodic import Periodic
from tenant_access.storage.base import Store
from tenant_access.storage.usage import Usage, UsageRow, minute

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

log = logging.getLogger("tenant_access.usage")

#: How often the counts are written; the most a crash can lose.
FLUSH_SECONDS = 1.0


@dataclass(slots=True)
class _Tally:
    uses: int
    last: _dt.datetime


class UsageRecorder:
    """Counts uses per key version in memory and writes them in batches (event loop only)."""

    def __init__(self, store: Store, *, every: float = FLUSH_SECONDS) -> None:
        self._store = store
        #: Uses not yet written, by version id; swapped out whole by each flush.
        self._pending: dict[str, _Tally] = {}
        self._flusher = Periodic("key usage flush", self.flush, every)
        self.every = every
        #: For /metrics: every use counted, and flushes that failed (their counts were kept).
        self.uses_total = 0
        self.flush_failures = 0
        self.last_flush_rows = 0

    def record(self, version_id: str, now: _dt.datetime) -> None:
        """One use; the hot path of every request signed with a key."""
        self.uses_total += 1
        tally = self._pending.get(version_id)
        if tally is None:
            self._pending[version_id] = _Tally(1, now)
            return
        tally.uses += 1
        tally.last = max(tally.last, now)

    @property
    def pending_versions(self) -> int:
        return len(self._pending)

    def pending(self, version_id: str) -> Usage | None:
        tally = self._pending.get(version_id)
        return None if tally is None else Usage(tally.uses, minute(tally.last))

    async def flush(self) -> None:
        taken, self._pending = self._pending, {}
        if not taken:
            return
        rows = [UsageRow(vid, tally.uses, tally.last) for vid, tally in taken.items()]
        try:
            await self._store.add_key_usage(rows)
            self.last_flush_rows = len(rows)
        except Exception:
            self.flush_failures += 1
            log.warning("could not write the usage of %d key versions; will retry", len(rows))
            for row in rows:
                self._merge(row)

    def _merge(self, row: UsageRow) -> None:
        tally = self._pending.get(row.version_id)
        if tally is None:
            self._pending[row.version_id] = _Tally(row.uses, row.last_used)
        else:
            tally.uses += row.uses
            tally.last = max(tally.last, row.last_used)

    async def usage(self, version_ids: Sequence[str]) -> dict[str, Usage]:
        """Stored figures (every replica's flushes) plus this replica's unwritten counts."""
        stored = await self._store.get_key_usage(version_ids)
        merged: dict[str, Usage] = {}
        for vid in version_ids:
            have, mine = stored.get(vid), self.pending(vid)
            if have is None and mine is None:
                continue
            if have is not None and mine is not None:
                merged[vid] = Usage(have.uses + mine.uses, max(have.last_used, mine.last_used))
            else:
                merged[vid] = have if have is not None else mine  # type: ignore[assignment]
        return merged

    def forget(self) -> None:
        """Drop unwritten counts (after an emulator reset deleted the keys they are about)."""
        self._pending = {}

    def start(self) -> None:
        self._flusher.start()

    async def stop(self) -> None:
        """Stop the periodic flush and write the last counts (before the store closes)."""
        await self._flusher.stop()
        await self.flush()


class UsageCollector:
    """Key usage in ``/metrics``, without per-key labels (a label per key version would grow
    without bound with every rotation): totals of this process only."""

    def __init__(self, recorder: UsageRecorder) -> None:
        self.recorder = recorder

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        r = self.recorder
        yield CounterMetricFamily("tenant_access_key_uses", "Requests authenticated by a key (accepted shared "
                                  "access signatures) counted by this process.", value=r.uses_total)
        yield GaugeMetricFamily("tenant_access_key_usage_unwritten_versions", "Key versions whose latest uses "
                                "this process has not written yet (at most one flush interval old).",
                                value=r.pending_versions)
        yield CounterMetricFamily("tenant_access_key_usage_flush_failures", "Key usage flushes that failed "
                                  "(their counts are kept for the next).", value=r.flush_failures)
