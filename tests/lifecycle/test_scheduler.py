"""The scheduler in one server: advancing the clock runs due rotations before it answers, by the
principal policy, once per due time (a second pass does nothing), one catch-up after a long gap;
its state is in the policy's status, /readyz, /metrics and the CLI; --scheduler off runs nothing."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import httpx
from click.testing import CliRunner

from tenant_access.cli import main
from tenant_access.client import ServiceRef, sas_token
from tenant_access.testing import RunningServer, run_server

SUB = "11111111-2222-3333-4444-555555555555"
REF = ServiceRef(SUB, "rg", "timed")
POLICY = {"lifetimeActions": [{"trigger": {"timeAfterCreate": "P30D"}, "action": {"type": "Rotate"}}],
          "gracePeriod": "PT1H"}
SEED = {"services": [{"subscription": SUB, "resource_group": "rg", "name": "timed",
                      "access": {"enabled": True, "rotation_policy": POLICY}}]}


def _policy_rotations(server: RunningServer) -> list[object]:
    return [e for e in server.client.list_audit_events(REF, kind="changes")
            if e.principal == "policy" and (e.operation or "").startswith("access.regenerate")]


def test_advance_runs_due_rotations_once_and_catches_up_once(tenant_access_server: RunningServer) -> None:
    server = tenant_access_server
    server.emulator.seed(SEED)
    assert server.advance("P29D")["scheduled"] == []
    moved = server.advance("P2D")
    assert len(moved["scheduled"]) == 1 and "rotated the primary key" in moved["scheduled"][0]
    assert len(_policy_rotations(server)) == 1
    assert server.advance("PT1M")["scheduled"] == []  # the due time moved on: nothing twice
    server.advance("P300D")  # ten periods of downtime: one catch-up rotation, not ten
    assert len(_policy_rotations(server)) == 2
    status = server.client.get_rotation_policy(REF.access())["status"]
    assert status["overdue"] is False and status["lastOutcome"].startswith("rotated the secondary key")
    ready = httpx.get(f"{server.url}/readyz").json()
    assert ready["scheduler"]["enabled"] is True and ready["scheduler"]["policies"] == 1
    metrics = httpx.get(f"{server.url}/metrics").text
    assert "tenant_access_policy_rotations_total 2.0" in metrics
    assert "tenant_access_rotation_policies_overdue 0.0" in metrics


def test_blocked_is_overdue_in_metrics_and_shown_by_the_cli(tenant_access_server: RunningServer,
                                                            tmp_path: Path) -> None:
    server = tenant_access_server
    server.emulator.seed(SEED)
    base = ["--endpoint", server.url, "--token", server.owner_token, "--subscription", SUB, "--resource-group", "rg"]
    policy_file = tmp_path / "policy.json"
    policy_file.write_text(json.dumps({**POLICY, "gracePeriod": "P40D"}))  # every key counts as in use
    runner = CliRunner()
    set_ = runner.invoke(main, ["keys", "policy", "timed", *base, "--set", str(policy_file)])
    assert set_.exit_code == 0, set_.output
    keys = server.client.list_secrets(REF.access())
    url = f"{server.url}/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ApiManagement/service/timed"
    for key in (keys.primary_key, keys.secondary_key):  # one use of each key
        token = sas_token("integration", key, server.now() + dt.timedelta(hours=1))
        assert httpx.get(f"{url}?api-version=2024-05-01",
                         headers={"Authorization": f"SharedAccessSignature {token}"}).status_code == 200
    server.advance("P31D")
    shown = runner.invoke(main, ["keys", "policy", "timed", *base])
    assert shown.exit_code == 0, shown.output
    assert "rotation blocked: both keys in use since" in shown.output and "yes" in shown.output
    assert "tenant_access_rotation_policies_overdue 1.0" in httpx.get(f"{server.url}/metrics").text
    assert _policy_rotations(server) == []
    gone = runner.invoke(main, ["keys", "policy", "timed", *base, "--delete"])
    assert gone.exit_code == 0 and "deleted" in gone.output


def test_scheduler_off_runs_nothing() -> None:
    with run_server(auth="emulator", scheduler=False) as server:
        server.emulator.seed(SEED)
        assert server.advance("P31D")["scheduled"] == []
        assert httpx.get(f"{server.url}/readyz").json()["scheduler"]["enabled"] is False
        assert server.client.get_rotation_policy(REF.access())["status"]["overdue"] is True
