"""A scheduled rotation and its policy's outcome commit in one transaction, in both stores: when the
outcome cannot be written, the rotation is undone with it (so no crash between the two can leave
the policy's status saying anything but what happened), and when it can, both are there together."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenant_access.domain.audit import Actor
from tenant_access.domain.errors import TenantAccessError
from tenant_access.domain.models import AccessName, ServiceRef, ServiceSpec
from tenant_access.security.encryption import Keyring, MasterKey
from tenant_access.service import TenantAccess
from tenant_access.storage.base import Store, open_store
from tests.pg import Cluster

ACTOR = Actor("tests", "owner", "/", "system", "outcome-tests", "local")
REF = ServiceRef("sub", "rg", "scheduled")
POLICY = {"lifetimeActions": [{"trigger": {"timeAfterCreate": "P30D"}, "action": {"type": "Rotate"}}],
          "gracePeriod": "PT1H"}


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Cluster | None]]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'outcome.db'}", None
        return
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    url = cluster.create_database("outcome")
    yield url, cluster
    cluster.drop_database(url)


def _execute(url: str, cluster: Cluster | None, statements: list[str]) -> None:
    """Straight into the database, from another connection (a real fault, not a double)."""
    if cluster is None:
        db = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            for sql in statements:
                db.execute(sql)
        finally:
            db.close()
        return
    with cluster.connect(url) as conn:
        for sql in statements:
            conn.execute(sql)


def _refuse_outcomes(url: str, cluster: Cluster | None) -> None:
    if cluster is None:
        _execute(url, cluster, ["CREATE TRIGGER refuse_outcome BEFORE UPDATE ON rotation_policies "
                                "BEGIN SELECT RAISE(ABORT, 'no'); END"])
    else:
        _execute(url, cluster, ["CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                                "$$ BEGIN RAISE EXCEPTION 'no'; END $$",
                                "CREATE TRIGGER refuse_outcome BEFORE UPDATE ON rotation_policies "
                                "FOR EACH ROW EXECUTE FUNCTION refuse()"])


def _allow_outcomes(url: str, cluster: Cluster | None) -> None:
    if cluster is None:
        _execute(url, cluster, ["DROP TRIGGER refuse_outcome"])
    else:
        _execute(url, cluster, ["DROP TRIGGER refuse_outcome ON rotation_policies", "DROP FUNCTION refuse()"])


def test_a_scheduled_rotation_commits_with_its_outcome_or_not_at_all(
        database: tuple[str, Cluster | None], tmp_path: Path) -> None:
    url, cluster = database
    cipher = Keyring(MasterKey(secrets.token_bytes(32)))

    async def run() -> None:
        store: Store = open_store(url, tmp_path, cipher)
        await store.open()
        try:
            use_cases = TenantAccess(store)
            await use_cases.put_service(ACTOR, REF, ServiceSpec("westeurope", "Developer", 1, "o@e.com", "O"))
            await use_cases.put_rotation_policy(ACTOR, REF, AccessName.ACCESS, POLICY)
            before = await store.get_access(REF, AccessName.ACCESS)
            assert before is not None
            due = max(before.primary_created_at, before.secondary_created_at) + dt.timedelta(days=31)
            (found,) = await store.list_rotation_policies()

            _refuse_outcomes(url, cluster)  # the outcome's write fails inside the database
            with pytest.raises(TenantAccessError):
                await use_cases.run_policy(found, due)
            unchanged = await store.get_access(REF, AccessName.ACCESS)
            assert unchanged is not None
            assert (unchanged.primary_version_id, unchanged.secondary_version_id) == (
                before.primary_version_id, before.secondary_version_id), "rotated without its outcome"
            stale = await store.get_rotation_policy(REF, AccessName.ACCESS)
            assert stale is not None and stale.last_outcome is None

            _allow_outcomes(url, cluster)
            outcome = await use_cases.run_policy(found, due)
            assert outcome is not None and outcome.startswith("rotated the ")
            after = await store.get_access(REF, AccessName.ACCESS)
            recorded = await store.get_rotation_policy(REF, AccessName.ACCESS)
            assert after is not None and recorded is not None
            assert (after.primary_version_id, after.secondary_version_id) != (
                before.primary_version_id, before.secondary_version_id)
            assert recorded.last_outcome == outcome and recorded.last_run_at == due
            assert recorded.blocked_since is None
        finally:
            await store.close()

    asyncio.run(run())
