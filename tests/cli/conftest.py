"""The command line in-process, through click's CliRunner, against an in-process server."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner, Result

from tenant_access.cli import main
from tenant_access.testing import RunningServer

SUB = "11111111-2222-3333-4444-555555555555"
RG = "cli-rg"
Run = Callable[..., Result]


@pytest.fixture
def cli(tenant_access_server: RunningServer) -> Run:
    """``cli("services", "list")`` runs ``tenant-access services list`` against the test's server,
    connected through the environment as a user's shell would be; ``env=`` adds or removes (None)
    variables, ``input=`` feeds standard input."""
    base: dict[str, str | None] = {k: None for k in os.environ if k.startswith("TENANT_ACCESS_")}
    base.update({
        "TENANT_ACCESS_ENDPOINT": tenant_access_server.url,
        "TENANT_ACCESS_TOKEN": tenant_access_server.owner_token,
        "TENANT_ACCESS_SUBSCRIPTION": SUB,
        "TENANT_ACCESS_RESOURCE_GROUP": RG,
    })
    if tenant_access_server.cacert is not None:
        base["TENANT_ACCESS_CACERT"] = str(tenant_access_server.cacert)

    def run(*args: str, env: dict[str, str | None] | None = None, input: str | None = None, **kwargs: Any) -> Result:
        return CliRunner().invoke(main, list(args), env={**base, **(env or {})}, input=input, **kwargs)

    return run
