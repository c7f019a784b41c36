"""``tenant-access azure-cli``: the printed recipe follows the configuration it is given (flags or
``TENANT_ACCESS_*`` variables). The recipe itself is run against the real Azure CLI in tests/azcli."""

from __future__ import annotations

import os
from pathlib import Path

from click.testing import CliRunner

from tenant_access.cli import main
from tenant_access.domain.subscriptions import TENANT_ID


def _recipe(*args: str, env: dict[str, str] | None = None) -> list[str]:
    clean: dict[str, str | None] = {k: None for k in os.environ if k.startswith("TENANT_ACCESS_")}
    result = CliRunner().invoke(main, ["azure-cli", *args], env={**clean, **(env or {})})
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def test_https_recipe_trusts_the_servers_certificate(tmp_path: Path) -> None:
    lines = _recipe("--tls", "--port", "9443", "--data-dir", str(tmp_path), "--api-style", "azure",
                    "--client-id", "abc")
    commands = [line for line in lines if not line.startswith("#")]
    assert commands == [
        f"export REQUESTS_CA_BUNDLE={tmp_path / 'tls' / 'cert.pem'}",
        "az cloud register --name tenant-access --endpoint-resource-manager https://127.0.0.1:9443/",
        "az cloud set --name tenant-access",
        "az config set core.instance_discovery=false",
        "CLIENT_ID=abc",
        f'az login --service-principal --tenant {TENANT_ID} --username "$CLIENT_ID" --password="$AZURE_CLIENT_SECRET"',
    ]
    assert not any("NOTE" in line for line in lines)


def test_the_environment_configures_it_like_serve(tmp_path: Path) -> None:
    cert = tmp_path / "mine.pem"
    lines = _recipe("--cloud-name", "lab", env={"TENANT_ACCESS_HOST": "0.0.0.0", "TENANT_ACCESS_PORT": "8443",
                                                "TENANT_ACCESS_TLS_CERT": str(cert),
                                                "TENANT_ACCESS_TLS_KEY": str(tmp_path / "key.pem"),
                                                "TENANT_ACCESS_API_STYLE": "azure"})
    assert f"export REQUESTS_CA_BUNDLE={cert}" in lines
    assert "az cloud register --name lab --endpoint-resource-manager https://127.0.0.1:8443/" in lines
    assert "CLIENT_ID='<client id>'" in lines  # a placeholder, with how to make one above it


def test_a_seed_style_plain_http_configuration_says_what_is_missing() -> None:
    lines = _recipe()
    assert any("needs --api-style azure" in line for line in lines)
    assert any("serve HTTPS (--tls)" in line for line in lines)
    assert not any(line.startswith("export REQUESTS_CA_BUNDLE") for line in lines)
    assert "az cloud register --name tenant-access --endpoint-resource-manager http://127.0.0.1:8700/" in lines
