"""``tenant-access audit prune|export``: on the store itself (SQLite file or PostgreSQL), no server."""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import os
from pathlib import Path

from click.testing import CliRunner, Result

from tenant_access.cli import main
from tenant_access.config import Settings
from tenant_access.domain.audit import Actor, event
from tenant_access.domain.models import ServiceRef
from tenant_access.runtime import open_store_for
from tests.backends import Backend

ACTOR = Actor("cli-tests", "owner", "/", "bearer", "cli-store", "10.0.0.1")
ANONYMOUS = Actor("unauthenticated", "-", "-", "-", "cli-store", "10.0.0.7")
REF = ServiceRef("sub", "rg", "svc")
NOW = _dt.datetime.now(_dt.UTC)


def _seed(settings: Settings) -> dict[str, str]:
    """Records of every kind, 200 days old and 1 day old; answers their ids by name."""
    made = {
        "old rotation": event(ACTOR, "access.regenerate_primary_key", "/t", service=REF, at=NOW - _dt.timedelta(200)),
        "old read": event(ACTOR, "access.list_secrets", "/t", service=REF, at=NOW - _dt.timedelta(200)),
        "old refusal": event(ANONYMOUS, "access.get", "/t", outcome="denied", status=401, service=None,
                             at=NOW - _dt.timedelta(200), count=12),
        "new read": event(ACTOR, "access.list_secrets", "/t", service=REF, at=NOW - _dt.timedelta(1)),
    }
    store = open_store_for(settings)

    async def write() -> None:
        await store.open()
        try:
            for record in made.values():
                await store.record(record)
        finally:
            await store.close()

    asyncio.run(write())
    return {name: record.id for name, record in made.items()}


def _cli(*args: str) -> Result:
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("TENANT_ACCESS_")}
    return CliRunner().invoke(main, list(args), env=env)


def test_prune_dry_run_then_export_and_prune_then_export(db_backend: Backend, tmp_path: Path) -> None:
    data = tmp_path / "data"
    database = db_backend.database(data)
    where = ["--data-dir", str(data), *database.args()]
    settings = Settings(data_dir=data, database_url=database.args()[1] if database.args() else None)
    ids = _seed(settings)

    dry = _cli("audit", "prune", "--dry-run", *where)
    assert dry.exit_code == 0, dry.output
    assert "would remove 1 reads record(s)" in dry.stdout and "would remove 1 refusals record(s)" in dry.stdout
    everything = _cli("audit", "export", "--since", "400d", *where)
    assert everything.exit_code == 0, everything.output
    assert {json.loads(line)["id"] for line in everything.stdout.splitlines()} == set(ids.values()), \
        "the dry run removed nothing"

    removed_file = tmp_path / "removed.jsonl"
    pruned = _cli("audit", "prune", "--export", str(removed_file), *where)
    assert pruned.exit_code == 0, pruned.output
    assert "removed 1 reads record(s)" in pruned.stdout and "removed 1 refusals record(s)" in pruned.stdout
    removed = [json.loads(line) for line in removed_file.read_text().splitlines()]
    assert {r["id"] for r in removed} == {ids["old read"], ids["old refusal"]}
    assert next(r for r in removed if r["kind"] == "refusals")["count"] == 12

    out = tmp_path / "left.jsonl"
    left = _cli("audit", "export", "--since", "2020-01-01", "--output", str(out), *where)
    assert left.exit_code == 0, left.output
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in kept] == [ids["old rotation"], ids["new read"]], "changes are never pruned by default"
    assert kept[0]["service_name"] == "svc" and kept[0]["kind"] == "changes"

    ranged = _cli("audit", "export", "--since", "300d", "--until", "100d", "--kind", "changes", *where)
    assert [json.loads(line)["id"] for line in ranged.stdout.splitlines()] == [ids["old rotation"]]

    finite = _cli("audit", "prune", "--audit-retention", "changes=30d", *where)
    assert finite.exit_code == 0, finite.output
    assert "removed 1 changes record(s)" in finite.stdout


def test_bad_retention_and_times_are_usage_errors(tmp_path: Path) -> None:
    bad = _cli("audit", "prune", "--audit-retention", "changes=soon", "--data-dir", str(tmp_path))
    assert bad.exit_code == 2 and "not a duration" in bad.output
    worse = _cli("audit", "export", "--since", "last tuesday", "--data-dir", str(tmp_path))
    assert worse.exit_code == 2 and "neither an ISO time" in worse.output


def test_the_audit_group_says_which_commands_need_a_server() -> None:
    text = _cli("audit", "--help").output
    assert "list" in text and "export" in text and "prune" in text
    assert "[server]" in text and "[store]" in text
