"""One server in Azure mode over HTTPS per module, and the real Azure CLI pointed at it.

``az`` runs as a subprocess of the cached azure-cli environment (see :mod:`tests.azcli.install`),
each signed-in identity with its own ``AZURE_CONFIG_DIR`` in a temporary directory, and trusting
the server's certificate through the variables this machine otherwise sets globally.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.azcli.install import ensure_azure_cli
from tests.serverproc import ServerProcess

SUB = "5c0ffee0-1111-4a2b-8c3d-000000000001"
OTHER_SUB = "5c0ffee0-2222-4a2b-8c3d-000000000002"
CLOUD = "tenant-access"
AZ_TIMEOUT = 120


@pytest.fixture(scope="session")
def az_python() -> Path:
    return ensure_azure_cli()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("azcli-server"), ["--api-style", "azure", "--tls"]).start()
    try:
        yield proc
    finally:
        proc.stop()


def tenant_access(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANT_ACCESS_")}
    done = subprocess.run([sys.executable, "-m", "tenant_access", *args], capture_output=True, text=True, env=env,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def create_principal(server: ServerProcess, role: str, scope: str) -> tuple[str, str]:
    """A service principal made as a user makes one: ``tenant-access principals create``."""
    out = tenant_access("principals", "create", "--role", role, "--scope", scope, "--data-dir", str(server.data_dir))
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return fields["client id"].strip(), fields["client secret"].strip()


@dataclass
class Az:
    """``az`` with one configuration directory: one cloud registration and one signed-in identity."""

    python: Path
    config_dir: Path
    cert: Path
    bin_dir: Path

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AZURE_", "TENANT_ACCESS_", "ARM_"))
               and k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")}
        env.update({
            "AZURE_CONFIG_DIR": str(self.config_dir),
            "REQUESTS_CA_BUNDLE": str(self.cert), "SSL_CERT_FILE": str(self.cert), "CURL_CA_BUNDLE": str(self.cert),
            "AZURE_CORE_COLLECT_TELEMETRY": "false", "AZURE_CORE_NO_COLOR": "true",
            "AZURE_CORE_SURVEY_MESSAGE": "false", "AZURE_CORE_ONLY_SHOW_ERRORS": "true",
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        })
        return env

    def run(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([str(self.python), "-m", "azure.cli", *args], capture_output=True, text=True,
                              env=self.env, timeout=AZ_TIMEOUT, check=False)
        if ok:
            assert done.returncode == 0, f"az {' '.join(args)}\n{done.stdout}\n{done.stderr}"
        return done

    def json(self, *args: str) -> Any:
        out = self.run(*args, "--output", "json").stdout
        return json.loads(out) if out.strip() else None

    def script(self, text: str, secret: str) -> subprocess.CompletedProcess[str]:
        """Run shell lines as a user would paste them, ``az`` being this CLI."""
        return subprocess.run(["bash", "-euo", "pipefail", "-c", text], capture_output=True, text=True,
                              env={**self.env, "AZURE_CLIENT_SECRET": secret}, timeout=5 * AZ_TIMEOUT, check=False)


def make_az(python: Path, server: ServerProcess, root: Path) -> Az:
    assert server.cert_path is not None, server.log()
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True)
    shim = bin_dir / "az"
    shim.write_text(f'#!/bin/sh\nexec "{python}" -m azure.cli "$@"\n')
    shim.chmod(0o755)
    return Az(python, root / "azure-config", server.cert_path, bin_dir)


def sign_in(az: Az, server: ServerProcess, role: str, scope: str) -> str:
    """Register the cloud and sign in with exactly the commands ``tenant-access azure-cli`` prints;
    answers the principal's client id."""
    client_id, secret = create_principal(server, role, scope)
    recipe = tenant_access("azure-cli", "--api-style", "azure", "--tls", "--port", str(server.port),
                           "--data-dir", str(server.data_dir), "--client-id", client_id)
    done = az.script(recipe, secret)
    assert done.returncode == 0, f"{recipe}\n{done.stdout}\n{done.stderr}"
    return client_id
