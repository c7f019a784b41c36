"""Every client command in-process: tables, --output json, and the exit codes scripts rely on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tenant_access.client import ServiceRef
from tenant_access.testing import RunningServer
from tests.cli.conftest import RG, SUB, Run

FIXED = "a-fixed-primary-key-for-cli-tests-0123456789"
OK, USAGE, AUTH, MISSING, REFUSED, UNAVAILABLE = 0, 2, 3, 4, 5, 6


def _create(cli: Run, name: str = "apim-cli") -> None:
    result = cli("services", "create", name, "--location", "westeurope", "--publisher-email", "ops@example.com",
                 "--publisher-name", "Ops", "--tag", "env=test")
    assert result.exit_code == OK, result.output


def test_services_create_list_show_delete_as_tables(cli: Run) -> None:
    _create(cli)
    _create(cli, "apim-two")
    listed = cli("services", "list")
    assert listed.exit_code == OK, listed.output
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["NAME", "RESOURCE", "GROUP", "LOCATION", "SKU", "PUBLISHER", "CREATED"]
    assert [line.split()[0] for line in lines[1:]] == ["apim-cli", "apim-two"]
    assert "Developer (1)" in lines[1]
    shown = cli("services", "show", "apim-cli")
    assert shown.exit_code == OK
    assert "tags:" in shown.stdout and "env=test" in shown.stdout
    assert f"/subscriptions/{SUB}/resourceGroups/{RG}/" in shown.stdout
    deleted = cli("services", "delete", "apim-cli", "--yes")
    assert (deleted.exit_code, deleted.stdout.strip()) == (OK, "deleted service apim-cli")
    assert cli("services", "show", "apim-cli").exit_code == MISSING


def test_json_output_is_parseable_and_complete(cli: Run) -> None:
    _create(cli)
    listed = json.loads(cli("services", "list", "-o", "json").stdout)
    assert [s["name"] for s in listed] == ["apim-cli"]
    assert listed[0]["tags"] == {"env": "test"} and listed[0]["created_at"].endswith("Z")
    access = json.loads(cli("access", "list", "apim-cli", "--output", "json").stdout)
    assert [a["name"] for a in access] == ["access", "gitAccess"]
    shown = json.loads(cli("access", "show", "apim-cli", "--git", "-o", "json").stdout)
    assert shown["name"] == "gitAccess" and shown["etag"]
    rotated = json.loads(cli("keys", "regenerate", "secondary", "apim-cli", "-o", "json").stdout)
    assert rotated["slot"] == "secondary" and rotated["id"] and rotated["previous_id"]
    events = json.loads(cli("audit", "apim-cli", "-o", "json", env={"TENANT_ACCESS_OUTPUT": None}).stdout)
    assert events[-1]["operation"] == "access.regenerate_secondary_key"
    assert events[-1]["new_version_id"] == rotated["id"]
    as_env = cli("services", "list", env={"TENANT_ACCESS_OUTPUT": "json"})
    assert json.loads(as_env.stdout)[0]["name"] == "apim-cli"


def test_keys_are_masked_unless_revealed(cli: Run, tenant_access_server: RunningServer) -> None:
    _create(cli)
    secrets = tenant_access_server.client.list_secrets(ServiceRef(SUB, RG, "apim-cli").access())
    masked = cli("keys", "show", "apim-cli")
    assert masked.exit_code == OK
    assert secrets.primary_key not in masked.output and secrets.secondary_key not in masked.output
    assert "primary key:            ********" in masked.stdout
    assert "add --reveal" in masked.stderr
    masked_json = json.loads(cli("keys", "show", "apim-cli", "-o", "json").stdout)
    assert masked_json["primary_key"] == "********"
    assert masked_json["primary_key_version_id"] == secrets.primary_key_version_id
    revealed = json.loads(cli("keys", "show", "apim-cli", "--reveal", "-o", "json").stdout)
    assert (revealed["primary_key"], revealed["secondary_key"]) == (secrets.primary_key, secrets.secondary_key)
    table = cli("keys", "show", "apim-cli", "--reveal")
    assert secrets.primary_key in table.stdout and "--reveal" not in table.stderr


def test_keys_regenerate_each_slot_and_the_git_keys(cli: Run, tenant_access_server: RunningServer) -> None:
    _create(cli)
    ref = ServiceRef(SUB, RG, "apim-cli")
    before = tenant_access_server.client.list_access(ref)
    primary = cli("keys", "regenerate", "primary", "apim-cli")
    assert primary.exit_code == OK
    assert primary.stdout.startswith("regenerated the primary key of apim-cli/access: new version ")
    assert f"(replaces {before[0].primary_key_version_id})" in primary.stdout
    git = cli("keys", "regenerate", "secondary", "apim-cli", "--git")
    assert "secondary key of apim-cli/gitAccess" in git.stdout
    after = {c.name: c for c in tenant_access_server.client.list_access(ref)}
    assert after["access"].primary_key_version_id != before[0].primary_key_version_id
    assert after["access"].secondary_key_version_id == before[0].secondary_key_version_id
    assert after["gitAccess"].secondary_key_version_id != before[1].secondary_key_version_id
    assert cli("keys", "regenerate", "tertiary", "apim-cli").exit_code == USAGE


def test_access_enable_disable_set_and_if_match(cli: Run, tmp_path: Path, tenant_access_server: RunningServer) -> None:
    _create(cli)
    enabled = cli("access", "enable", "apim-cli")
    assert enabled.exit_code == OK and "enabled:                yes" in enabled.stdout
    etag = json.loads(cli("access", "show", "apim-cli", "-o", "json").stdout)["etag"]
    assert cli("access", "disable", "apim-cli", "--if-match", etag).exit_code == OK
    stale = cli("access", "enable", "apim-cli", "--if-match", etag)
    assert stale.exit_code == REFUSED and "412" in stale.stderr
    key_file = tmp_path / "primary.key"
    key_file.write_text(FIXED + "\n")
    changed = cli("access", "set", "apim-cli", "--principal-id", "robot", "--enabled", "--primary-key-file",
                  str(key_file), "-o", "json")
    assert changed.exit_code == OK, changed.output
    assert json.loads(changed.stdout)["principal_id"] == "robot"
    secrets = tenant_access_server.client.list_secrets(ServiceRef(SUB, RG, "apim-cli").access())
    assert (secrets.primary_key, secrets.enabled) == (FIXED, True)
    from_stdin = cli("access", "set", "apim-cli", "--secondary-key-file", "-", input=FIXED[::-1] + "\n")
    assert from_stdin.exit_code == OK, from_stdin.output
    assert tenant_access_server.client.list_secrets(ServiceRef(SUB, RG, "apim-cli").access()).secondary_key == \
        FIXED[::-1]
    assert cli("access", "set", "apim-cli", "--primary-key-file", str(tmp_path / "nope")).exit_code == USAGE


def test_audit_table_and_filters(cli: Run) -> None:
    _create(cli)
    cli("keys", "regenerate", "secondary", "apim-cli")
    cli("keys", "show", "apim-cli")
    table = cli("audit", "apim-cli")
    assert table.exit_code == OK
    lines = table.stdout.splitlines()
    assert lines[0].split()[:4] == ["TIME", "OPERATION", "OUTCOME", "STATUS"]
    assert [line.split()[2] for line in lines[1:]] == ["services.create_or_update", "access.regenerate_secondary_key",
                                                        "access.list_secrets"]
    only = json.loads(cli("audit", "apim-cli", "--operation", "access.list_secrets", "-o", "json").stdout)
    assert [e["operation"] for e in only] == ["access.list_secrets"]
    assert json.loads(cli("audit", "apim-cli", "--top", "1", "-o", "json").stdout)[0]["operation"] == \
        "services.create_or_update"
    assert json.loads(cli("audit", "apim-cli", "--since", "2999-01-01", "-o", "json").stdout) == []


def test_usage_errors_exit_2(cli: Run) -> None:
    missing = cli("services", "list", env={"TENANT_ACCESS_SUBSCRIPTION": None})
    assert missing.exit_code == USAGE and "--subscription" in missing.stderr
    assert cli("services", "list", env={"TENANT_ACCESS_RESOURCE_GROUP": None}).exit_code == USAGE
    assert cli("services", "create", "x").exit_code == USAGE  # --location and the publisher are required
    assert cli("services", "list", "--endpoint", "ftp://example.com").exit_code == USAGE
    assert cli("services", "list", "--sas-key", "k" * 40).exit_code == USAGE  # and a token from the environment
    assert cli("services", "create", "x", "-l", "w", "--publisher-email", "e", "--publisher-name", "n",
               "--tag", "novalue").exit_code == USAGE


def test_authentication_failures_exit_3(cli: Run, tenant_access_server: RunningServer) -> None:
    _create(cli)
    bad = cli("services", "list", env={"TENANT_ACCESS_TOKEN": "not-a-token"})
    assert bad.exit_code == AUTH and "401" in bad.stderr
    none = cli("services", "list", env={"TENANT_ACCESS_TOKEN": None})
    assert none.exit_code == AUTH
    reader = tenant_access_server.token("reader")
    assert cli("services", "list", "--token", reader).exit_code == OK
    forbidden = cli("services", "delete", "apim-cli", "--yes", "--token", reader)
    assert forbidden.exit_code == AUTH and "403" in forbidden.stderr


def test_shared_access_signatures_work_where_a_key_operator_may(cli: Run,
                                                                tenant_access_server: RunningServer) -> None:
    _create(cli)
    target = ServiceRef(SUB, RG, "apim-cli").access()
    tenant_access_server.client.enable(target)
    key = tenant_access_server.client.list_secrets(target).primary_key
    sas = {"TENANT_ACCESS_TOKEN": None, "TENANT_ACCESS_SAS_KEY": key}
    assert cli("keys", "regenerate", "secondary", "apim-cli", env=sas).exit_code == OK
    assert cli("services", "delete", "apim-cli", "--yes", env=sas).exit_code == AUTH
    assert cli("keys", "show", "apim-cli", env={**sas, "TENANT_ACCESS_SAS_UID": "someone-else"}).exit_code == AUTH


def test_not_found_exits_4_and_delete_can_be_idempotent(cli: Run) -> None:
    assert cli("services", "show", "nothing-here").exit_code == MISSING
    assert cli("keys", "show", "nothing-here").exit_code == MISSING
    missing = cli("services", "delete", "nothing-here", "--yes")
    assert missing.exit_code == MISSING and "no service nothing-here" in missing.stderr
    ok = cli("services", "delete", "nothing-here", "--yes", "--missing-ok")
    assert (ok.exit_code, ok.stdout.strip()) == (OK, "no service nothing-here: nothing to delete")


def test_other_refusals_exit_5(cli: Run) -> None:
    _create(cli)
    bad_sku = cli("services", "create", "apim-x", "-l", "westeurope", "--publisher-email", "e@x", "--publisher-name",
                  "n", "--sku", "Gigantic")
    assert bad_sku.exit_code == REFUSED and "400" in bad_sku.stderr and "sku" in bad_sku.stderr
    moved = cli("services", "create", "apim-cli", "-l", "japaneast", "--publisher-email", "e@x",
                "--publisher-name", "n")
    assert moved.exit_code == REFUSED and "409" in moved.stderr


def test_server_trouble_exits_6(cli: Run, tenant_access_server: RunningServer) -> None:
    _create(cli)
    unreachable = cli("services", "list", "--endpoint", "http://127.0.0.1:9")
    assert unreachable.exit_code == UNAVAILABLE and "cannot reach the server" in unreachable.stderr
    tenant_access_server.emulator.add_fault("services.list", status=503, retry_after=4, count=1)
    busy = cli("services", "list")
    assert busy.exit_code == UNAVAILABLE and "retry after 4 s" in busy.stderr
    tenant_access_server.emulator.add_fault("services.get", status=429, count=1)
    assert cli("services", "show", "apim-cli").exit_code == UNAVAILABLE
    assert cli("services", "list").exit_code == OK


def test_destructive_commands_want_yes_when_not_at_a_terminal(cli: Run) -> None:
    _create(cli)
    refused = cli("services", "delete", "apim-cli")
    assert refused.exit_code == USAGE and "--yes" in refused.stderr
    assert cli("emulator", "reset").exit_code == USAGE
    assert cli("services", "show", "apim-cli").exit_code == OK


def test_emulator_commands(cli: Run, tmp_path: Path, tenant_access_server: RunningServer) -> None:
    seed = tmp_path / "rig.yaml"
    seed.write_text(f"subscription: {SUB}\nresource_group: {RG}\nservices:\n  - name: seeded\n"
                    f"    access: {{enabled: true, primary_key: {FIXED}}}\n")
    seeded = cli("emulator", "seed", str(seed))
    assert seeded.exit_code == OK, seeded.output
    assert seeded.stdout.splitlines()[1].split() == [SUB, RG, "seeded", "created"]
    assert json.loads(cli("emulator", "seed", str(seed), "-o", "json").stdout)[0]["result"] == "unchanged"
    state = cli("emulator", "state")
    assert "seeded" in state.stdout and FIXED not in state.stdout
    revealed = json.loads(cli("emulator", "state", "--reveal", "-o", "json").stdout)
    assert revealed["services"][0]["access"]["primary_key"] == FIXED

    rule = cli("emulator", "faults", "set", "--operation", "access.*", "--status", "429", "--rate", "0.5",
               "--retry-after", "3", "--count", "10")
    assert rule.exit_code == OK, rule.output
    assert rule.stdout.splitlines()[1].split()[:5] == ["1", "access.*", "429", "0.5", "3"]
    added = json.loads(cli("emulator", "faults", "add", "--operation", "services.get", "--status", "none",
                           "--latency-ms", "10", "-o", "json").stdout)
    assert [(r["operation"], r["status"]) for r in added] == [("access.*", 429), ("services.get", None)]
    assert len(json.loads(cli("emulator", "faults", "list", "-o", "json").stdout)) == 2
    assert "2 fault rule(s) active" in cli("emulator", "state").stderr
    rules_file = tmp_path / "faults.json"
    rules_file.write_text(json.dumps({"rules": [{"operation": "services.delete", "status": 500}]}))
    from_file = json.loads(cli("emulator", "faults", "set", "--file", str(rules_file), "-o", "json").stdout)
    assert [r["operation"] for r in from_file] == ["services.delete"]
    bad = cli("emulator", "faults", "set", "--operation", "no.such.thing")
    assert bad.exit_code == REFUSED and "matches no operation" in bad.stderr
    assert cli("emulator", "faults", "clear").stdout.strip() == "no fault rules"

    reset = cli("emulator", "reset", "--yes")
    assert (reset.exit_code, reset.stdout.strip()) == (OK, f"reset {tenant_access_server.url}")
    assert json.loads(cli("emulator", "state", "-o", "json").stdout)["services"] == []
    broken = tmp_path / "broken.yaml"
    broken.write_text("services: [")
    assert cli("emulator", "seed", str(broken)).exit_code == USAGE
    invalid = tmp_path / "invalid.yaml"
    invalid.write_text("services:\n  - name: -bad-\n")
    refused = cli("emulator", "seed", str(invalid))
    assert refused.exit_code == REFUSED and "services[0]" in refused.stderr


def test_the_emulator_commands_need_the_controls_on(cli: Run) -> None:
    from tenant_access.testing import run_server

    with run_server(emulator_controls=False) as server:
        result = cli("emulator", "state", "--endpoint", server.url, "--token", server.owner_token)
        assert result.exit_code == MISSING


@pytest.mark.tenant_access(api_style="azure", tls=True)
def test_against_an_azure_style_server_over_https(cli: Run) -> None:
    _create(cli)
    listed = json.loads(cli("services", "list", "-o", "json", "--api-style", "azure").stdout)
    assert [s["name"] for s in listed] == ["apim-cli"]
    rotated = cli("keys", "regenerate", "secondary", "apim-cli")
    assert rotated.stdout.strip() == "regenerated the secondary key of apim-cli/access"  # Azure reports no version
    untrusted = cli("services", "list", env={"TENANT_ACCESS_CACERT": None})
    assert untrusted.exit_code == UNAVAILABLE and "cannot reach the server" in untrusted.stderr
    assert cli("services", "list", "--insecure", env={"TENANT_ACCESS_CACERT": None}).exit_code == OK


def test_db_upgrade_shows_each_migration(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from tenant_access.cli import main

    first = CliRunner().invoke(main, ["db", "upgrade", "--data-dir", str(tmp_path)])
    assert first.exit_code == OK, first.output
    assert "applied migration 0001_initial" in first.stderr
    assert first.stdout.startswith("schema up to date: sqlite ")
    again = CliRunner().invoke(main, ["db", "upgrade", "--data-dir", str(tmp_path)])
    assert "applied migration" not in again.stderr
