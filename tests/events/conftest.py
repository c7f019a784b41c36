from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from pathlib import Path

import pytest

from tenant_access.config import Settings
from tenant_access.domain.audit import Actor
from tenant_access.runtime import open_store_for
from tenant_access.storage.base import Store
from tests.backends import Backend, PostgresDatabase


class Clock:
    """A clock a test moves by hand."""

    def __init__(self) -> None:
        self.now = _dt.datetime(2026, 12, 4, 12, 0, tzinfo=_dt.UTC)

    def __call__(self) -> _dt.datetime:
        return self.now

    def move(self, seconds: float) -> None:
        self.now += _dt.timedelta(seconds=seconds)


ACTOR = Actor("tester", "owner", "/", "bearer", "req-1", "127.0.0.1")


@pytest.fixture
def open_store(db_backend: Backend, tmp_path: Path) -> Callable[[], Store]:
    """Opens (not yet opened) stores on one new database of this backend."""
    database = db_backend.database(tmp_path)

    def make() -> Store:
        url = database.url if isinstance(database, PostgresDatabase) else None
        return open_store_for(Settings(data_dir=tmp_path, database_url=url))

    return make
