"""A job the server runs in the background at an interval (the refusal summaries' flush, audit
retention), started with the app and stopped before the store closes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("tenant_access")


class Periodic:
    """Runs ``job`` every ``every`` seconds, the first time after ``first`` (default: ``every``).
    A run that fails is logged by name, never its message (it could hold a database URL); the next
    one goes ahead as planned."""

    def __init__(self, name: str, job: Callable[[], Awaitable[object]], every: float,
                 first: float | None = None) -> None:
        self.name = name
        self.job = job
        self.every = every
        self.first = every if first is None else first
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"tenant-access-{self.name}")

    async def stop(self) -> None:
        """Cancel it (a run in progress too) and wait until it has stopped."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        await asyncio.sleep(self.first)
        while True:
            try:
                await self.job()
            except Exception as exc:
                log.warning("%s failed: %s", self.name, type(exc).__name__)
            await asyncio.sleep(self.every)
