"""The command line's answers to a newcomer's first mistakes (issue 17): a port already taken, a
token for a data directory no server uses, emulator controls that are off, ``--help`` that cuts
sentences, and a stop that takes seconds and says nothing. Real processes, real sockets."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import click
import httpx
import pytest
from click.testing import CliRunner

from tenant_access.cli import main
from tenant_access.security.tokens import load_or_create_signing_key
from tests.serverproc import ServerProcess


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TENANT_ACCESS_")}


def test_a_port_in_use_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "tenant_access", "serve", "--port", str(port), "--data-dir", str(tmp_path)],
            capture_output=True, text=True, timeout=60, env=_clean_env(), check=False,
        )
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("{")]
    assert lines == [f"tenant-access: 127.0.0.1:{port} is already in use (another server running?); choose another "
                     "port with --port N, or --port 0 for any free one"], done.stderr
    assert "Traceback" not in done.stderr + done.stdout


@pytest.fixture
def served_dir(tmp_path: Path) -> Iterator[tuple[Path, ServerProcess]]:
    server = ServerProcess(tmp_path / "served").start()
    yield tmp_path / "served", server
    server.stop()


def _token(data_dir: Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["token", "--data-dir", str(data_dir)], env=dict.fromkeys(
        [k for k in os.environ if k.startswith("TENANT_ACCESS_")]))
    return result.exit_code, result.stdout, result.stderr


def test_token_warns_when_no_server_has_used_the_data_dir(tmp_path: Path) -> None:
    unused = tmp_path / "unused"
    load_or_create_signing_key(unused)  # a signing key, but no server ever started here
    code, out, err = _token(unused)
    assert code == 0 and out.count(".") == 2  # the token is still printed, on standard output
    assert f"no server has used the data directory {unused}" in err
    assert "--data-dir" in err


def test_token_is_quiet_while_a_server_uses_the_data_dir(served_dir: tuple[Path, ServerProcess]) -> None:
    data_dir, server = served_dir
    code, out, err = _token(data_dir)
    assert code == 0 and err == ""
    # ... and the token works there.
    answer = httpx.get(f"{server.url}/subscriptions/{'0' * 8}-0000-0000-0000-{'0' * 12}/resourceGroups/rg/providers/"
                       "Microsoft.ApiManagement/service?api-version=2024-05-01",
                       headers={"Authorization": f"Bearer {out.strip()}"})
    assert answer.status_code == 200, answer.text


def test_token_warns_when_the_last_server_has_stopped(served_dir: tuple[Path, ServerProcess]) -> None:
    data_dir, server = served_dir
    server.stop()
    code, _, err = _token(data_dir)
    assert code == 0 and "is no longer running" in err


def test_emulator_commands_against_a_strict_server_explain_the_404(
        served_dir: tuple[Path, ServerProcess]) -> None:
    _, server = served_dir
    result = CliRunner().invoke(main, ["emulator", "state"], env={
        **dict.fromkeys([k for k in os.environ if k.startswith("TENANT_ACCESS_")]),
        "TENANT_ACCESS_ENDPOINT": server.url, "TENANT_ACCESS_TOKEN": server.token()})
    assert result.exit_code == 4, result.output
    assert "emulator controls" in result.stderr and "--emulator-controls" in result.stderr
    assert "--auth strict" in result.stderr


def _help(*args: str) -> str:
    result = CliRunner().invoke(main, [*args, "--help"], terminal_width=100)
    assert result.exit_code == 0
    return result.stdout


def test_top_level_help_does_not_cut_descriptions_and_says_where_to_start() -> None:
    text = _help()
    commands = text.split("Commands:", 1)[1]
    assert not [line for line in commands.splitlines() if line.endswith("...")]  # click's cut mark
    assert "The access and gitAccess configurations of a service: show, enable, disable, set." in " ".join(
        commands.split())
    assert "Start here: tenant-access serve --demo" in text


def test_serve_help_is_grouped_by_topic_and_lists_every_option() -> None:
    from tenant_access.cli_help import OTHER, SERVE_SECTIONS

    text = _help("serve")
    headings = [line[:-1] for line in text.splitlines() if line.endswith(":") and not line.startswith(" ")]
    assert headings == [*SERVE_SECTIONS, OTHER]
    serve = main.commands["serve"]
    for param in serve.params:
        assert isinstance(param, click.Option)
        assert param.opts[0] in text, param.opts[0]
    # Each listed option is under its own heading.
    assert text.index("Listening:") < text.index("--port") < text.index("Storage:") < text.index("--data-dir")


def test_an_option_missing_from_the_table_is_shown_under_other() -> None:
    from tenant_access.cli_help import SectionedCommand

    class Command(SectionedCommand):
        sections: ClassVar[dict[str, tuple[str, ...]]] = {"Known": ("known",)}

    command = Command("x", params=[click.Option(["--known"], help="listed"),
                                   click.Option(["--added-later"], help="not in the table")])
    text = command.get_help(click.Context(command))
    assert text.index("Known:") < text.index("--known") < text.index("Other:") < text.index("--added-later")


def test_sigterm_stops_fast_with_an_idle_tls_client_and_says_so(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "tls", ["--tls"]).start()
    try:
        assert server.cert_path is not None
        trust = ssl.create_default_context(cafile=str(server.cert_path))
        with httpx.Client(base_url=server.url, verify=trust) as client:
            assert client.get("/healthz").status_code == 200  # the connection stays open, idle
            assert server.proc is not None
            before = len(server.output)
            started = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            server.proc.wait(20)
            elapsed = time.monotonic() - started
    finally:
        server.stop()
    assert elapsed < 2.5, elapsed  # generous: about 0.4 s here; was over 3 s
    assert any("stopping" in line for line in server.output[before:]), server.output[before:]


def test_serve_imports_no_other_commands_module() -> None:
    """Start-up time is a product figure: ``tenant-access serve`` loads the modules of the other
    commands (the API client, the Azure CLI wrapper, events, identities, audit export) only when
    one of them is named. In a new interpreter, since this one has imported them already."""
    probe = ("import sys, click\n"
             "from tenant_access.cli import main\n"
             "ctx = click.Context(main)\n"
             "assert main.get_command(ctx, 'serve') is not None\n"
             "print(sorted(m for m in sys.modules if m.startswith('tenant_access.cli_')))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "['tenant_access.cli_help', 'tenant_access.cli_store']"
    # ... and every command is still there, found when named.
    ctx = click.Context(main)
    assert {"services", "access", "keys", "audit", "emulator", "events", "signing-key", "azure-cli", "serve",
            "principals"} <= set(main.list_commands(ctx))
    principals = main.get_command(ctx, "principals")
    assert isinstance(principals, click.Group)
    assert principals.list_commands(ctx) == ["create", "delete", "disable", "enable", "list", "rotate-secret",
                                             "show"]


def test_no_group_cuts_a_command_description() -> None:
    """Every group's listing, not only the top level's: `principals --help`, `audit --help`, ..."""
    ctx = click.Context(main)
    groups = [name for name in main.list_commands(ctx) if isinstance(main.get_command(ctx, name), click.Group)]
    assert {"audit", "principals", "master-key", "keys", "signing-key"} <= set(groups)
    for name in groups:
        listing = _help(name).split("Commands:", 1)[1]
        assert not [line for line in listing.splitlines() if line.endswith("...")], name
