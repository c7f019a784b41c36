from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.serverproc import ServerProcess

API = "api-version=2024-05-01"
SUBSCRIPTION = "11111111-2222-3333-4444-555555555555"
SERVICE_BODY = {
    "location": "West Europe",
    "sku": {"name": "Developer", "capacity": 1},
    "properties": {"publisherEmail": "ops@example.com", "publisherName": "Ops"},
}


def provider(rg: str = "rg1", subscription: str = SUBSCRIPTION) -> str:
    return f"/subscriptions/{subscription}/resourceGroups/{rg}/providers/Microsoft.ApiManagement"


def service_path(name: str, rg: str = "rg1", subscription: str = SUBSCRIPTION) -> str:
    return f"{provider(rg, subscription)}/service/{name}"


def access_path(name: str, access: str = "access", rg: str = "rg1") -> str:
    return f"{service_path(name, rg)}/tenant/{access}"


@pytest.fixture(scope="session")
def seed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One seed-format server for the many read-only and independent tests of a session."""
    server = ServerProcess(tmp_path_factory.mktemp("seed-server")).start()
    yield server
    server.stop()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of its own, for tests that restart or kill it."""
    server = ServerProcess(tmp_path / "data").start()
    yield server
    server.stop()


@pytest.fixture
def http(seed_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=seed_server.url, timeout=10, headers=seed_server.auth()) as client:
        yield client


@pytest.fixture
def service(http: httpx.Client) -> str:
    """A new service with a unique name; answers its path."""
    name = "svc-" + uuid.uuid4().hex[:10]
    response = http.put(f"{service_path(name)}?{API}", json=SERVICE_BODY)
    assert response.status_code == 201, response.text
    return service_path(name)
