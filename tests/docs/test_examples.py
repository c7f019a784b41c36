"""Every runnable shell and Python example of README.md and docs/*.md, run as a reader pastes it
(issue 17), against a real server of its own on a free port.

How it maps onto a reader's machine (documented in docs/testing.md):

* each document gets a fresh ``HOME`` and a server whose data directory is the default one under
  it (``~/.local/share/tenant-access``), so ``tenant-access token`` without ``--data-dir`` and
  every ``~/.local/share/tenant-access`` in the docs mean that server; the server is the one the
  document starts (``serve --demo`` unless :data:`SERVERS` says otherwise);
* the one substitution: ``127.0.0.1:8700`` in an example becomes the server's address;
* shell examples run in bash (``set -e -o pipefail``) with the venv's ``bin`` on ``PATH``, in the
  order of the document, each one seeing the variables the ones before it set (as in one terminal);
  Python examples run with that environment and with every earlier Python example of the
  document run before them (as in one interpreter session; top-level ``await`` is allowed);
* an example passes when it exits 0 and prints no traceback and no "Authentication failed" (a
  ``curl -s`` refused with 401 still exits 0).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.docs.examples import ROOT, Block, blocks, documents
from tests.serverproc import ServerProcess

#: The server each document talks to, when it is not ``serve --demo``.
SERVERS: dict[str, list[str]] = {
    "docs/azure-compatibility.md": ["--api-style", "azure", "--tls"],
    "docs/events.md": ["--demo", "--emulator-controls"],
}
DOC_PORT = "127.0.0.1:8700"
TIMEOUT = 60
BIN = str(Path(sys.executable).parent)
FORBIDDEN = ("Traceback (most recent call last)", "Authentication failed", "command not found")

_DRIVER = """
import ast, asyncio, inspect, json, sys
namespace = {"__name__": "__main__"}
for where, line, code in json.load(open(sys.argv[1])):
    compiled = compile("\\n" * (line - 1) + code, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(compiled, namespace)
    if inspect.iscoroutine(result):
        asyncio.run(result)
"""

RUNNABLE = [b for doc in documents() for b in blocks(doc) if b.skip_reason is None]


@dataclass
class Session:
    """One reader's terminal for one document: its HOME, its server, its shell variables."""

    home: Path
    server: ServerProcess
    env: dict[str, str]
    python: list[Block] = field(default_factory=list)

    @property
    def state(self) -> Path:
        return self.home / ".examples-state.sh"

    def substitute(self, code: str) -> str:
        return code.replace(DOC_PORT, f"127.0.0.1:{self.server.port}")

    def run_shell(self, block: Block) -> subprocess.CompletedProcess[str]:
        env_file = self.home / ".examples-env"
        script = "\n".join([
            f'[ -f "{self.state}" ] && . "{self.state}"',
            "set -a -e -o pipefail",
            self.substitute(block.code),
            # set -e lets a failed `a && b` list through; its status is still in $? here.
            "status=$?; [ $status -eq 0 ] || exit $status",
            "set +a +e",
            f'export -p > "{self.state}"',
            f'env -0 > "{env_file}"',
        ])
        done = subprocess.run(["bash", "--noprofile", "--norc", "-c", script], cwd=self.home, env=self.env,
                              capture_output=True, text=True, timeout=TIMEOUT, check=False)
        if done.returncode == 0 and env_file.exists():
            pairs = (item.split("=", 1) for item in env_file.read_text().split("\0") if "=" in item)
            self.env = dict(pairs)  # type: ignore[arg-type]
        return done

    def run_python(self, block: Block) -> subprocess.CompletedProcess[str]:
        program = [(str(b.where.split(":")[0]), b.line, self.substitute(b.code)) for b in [*self.python, block]]
        source = self.home / ".examples-python.json"
        source.write_text(json.dumps(program), encoding="utf-8")
        done = subprocess.run([sys.executable, "-c", _DRIVER, str(source)], cwd=self.home, env=self.env,
                              capture_output=True, text=True, timeout=TIMEOUT, check=False)
        if done.returncode == 0:
            self.python.append(block)
        return done


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[Path, Session]]:
    made: dict[Path, Session] = {}
    yield made
    for session in made.values():
        session.server.stop()


def _session(sessions: dict[Path, Session], block: Block, tmp_path_factory: pytest.TempPathFactory) -> Session:
    if block.path not in sessions:
        home = tmp_path_factory.mktemp("reader-home")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TENANT_ACCESS_", "XDG_"))}
        env.update(HOME=str(home), PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
        relative = str(block.path.relative_to(ROOT))
        server = ServerProcess(home / ".local" / "share" / "tenant-access", SERVERS.get(relative, ["--demo"]),
                               env={"HOME": str(home)}).start()
        sessions[block.path] = Session(home, server, env)
    return sessions[block.path]


@pytest.mark.parametrize("block", RUNNABLE, ids=lambda b: b.where)
def test_example_runs_as_pasted(block: Block, sessions: dict[Path, Session],
                                tmp_path_factory: pytest.TempPathFactory) -> None:
    session = _session(sessions, block, tmp_path_factory)
    done = session.run_shell(block) if block.kind == "shell" else session.run_python(block)
    output = done.stdout + done.stderr
    problem = next((word for word in FORBIDDEN if word in output), None)
    assert done.returncode == 0 and problem is None, (
        f"{block.where}: the {block.kind} example "
        + (f"exited {done.returncode}" if done.returncode else f"printed {problem!r}")
        + f"\n--- example\n{block.code}--- output\n{output}"
    )


def test_the_examples_are_found_and_every_skipped_one_says_why() -> None:
    """A broken fence or marker parser would otherwise pass by running nothing."""
    skipped = [b for doc in documents() for b in blocks(doc) if b.skip_reason is not None]
    assert all(b.skip_reason and b.skip_reason.strip() for b in skipped)
    assert len(RUNNABLE) >= 15
    assert {b.path.name for b in RUNNABLE} >= {"README.md", "client.md", "cli.md", "security.md"}
