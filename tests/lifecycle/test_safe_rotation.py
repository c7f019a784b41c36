"""?ifUnusedFor= on regenerate: a key used within the window is refused with 409 naming its last
use (nothing changes); an unused one is regenerated; the contract without it is untouched. The
client's rotate() and the CLI wait for the old key to fall unused."""

from __future__ import annotations

import datetime as _dt
import threading

import httpx
import pytest
from click.testing import CliRunner

from tenant_access.cli import main
from tenant_access.client import Conflict, NewKey, ServiceRef, rotate, sas_token
from tenant_access.testing import RunningServer

SUB = "11111111-2222-3333-4444-555555555555"
REF = ServiceRef(SUB, "rg", "safe")
API = "api-version=2024-05-01"
SERVICE = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ApiManagement/service/safe"


@pytest.fixture
def server(tenant_access_server: RunningServer) -> RunningServer:
    tenant_access_server.emulator.seed({"services": [{"subscription": SUB, "resource_group": "rg", "name": "safe",
                                                      "access": {"enabled": True}}]})
    return tenant_access_server


def _use(server: RunningServer, key: str) -> None:
    expiry = server.now() + _dt.timedelta(hours=1)
    header = {"Authorization": "SharedAccessSignature " + sas_token("integration", key, expiry)}
    assert httpx.get(f"{server.url}{SERVICE}?{API}", headers=header).status_code == 200


def test_a_key_in_use_is_refused_with_its_last_use_and_nothing_changes(server: RunningServer) -> None:
    server.emulator.set_clock("2030-01-01T10:00:20Z")
    keys = server.client.list_secrets(REF.access())
    _use(server, keys.primary_key)
    before = server.client.get_access(REF.access())
    response = httpx.post(f"{server.url}{SERVICE}/tenant/access/regeneratePrimaryKey?{API}&ifUnusedFor=PT15M",
                          headers=server.headers())
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["code"] == "CONFLICT" and "2030-01-01T10:00:00" in error["message"]
    assert {"field": "lastUsedAt", "message": "2030-01-01T10:00:00.000Z"} in error["details"]
    assert "retry-after" not in response.headers  # azure-core would retry a 4xx carrying it
    assert server.client.get_access(REF.access()).primary_key_version_id == before.primary_key_version_id
    # The unused secondary may go; so may the primary once the clock has moved past the window.
    server.client.regenerate_key(REF.access(), "secondary", if_unused_for="PT15M")
    server.advance("PT16M")
    server.client.regenerate_key(REF.access(), "primary", if_unused_for="PT15M")
    assert server.client.get_access(REF.access()).primary_key_version_id != before.primary_key_version_id


def test_bad_windows_are_400_and_without_the_option_nothing_is_checked(server: RunningServer) -> None:
    keys = server.client.list_secrets(REF.access())
    _use(server, keys.primary_key)
    for bad in ("15m", "P", "PT15"):
        response = httpx.post(f"{server.url}{SERVICE}/tenant/access/regeneratePrimaryKey?{API}&ifUnusedFor={bad}",
                              headers=server.headers())
        assert response.status_code == 400 and response.json()["error"]["details"][0]["field"] == "query.ifUnusedFor"
    header = httpx.post(f"{server.url}{SERVICE}/tenant/access/regeneratePrimaryKey?{API}",
                        headers={**server.headers(), "If-Unused-For": "PT15M"})
    assert header.status_code == 409
    assert server.client.regenerate_primary_key(REF.access()).id  # the plain call, unchanged


def test_rotate_waits_until_the_old_key_is_unused(server: RunningServer) -> None:
    keys = server.client.list_secrets(REF.access())
    _use(server, keys.primary_key)  # clients are on the primary
    waited: list[int] = []

    def moved(new: NewKey) -> None:
        _use(server, new.key)  # the fleet moves to the new secondary...

    def on_waiting(usage: object) -> None:
        waited.append(1)
        server.advance("PT10M")  # ...and time passes while the rotator waits

    result = rotate(server.client, REF.access(), on_new_key=moved, in_use="primary", unused_for="PT15M",
                    wait=30, poll=0.01, on_waiting=on_waiting)
    assert result.in_use == "secondary" and waited
    # A standby in use is never regenerated: rotating "from" the secondary now is refused at once.
    _use(server, server.client.list_secrets(REF.access()).primary_key)
    with pytest.raises(Conflict):
        rotate(server.client, REF.access(), on_new_key=lambda new: None, in_use="secondary", unused_for="PT15M")


def test_cli_usage_and_guarded_regenerate(server: RunningServer) -> None:
    keys = server.client.list_secrets(REF.access())
    _use(server, keys.primary_key)
    base = ["--endpoint", server.url, "--token", server.owner_token, "--subscription", SUB, "--resource-group", "rg"]
    runner = CliRunner()
    shown = runner.invoke(main, ["keys", "usage", "safe", *base])
    assert shown.exit_code == 0, shown.output
    assert "this minute" in shown.output and "never used" in shown.output
    timer = threading.Timer(0.5, lambda: server.advance("PT20M"))
    timer.start()
    try:
        done = runner.invoke(main, ["keys", "regenerate", "primary", "safe", *base, "--if-unused-for", "PT15M",
                                    "--wait", "30", "--poll", "0.1"])
    finally:
        timer.cancel()
    assert done.exit_code == 0, done.output
    assert "waiting: the primary key was last used" in done.output and "regenerated the primary key" in done.output
