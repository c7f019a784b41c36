"""``principals ...`` and ``signing-key rotate`` leave audit records (by ``cli:<os user>``) that
``audit export`` shows: the real commands, as processes, on a real SQLite file and PostgreSQL."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tenant_access.security.tokens import load_or_create_signing_key
from tests.backends import Backend


def _cli(where: list[str], *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANT_ACCESS_")}
    done = subprocess.run([sys.executable, "-m", "tenant_access", *args, *where], capture_output=True, text=True,
                          env=env, timeout=60, check=False)
    assert (done.returncode == 0) == ok, done.stdout + done.stderr
    return done


def _export(where: list[str]) -> list[dict[str, Any]]:
    lines = _cli(where, "audit", "export", "--since", "1d").stdout.splitlines()
    return [json.loads(line) for line in lines]


def test_every_principal_and_signing_key_change_is_in_the_export(db_backend: Backend, tmp_path: Path) -> None:
    data = tmp_path / "data"
    database = db_backend.database(data)
    where = ["--data-dir", str(data), *database.args()]
    created = _cli(where, "principals", "create", "--role", "key-operator", "--scope", "/subscriptions/s1").stdout
    fields = dict(line.split(":", 1) for line in created.splitlines() if ":" in line)
    client_id, first_secret = fields["client id"].strip(), fields["client secret"].strip()
    _cli(where, "principals", "list")
    _cli(where, "principals", "show", client_id)
    assert _export(where)[-1]["operation"] == "principals.create"  # reads leave no record
    _cli(where, "principals", "disable", client_id)
    _cli(where, "principals", "enable", client_id)
    rotated = _cli(where, "principals", "rotate-secret", client_id).stdout
    new_secret = dict(line.split(":", 1) for line in rotated.splitlines() if ":" in line)["client secret"].strip()
    load_or_create_signing_key(data)  # what a server's first start makes
    key = _cli(where, "signing-key", "rotate").stdout
    _cli(where, "principals", "delete", client_id)
    _cli(where, "principals", "disable", client_id, ok=False)  # no such principal: no change, no record

    records = _export(where)
    target = f"servicePrincipals/{client_id}"
    assert [(r["operation"], r["target"]) for r in records] == [
        ("principals.create", target), ("principals.disable", target), ("principals.enable", target),
        ("principals.rotate_secret", target), ("signing_key.rotate", "signingKey"), ("principals.delete", target),
    ]
    for record in records:
        assert record["principal"] == f"cli:{getpass.getuser()}"
        assert record["role"] == "owner"
        assert record["kind"] == "changes"
        assert record["outcome"] == "success"
        assert record["request_id"].startswith("cli-")
        assert record["service_name"] is None
    assert records[0]["detail"] == "role=key-operator; scope=/subscriptions/s1"
    new_kid = key.split()[3].rstrip(";")
    assert new_kid in records[4]["detail"]
    exported = json.dumps(records)
    assert first_secret not in exported
    assert new_secret not in exported
    assert len({r["request_id"] for r in records}) == len(records)
