"""The real Azure CLI for the tests, installed from the package index once per version into a cache
outside the checkout (``$XDG_CACHE_HOME/tenant-access/azure-cli-<version>``, by default
``~/.cache/...``) and reused by every later run, locally and in CI.

It is installed into a fresh directory and renamed into place only once complete (under a lock),
so an interrupted install is never mistaken for a finished one. When the install fails, the index is
asked whether it can be reached at all: only if it cannot is the suite skipped (with that reason);
any other failure is a test failure.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

VERSION = "2.91.0"
INSTALL_TIMEOUT = 1200
_COMPLETE = ".tenant-access-complete"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tenant-access"


def venv_python(root: Path) -> Path:
    return root / "bin" / "python"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def _index_reachable() -> tuple[bool, str]:
    """Whether pip (as configured on this machine) gets an answer from the index about azure-cli."""
    probe = _run([sys.executable, "-m", "pip", "index", "versions", "azure-cli"], 120)
    return probe.returncode == 0, (probe.stdout + probe.stderr)[-2000:]


def ensure_azure_cli() -> Path:
    """The Python interpreter of a virtual environment holding azure-cli ``VERSION``; ``python -m
    azure.cli`` is ``az`` (console scripts would carry the temporary directory's path)."""
    root = cache_dir() / f"azure-cli-{VERSION}"
    if (root / _COMPLETE).is_file():
        return venv_python(root)
    with _locked(cache_dir() / f"azure-cli-{VERSION}.lock"):
        if (root / _COMPLETE).is_file():
            return venv_python(root)
        partial = cache_dir() / f"azure-cli-{VERSION}.partial-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        made = _run([sys.executable, "-m", "venv", str(partial)], 300)
        if made.returncode != 0:
            pytest.fail(f"could not create a virtual environment for azure-cli:\n{made.stderr[-2000:]}")
        install = _run([str(venv_python(partial)), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        f"azure-cli=={VERSION}"], INSTALL_TIMEOUT)
        if install.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            reachable, answer = _index_reachable()
            if not reachable:
                pytest.skip(f"the package index cannot be reached to install azure-cli {VERSION}: {answer[-300:]}")
            pytest.fail(f"installing azure-cli {VERSION} failed although the index answers:\n"
                        f"{(install.stdout + install.stderr)[-4000:]}")
        check = _run([str(venv_python(partial)), "-c", "import azure.cli.core, azure.cli.command_modules.apim"], 120)
        if check.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            pytest.fail(f"azure-cli {VERSION} installed but does not import:\n{check.stderr[-2000:]}")
        (partial / _COMPLETE).write_text(VERSION + "\n")
        shutil.rmtree(root, ignore_errors=True)  # an earlier, unfinished attempt
        partial.rename(root)
    return venv_python(root)
