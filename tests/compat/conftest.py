"""Fixtures for the Azure compatibility suite: one real server in Azure mode over HTTPS, and the
official SDK pointed at it exactly as a user would point it (``base_url`` plus a trusted certificate).

Every client trusts the server's certificate explicitly (``connection_verify``/an SSL context):
this machine exports ``REQUESTS_CA_BUNDLE``/``SSL_CERT_FILE`` globally, and the tests must not
depend on them either way.
"""

from __future__ import annotations

import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.core.credentials import AccessToken
from azure.mgmt.apimanagement import ApiManagementClient

from tests.compat import spec
from tests.serverproc import ServerProcess

SUBSCRIPTION = "6b1d3c2a-0e5f-4a7b-9c8d-1e2f3a4b5c6d"
SERVICE_BODY: dict[str, Any] = {
    "location": "West Europe",
    "sku": {"name": "Developer", "capacity": 1},
    "properties": {"publisherEmail": "ops@example.com", "publisherName": "Ops"},
}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def service_path(rg: str, name: str, subscription: str = SUBSCRIPTION) -> str:
    return f"/subscriptions/{subscription}/resourceGroups/{rg}/providers/Microsoft.ApiManagement/service/{name}"


@pytest.fixture(scope="session")
def reference() -> Path:
    """The specification copy beside the repository. Missing is a failure, never a skip: CI must
    not go green by quietly running none of the comparisons."""
    problem = spec.missing_reference()
    if problem:
        pytest.fail(problem)
    return spec.SHARED


@pytest.fixture(scope="session")
def azure_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("azure-server"), ["--api-style", "azure", "--tls"]).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def cert(azure_server: ServerProcess) -> Path:
    assert azure_server.cert_path is not None, azure_server.log()
    return azure_server.cert_path


@pytest.fixture(scope="session")
def bearer_token(azure_server: ServerProcess) -> str:
    """The token every Azure client here sends: a JWT signed with the server's own signing secret,
    as ``tenant-access token`` issues it. The one place to change if tests ever need another kind."""
    return azure_server.token()


class StaticCredential:
    """A ``TokenCredential``: what azure-identity would hand the SDK, minus the identity provider."""

    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3600)


class AsyncStaticCredential:
    """The ``AsyncTokenCredential`` twin, for ``azure.mgmt.apimanagement.aio``."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3600)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> AsyncStaticCredential:
        return self

    async def __aexit__(self, *args: object) -> None:
        return None


@pytest.fixture(scope="session")
def credential(bearer_token: str) -> StaticCredential:
    return StaticCredential(bearer_token)


@pytest.fixture(scope="session")
def async_credential(bearer_token: str) -> AsyncStaticCredential:
    return AsyncStaticCredential(bearer_token)


@pytest.fixture(scope="session")
def client(azure_server: ServerProcess, cert: Path, credential: StaticCredential) -> Iterator[ApiManagementClient]:
    with ApiManagementClient(credential, SUBSCRIPTION, base_url=azure_server.url,
                             connection_verify=str(cert)) as sdk:
        yield sdk


@pytest.fixture(scope="session")
def ssl_context(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


@pytest.fixture
def https(azure_server: ServerProcess, ssl_context: ssl.SSLContext, bearer_token: str) -> Iterator[httpx.Client]:
    """Plain HTTPS, for what a curl script sees: status lines, headers and raw bodies."""
    with httpx.Client(base_url=azure_server.url, verify=ssl_context, timeout=10,
                      headers={"Authorization": f"Bearer {bearer_token}"}) as http:
        yield http


@pytest.fixture
def service(https: httpx.Client) -> tuple[str, str]:
    """A new service in a resource group of its own; answers (resource group, service name)."""
    rg, name = unique("rg"), unique("svc")
    response = https.put(f"{service_path(rg, name)}?api-version=2024-05-01", json=SERVICE_BODY)
    assert response.status_code == 201, response.text
    return rg, name
